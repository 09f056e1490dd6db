"""A billing sync logging with structlog's JSON renderer: it pulls new charges from a Stripe-like API
and stores them in SQLite (``database``, table ``charges``).

The API is called for real (``api_port``); a 429 answer is raised as the Stripe client raises it
(``stripe.error.RateLimitError``), logged with its traceback, and the sync waits the Retry-After the
answer gave before its next call.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request

from holdout_kit import Service

svc = Service()
log = svc.logger("billing.sync")
URL = f"http://127.0.0.1:{svc['api_port']}/v1/charges?limit=100"


class RateLimitError(Exception):
    """The Stripe client's RateLimitError, as its traceback names it."""


RateLimitError.__module__ = "stripe.error"


def fetch() -> list[dict[str, object]]:
    request = urllib.request.Request(URL, headers={"Authorization": "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"})
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:
            return list(json.loads(response.read())["items"])
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            body = json.loads(exc.read())
            request_id = exc.headers.get("Request-Id", "")
            error = RateLimitError(f"Request {request_id}: {body['error']['message']}")
            error.retry_after = float(exc.headers.get("Retry-After") or 1)  # type: ignore[attr-defined]
            raise error from None
        raise


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("charges synced", extra={"new": 3, "updated": 0, "ms": 41})
    if tick % 5 == 1:
        log.info("sync health", extra={"throttled": 0, "errors": 0, "retries": 0})
    if tick % 6 == 2:
        log.info("rate limit headroom", extra={"remaining": 97, "limit": 100, "window_s": 1})
    if tick % 10 == 7:
        log.warning("charge has no customer; storing as guest", extra={"charge": "ch_3Pq"})


svc.history(routine)
db = sqlite3.connect(svc["database"], isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS charges (id TEXT, qty INTEGER, px REAL, at REAL)")
log.info("billing sync starting", extra={"api": URL.split("?")[0]})
tick = 0
while True:
    try:
        items = fetch()
    except RateLimitError as exc:
        svc.failing()
        wait = getattr(exc, "retry_after", 1.0)
        log.warning(
            f"stripe answered 429 Too Many Requests; retrying after {wait:g} s (Retry-After)",
            extra={"status": 429, "retry_after": wait},
            exc_info=True,
        )
        time.sleep(wait)
        continue
    for item in items:
        db.execute("INSERT INTO charges VALUES (?, ?, ?, ?)", (item["id"], item["qty"], item["px"], time.time()))
    routine(tick)
    tick += 1
    svc.sleep()
