"""A database stand-in whose positions table a migration can lock.

``python pg_lockable_stub.py MODE_FILE READY_FILE``: each connection sends one statement per line and gets its
rows back as one JSON line. While MODE_FILE says ``locked`` (an ``ALTER TABLE positions`` holding its ACCESS
EXCLUSIVE lock, say), a statement waits, as PostgreSQL makes it wait, until the lock is released: here, never.
"""

from __future__ import annotations

import json
import socketserver
import sys
import time
from pathlib import Path

from loopback import mode, ready

MODE_FILE = Path(sys.argv[1])


class Session(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            while mode(MODE_FILE) == "locked":
                time.sleep(0.05)
            statement = line.decode().strip()
            if statement.upper().startswith("SELECT 1"):
                rows: list[list[object]] = [[1]]
            else:
                rows = [["acct-7", "ETH-PERP", 12.5, 2211.4], ["acct-7", "BTC-PERP", -0.4, 64210.0]]
            self.wfile.write(json.dumps(rows).encode() + b"\n")


class Database(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


with Database(("127.0.0.1", 0), Session) as server:
    ready(Path(sys.argv[-1]), server.server_address[1])
    server.serve_forever()
