"""A hedger that polls its account on a venue's signed REST API (requests) and serves its own health.

Each request carries ``X-Desk-Timestamp`` (this host's clock, in ms) and an HMAC signature. ``/healthz``
answers 503 once the last good answer from the venue is older than ``stale_after`` seconds. structlog's JSON
lines. Parameters: ``api``, ``secret``, ``port``, ``stale_after``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests
from holdout_kit import Service

svc = Service()
log = svc.logger("hedger")
session = requests.Session()
last_ok = time.monotonic()


def routine(tick: int) -> None:
    log.info("account polled", extra={"equity": 1250432.18 - tick * 11, "margin_ratio": 0.082, "ms": 44 + tick % 9})
    if tick % 5 == 3:
        log.info(
            "hedge placed",
            extra={"market": "ETH-PERP", "side": "sell", "qty": 1.5 + tick % 3, "order_id": f"h-{90210 + tick}"},
        )
    if tick % 9 == 6:
        log.warning(
            "hedge order partially filled; resting remainder", extra={"order_id": f"h-{90210 + tick}", "filled": 0.6}
        )
    if tick % 21 == 10:
        log.warning("venue answered slowly", extra={"path": "/v1/account", "ms": 1830})


def signed_get(path: str) -> requests.Response:
    stamp = str(int(time.time() * 1000))
    signature = hmac.new(svc["secret"].encode(), f"{stamp}GET{path}".encode(), hashlib.sha256).hexdigest()
    return session.get(svc["api"] + path, headers={"X-Desk-Timestamp": stamp, "X-Desk-Signature": signature}, timeout=2)


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        age = time.monotonic() - last_ok
        status = 200 if age <= svc["stale_after"] else 503
        body = json.dumps({"status": "ok" if status == 200 else "degraded", "venue_last_ok_s": round(age, 1)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


svc.history(routine)
health = ThreadingHTTPServer(("127.0.0.1", svc["port"]), Health)
threading.Thread(target=health.serve_forever, daemon=True).start()
log.info("hedger started", extra={"venue": urlsplit(svc["api"]).netloc, "health_port": svc["port"]})
polls = 0
while True:
    try:
        answer = signed_get("/v1/account")
        answer.raise_for_status()
        last_ok = time.monotonic()
        polls += 1
        if polls % 10 == 0:
            account = answer.json()
            log.info(
                "account polled", extra={"equity": account["equity"], "margin_ratio": account["margin_ratio"], "ms": 3}
            )
    except requests.HTTPError as exc:
        body = exc.response.json() if exc.response is not None else {}
        log.error(
            "account poll rejected",
            extra={
                "status": exc.response.status_code if exc.response is not None else None,
                "code": body.get("code"),
                "error": body.get("message"),
                "http_error": str(exc),
            },
        )
    except requests.RequestException as exc:
        log.error("account poll failed", extra={"error": str(exc)})
    svc.sleep()
