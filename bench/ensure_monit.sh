#!/bin/sh
# make bench compares Horus with monit; install monit from the distribution's packages when missing.
# Without it (no root, no apt), the benchmarks still run, for Horus alone, and say so.
command -v monit >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq monit >/dev/null && exit 0
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq monit >/dev/null && exit 0
    fi
fi
echo "bench: monit is not installed and could not be installed here; measuring Horus alone" >&2
exit 0
