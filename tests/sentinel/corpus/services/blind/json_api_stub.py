"""A JSON API whose answers a scenario rewrites: ``python json_api_stub.py ROUTES_FILE READY_FILE``.

ROUTES_FILE holds ``{"/path": {"status": 200, "body": {...}}}``, read at every request (a path's query is
ignored); a path it does not name answers 404. ``{"/path": {"silent": true}}`` reads the request and never
answers (a handler stuck behind a lock upstream).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loopback import ready, settings

ROUTES = Path(sys.argv[1])


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        route = settings(ROUTES).get(self.path.split("?")[0], {"status": 404, "body": {"error": "not found"}})
        if route.get("silent"):
            threading.Event().wait()
        body = json.dumps(route.get("body", {})).encode()
        self.send_response(int(route.get("status", 200)))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
server.daemon_threads = True
ready(Path(sys.argv[-1]), server.server_address[1])
server.serve_forever()
