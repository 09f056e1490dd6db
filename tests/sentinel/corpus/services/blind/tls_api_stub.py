"""A marks API over TLS whose certificate a scenario lets expire.

``python tls_api_stub.py MODE_FILE CERT_DIR READY_FILE``: serves ``GET /v1/marks`` with ``CERT_DIR/valid.crt``
(signed by ``CERT_DIR/ca.crt``), or, once MODE_FILE says ``expired``, with ``expired.crt``: the same key and
name, signed by the same CA, whose validity ended months ago (a renewal that never happened).
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loopback import mode, ready

MODE_FILE, CERTS = Path(sys.argv[1]), Path(sys.argv[2])


def context(cert: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERTS / cert, CERTS / "server.key")
    return ctx


CONTEXTS = {"ok": context("valid.crt"), "expired": context("expired.crt")}


class Marks(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"marks": [{"market": "ETH-PERP", "mark": 2211.5}, {"market": "BTC-PERP", "mark": 64210.0}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        # The certificate in force when the connection arrives, as a reloaded server would present it.
        return CONTEXTS[mode(MODE_FILE)].wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            request.do_handshake()  # type: ignore[attr-defined]
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


server = TLSServer(("127.0.0.1", 0), Marks)
ready(Path(sys.argv[-1]), server.server_address[1])
server.serve_forever()
