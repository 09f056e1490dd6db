"""A loopback HTTP(S) API that the hold-out services call, and the ways it stops serving them.

``python exchange_api.py MODE_FILE [CERT KEY ROTATED_CERT ROTATED_KEY] READY_FILE``: listens on a free port
of 127.0.0.1 and writes the port to READY_FILE. Each request reads MODE_FILE (missing or empty: ``ok``):

- ``ok``: 200 and a small JSON body (for ``/ec2``: a DescribeInstances answer);
- ``429``: 429 with ``Retry-After: 30`` and a Stripe-shaped ``rate_limit_error``;
- ``ec2-limit``: 503 with EC2's XML ``RequestLimitExceeded`` error;
- ``token-expired``: 401 with ``WWW-Authenticate: Bearer error="invalid_token"``;
- ``slow``: answers after 5 s (a client with a shorter timeout gives up);
- ``silent``: reads the request and never answers;
- ``rotated`` (with the certificates): new TLS connections get the rotated certificate, issued by the same
  CA for another host name.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

MODE_FILE = Path(sys.argv[1])
READY_FILE = Path(sys.argv[-1])
CERTS = sys.argv[2:-1]

EC2_OK = (
    '<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse><requestId>8f7e2b1c</requestId>'
    "<reservationSet><item><instancesSet><item><instanceId>i-0a1b2c3d4e5f</instanceId>"
    "<instanceState><name>running</name></instanceState></item></instancesSet></item></reservationSet>"
    "</DescribeInstancesResponse>"
)
EC2_LIMIT = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
    "<Message>Request limit exceeded.</Message></Error></Errors><RequestID>5b1e9a7d-4c2f</RequestID></Response>"
)
STRIPE_LIMIT = {
    "error": {
        "type": "rate_limit_error",
        "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
    }
}


def mode() -> str:
    try:
        return MODE_FILE.read_text().strip() or "ok"
    except OSError:
        return "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: str, content_type: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        current = mode()
        if current == "silent":
            threading.Event().wait()
        if current == "slow":
            time.sleep(5)
        ec2 = self.path.startswith("/ec2")
        if current == "429":
            self._send(
                429, json.dumps(STRIPE_LIMIT), "application/json", {"Retry-After": "30", "Request-Id": "req_8Hq2"}
            )
        elif current == "ec2-limit" and ec2:
            self._send(503, EC2_LIMIT, "text/xml;charset=UTF-8")
        elif current == "token-expired":
            body = {"error": "invalid_token", "error_description": "The access token expired"}
            challenge = 'Bearer realm="api", error="invalid_token", error_description="The access token expired"'
            self._send(401, json.dumps(body), "application/json", {"WWW-Authenticate": challenge})
        elif ec2:
            self._send(200, EC2_OK, "text/xml;charset=UTF-8")
        else:
            body = {"ok": True, "items": [{"id": "fill_1Q2w", "qty": 3, "px": 101.25}], "server_time": time.time()}
            self._send(200, json.dumps(body), "application/json", {"X-RateLimit-Remaining": "97"})

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    contexts: ClassVar[dict[str, ssl.SSLContext]] = {}

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, address = self.socket.accept()
        if not self.contexts:
            return sock, address
        context = self.contexts["rotated" if mode() == "rotated" else "current"]
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        pass  # a client that refused the certificate, or hung up


def context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


server = Server(("127.0.0.1", 0), Handler)
if CERTS:
    Server.contexts = {"current": context(CERTS[0], CERTS[1]), "rotated": context(CERTS[2], CERTS[3])}
READY_FILE.write_text(str(server.server_address[1]))
server.serve_forever(poll_interval=0.05)
