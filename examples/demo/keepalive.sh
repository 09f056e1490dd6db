#!/bin/sh
# A restart loop like launchd's KeepAlive: it restarts the bot when it exits, and only then.
# Usage: keepalive.sh PYTHON BOT_SCRIPT LOG_FILE
while true; do
    "$1" "$2" --mode conservative --log "$3"
    sleep 0.5
done
