"""The desk's dashboards: eight browser tabs polling the positions API, each a request every 30 ms given up
after 300 ms. ``python dashboard_load_stub.py URL READY_FILE`` (it says 0 when it starts; it listens on
nothing)."""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from loopback import ready


def tab() -> None:
    while True:
        try:
            with urllib.request.urlopen(sys.argv[1], timeout=0.3) as answer:
                answer.read()
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.03)


for _ in range(8):
    threading.Thread(target=tab, daemon=True).start()
ready(Path(sys.argv[-1]), 0)
threading.Event().wait()
