"""An old admin console left running from a manual test: it takes the gateway's port and answers every
request the way an Express app with no such route does.

``python port_squatter.py PORT READY_FILE``: writes ``READY_FILE.waiting`` once it is trying, binds
0.0.0.0:PORT (retrying while the port is taken), writes ``listening`` to READY_FILE, and answers
``404 Cannot GET <path>``.
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

PORT = int(sys.argv[1])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<!DOCTYPE html><html><body><pre>Cannot GET {self.path}</pre></body></html>".encode()
        self.send_response(404)
        self.send_header("X-Powered-By", "Express")
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


Path(sys.argv[2] + ".waiting").touch()
deadline = time.monotonic() + 10
while True:
    try:
        server = HTTPServer(("0.0.0.0", PORT), Handler)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.005)
Path(sys.argv[2]).write_text("listening")
server.serve_forever(poll_interval=0.05)
