"""Another program on the service's port: it listens and accepts, and never says a word.

``python port_holder.py PORT READY_FILE``: binds 127.0.0.1:PORT (retrying while it is taken, as a
respawned stray would), writes ``listening`` to READY_FILE, and accepts connections it never answers.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

PORT = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
deadline = time.monotonic() + 10
while True:
    try:
        listener.bind(("127.0.0.1", PORT))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.01)
listener.listen(64)
Path(sys.argv[2]).write_text("listening")
held = []
while True:
    conn, _ = listener.accept()
    held.append(conn)
