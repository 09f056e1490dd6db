"""A loopback HTTP(S) API that a corpus service polls: healthy, or failing the way real APIs fail.

``python stub_api.py MODE_FILE [CERT KEY] READY_FILE``: listens on a free port of 127.0.0.1 and writes it
to READY_FILE. Each request reads MODE_FILE (missing or empty: ``ok``), so a scenario breaks the API by
writing one word there:

- ``ok``: 200 and a small JSON body; ``429``: rate limited, with Retry-After; ``401``: a revoked key;
  ``503``: an overloaded upstream behind a proxy; ``silent``: the connection is accepted, never answered;
- ``aws-throttle`` / ``aws-expired``: AWS JSON-protocol errors (``__type``), as Kinesis returns them;
- ``gcp-quota``: a Google API quota error (429, RESOURCE_EXHAUSTED);
- ``self-signed`` (with CERT and KEY; SELF_CERT and SELF_KEY beside them): new TLS connections get a
  self-signed certificate instead of the CA-signed one.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

MODE_FILE = Path(sys.argv[1])
READY_FILE = Path(sys.argv[-1])
CERTS = sys.argv[2:-1]

GCP_QUOTA = (
    "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' of service "
    "'sheets.googleapis.com' for consumer 'project_number:414736198'."
)
ANSWERS = {
    "ok": (200, {}, {"ok": True, "quotes": [{"market": "ETH-PERP", "bid": 2211.4, "ask": 2211.6}]}),
    "429": (429, {"Retry-After": "1"}, {"error": "rate limit exceeded", "retry_after": 1}),
    "401": (401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, {"error": "invalid api key"}),
    "503": (503, {}, "upstream connect error or disconnect/reset before headers. reset reason: overflow"),
    "aws-throttle": (
        400,
        {"x-amzn-ErrorType": "ThrottlingException"},
        {"__type": "ThrottlingException", "message": "Rate exceeded"},
    ),
    "aws-expired": (
        400,
        {"x-amzn-ErrorType": "ExpiredTokenException"},
        {"__type": "ExpiredTokenException", "message": "The security token included in the request is expired"},
    ),
    "gcp-quota": (429, {}, {"error": {"code": 429, "message": GCP_QUOTA, "status": "RESOURCE_EXHAUSTED"}}),
}


def mode() -> str:
    try:
        return MODE_FILE.read_text().strip() or "ok"
    except OSError:
        return "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        current = mode()
        if current == "silent":
            threading.Event().wait()
        status, headers, body = ANSWERS.get(current, ANSWERS["ok"])
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        content_type = "application/x-amz-json-1.1" if current.startswith("aws") else "application/json"
        self.send_header("Content-Type", content_type if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        # One request per connection, as the API's load balancer does: each poll connects (and shakes hands) anew.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    contexts: ClassVar[dict[str, ssl.SSLContext]] = {}

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, address = self.socket.accept()
        if not self.contexts:
            return sock, address
        context = self.contexts["self-signed" if mode() == "self-signed" else "ca"]
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        pass  # a client that refused our certificate, or hung up


def context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


server = Server(("127.0.0.1", 0), Handler)
if CERTS:
    cert, key = CERTS
    folder = Path(cert).parent
    Server.contexts = {
        "ca": context(cert, key),
        "self-signed": context(str(folder / "self.pem"), str(folder / "self.key")),
    }
READY_FILE.write_text(str(server.server_address[1]))
server.serve_forever(poll_interval=0.05)
