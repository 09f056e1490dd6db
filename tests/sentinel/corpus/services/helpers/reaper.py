"""A clean-up job gone wrong: it SIGKILLs a process as soon as it appears, every few milliseconds.

``python reaper.py PROGRAM READY_FILE``: kills every Python process running PROGRAM (its first argument),
as a ``pkill -9 -f`` in a cron job meant for another host would. ``python reaper.py --children-of PIDFILE
READY_FILE``: kills every child of the process whose pid is in PIDFILE (a memory guard that always picks a
server's workers). It writes ``reaping`` to READY_FILE once it runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil


def targets() -> list[psutil.Process]:
    if sys.argv[1] == "--children-of":
        try:
            return psutil.Process(int(Path(sys.argv[2]).read_text())).children()
        except (OSError, ValueError, psutil.Error):
            return []
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        # Only the Python service itself, not the shell loop around it (whose -c script names it too).
        if proc.pid != os.getpid() and len(cmdline) >= 2 and cmdline[1] == sys.argv[1]:
            found.append(proc)
    return found


Path(sys.argv[-1]).write_text("reaping")
while True:
    for proc in targets():
        try:
            proc.send_signal(signal.SIGKILL)
            print(f"reaper: killed {proc.pid}", flush=True)
        except psutil.Error:
            pass
    time.sleep(0.03)
