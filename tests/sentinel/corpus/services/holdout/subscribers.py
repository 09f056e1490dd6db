"""Market-data subscribers that connect to the hub, subscribe, and stay connected, idle, forever.

``python subscribers.py PORT COUNT READY_FILE``: opens COUNT connections to 127.0.0.1:PORT (each sends a
subscribe line), writes how many connected to READY_FILE, and keeps them all open.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

PORT, COUNT = int(sys.argv[1]), int(sys.argv[2])
held = []
for number in range(COUNT):
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    sock.sendall(f"SUBSCRIBE book.ETH-PERP client-{number}\n".encode())
    held.append(sock)
Path(sys.argv[3]).write_text(str(len(held)))
threading.Event().wait()
