"""A venue's private REST API: every request is signed (HMAC-SHA256 over timestamp, method and path) and its
timestamp must be within 5 s of the venue's clock.

``python signed_api_stub.py SECRET SETTINGS_FILE READY_FILE``. SETTINGS_FILE may hold ``{"clock_offset": S}``:
how far the venue's clock runs ahead of this host's (a host whose NTP stopped and whose clock fell behind
looks exactly like this from the service's side).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loopback import ready, settings

SECRET, SETTINGS = sys.argv[1].encode(), Path(sys.argv[2])
RECV_WINDOW = 5.0


def _stamp(moment: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(moment))


class Venue(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        now = time.time() + float(settings(SETTINGS).get("clock_offset", 0))
        sent = self.headers.get("X-Desk-Timestamp", "0")
        expected = hmac.new(SECRET, f"{sent}GET{self.path}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers.get("X-Desk-Signature", "")):
            self.answer(
                403,
                {
                    "code": "SignatureDoesNotMatch",
                    "message": "The request signature we calculated does not match the signature you provided.",
                },
            )
            return
        requested = int(sent) / 1000
        if abs(now - requested) > RECV_WINDOW:
            self.answer(
                403,
                {
                    "code": "SignatureExpired",
                    "message": f"Signature expired: {_stamp(requested)} is now earlier than "
                    f"{_stamp(now - RECV_WINDOW)} ({_stamp(now)} - {RECV_WINDOW:g} s.)",
                },
            )
            return
        self.answer(
            200,
            {"account": "desk-hedge-1", "equity": 1250432.18, "margin_ratio": 0.082, "server_time": int(now * 1000)},
        )

    def answer(self, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Venue)
server.daemon_threads = True
ready(Path(sys.argv[-1]), server.server_address[1])
server.serve_forever()
