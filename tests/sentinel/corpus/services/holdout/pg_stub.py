"""A loopback PostgreSQL stand-in: accepts a connection, answers each query line with ``C OK``.

``python pg_stub.py READY_FILE``: listens on a free port of 127.0.0.1 and writes it to READY_FILE.
"""

from __future__ import annotations

import socketserver
import sys
from pathlib import Path


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for _line in self.rfile:
            self.wfile.write(b"C OK\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
Path(sys.argv[1]).write_text(str(server.server_address[1]))
server.serve_forever(poll_interval=0.05)
