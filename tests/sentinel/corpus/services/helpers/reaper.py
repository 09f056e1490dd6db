"""A clean-up job gone wrong: it SIGKILLs every process whose command line holds PATTERN, as it appears.

``python reaper.py PATTERN READY_FILE``: the cron script meant for another host (``pkill -9 -f ...``),
running every few milliseconds. It writes ``reaping`` to READY_FILE once it runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil

PATTERN = sys.argv[1]
Path(sys.argv[2]).write_text("reaping")
while True:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        # Only the Python service itself, not the shell loop that restarts it (whose -c script holds it too).
        if proc.pid != os.getpid() and len(cmdline) >= 2 and cmdline[1] == PATTERN:
            try:
                proc.send_signal(signal.SIGKILL)
                print(f"reaper: killed {proc.pid}", flush=True)
            except psutil.Error:
                pass
    time.sleep(0.03)
