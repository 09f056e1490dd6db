"""A Go positions bridge (stand-in) logging with logrus's JSONFormatter: it polls the broker's
``/v2/positions`` with a bearer token every tick and serves its own ``/healthz`` on ``port``: 200 while
the last poll succeeded within a second, else 503 with the last error.

Requests are real; an error answer is worded as a Go client built on net/http words it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from holdout_kit import Service

svc = Service()
log = svc.logger("bridge")
URL = f"http://127.0.0.1:{svc['api_port']}/v2/positions"
state = {"ok_at": 0.0, "error": ""}


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        healthy = time.monotonic() - state["ok_at"] < 1.0  # type: ignore[operator]
        body = json.dumps({"status": "ok"} if healthy else {"status": "degraded", "last_error": state["error"]})
        self.send_response(200 if healthy else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def poll() -> int:
    request = urllib.request.Request(URL, headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"})
    try:
        with urllib.request.urlopen(request, timeout=2.0) as answer:
            return len(json.loads(answer.read())["items"])
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        detail = ": ".join(str(body[k]) for k in ("error", "error_description") if k in body)
        raise RuntimeError(f"GET {URL}: {exc.code} {exc.reason}: {detail}") from None


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("positions synced", extra={"positions": 37, "changed": 1, "took": "18ms"})
    if tick % 5 == 1:
        log.info("poll stats", extra={"polls": 60, "errors": 0, "auth_errors": 0})
    if tick % 8 == 3:
        log.warning("clock skew against broker", extra={"skew": "180ms"})
    if tick % 12 == 6:
        log.info("token refresh scheduled", extra={"expires_in": 3600})


svc.history(routine)
server = ThreadingHTTPServer(("127.0.0.1", int(svc["port"])), Health)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
log.info("positions bridge started", extra={"broker": URL, "healthz": f"127.0.0.1:{svc['port']}"})
tick = 0
while True:
    try:
        poll()
        state["ok_at"] = time.monotonic()
        routine(tick)
    except RuntimeError as exc:
        svc.failing()
        state["error"] = str(exc)
        log.error("poll failed", extra={"error": str(exc), "retry_in": "400ms"})
        time.sleep(0.4)
    tick += 1
    svc.sleep()
