"""A small arbitrage bot, deployed from git: each deploy is a commit, then a restart."""
