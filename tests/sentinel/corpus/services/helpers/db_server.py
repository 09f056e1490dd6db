"""A loopback database stand-in for the corpus's driver stand-ins (psycopg2, asyncpg, redis, pymongo).

``python db_server.py MODE_FILE READY_FILE``: listens on a free port of 127.0.0.1, writes it to READY_FILE,
and answers one line per line received. MODE_FILE (missing or empty: ``ok``) is read for every line:

- ``ok``: ``STARTUP ...`` is answered ``R OK``, ``PING`` ``+PONG``, anything else ``C OK``;
- ``reject-auth``: a startup is answered ``E 28P01 password authentication failed for user "<user>"``;
- ``close``: the connection is closed without an answer (a server that crashed or restarted);
- ``silent``: no answer, ever.
"""

from __future__ import annotations

import re
import socketserver
import sys
import threading
from pathlib import Path

MODE_FILE = Path(sys.argv[1])
READY_FILE = Path(sys.argv[2])


def mode() -> str:
    try:
        return MODE_FILE.read_text().strip() or "ok"
    except OSError:
        return "ok"


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for raw in self.rfile:
            line = raw.decode(errors="replace").strip()
            current = mode()
            if current == "close":
                return
            if current == "silent":
                threading.Event().wait()
            if line.startswith("STARTUP"):
                user = re.search(r"user=(\S+)", line)
                if current == "reject-auth":
                    name = user.group(1) if user else "postgres"
                    reply = f'E 28P01 password authentication failed for user "{name}"'
                else:
                    reply = "R OK"
            elif line.startswith("PING"):
                reply = "+PONG"
            else:
                reply = "C OK"
            self.wfile.write(reply.encode() + b"\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
READY_FILE.write_text(str(server.server_address[1]))
server.serve_forever(poll_interval=0.05)
