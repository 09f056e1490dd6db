#!/bin/sh
# make test drives real tools where a feature meets them: logrotate (every rotation mode of log_staleness),
# useradd and setpriv (a second local user), mount (a full disk on a small tmpfs). Install the missing ones from
# the distribution's packages; without root or apt the tests that need them skip, and say why.
missing=""
command -v logrotate >/dev/null 2>&1 || missing="$missing logrotate"
command -v useradd >/dev/null 2>&1 || missing="$missing passwd"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null && exit 0
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null && exit 0
    fi
fi
echo "test: could not install$missing here; the tests that need them will skip" >&2
exit 0
