"""A loopback Redis stand-in that speaks enough RESP for a cache client: PING, GET, SET, EXPIRE.

``python redis_stub.py READY_FILE``: listens on a free port of 127.0.0.1 and writes it to READY_FILE.
"""

from __future__ import annotations

import socketserver
import sys
from pathlib import Path


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        store: dict[bytes, bytes] = {}
        while True:
            header = self.rfile.readline()
            if not header.startswith(b"*"):
                return
            args = []
            for _ in range(int(header[1:])):
                size = int(self.rfile.readline()[1:])
                args.append(self.rfile.read(size + 2)[:-2])
            command = args[0].upper()
            if command == b"PING":
                self.wfile.write(b"+PONG\r\n")
            elif command == b"SET":
                store[args[1]] = args[2]
                self.wfile.write(b"+OK\r\n")
            elif command == b"GET":
                value = store.get(args[1])
                self.wfile.write(b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value))
            else:
                self.wfile.write(b":1\r\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
Path(sys.argv[1]).write_text(str(server.server_address[1]))
server.serve_forever(poll_interval=0.05)
