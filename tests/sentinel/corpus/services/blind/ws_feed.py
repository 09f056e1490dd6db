"""A market-data feed: a websocket ticker subscription, each tick counted on horus-sdk's heartbeat.

When the exchange's gateway drops the connection (no close frame: code 1006) the feed reconnects with a
doubling backoff, and after ``max_attempts`` refused connects it gives up: the process and its event loop
go on (the heartbeat still beats), but no tick arrives any more. Parameters: ``url``, ``heartbeat``,
``max_attempts``.
"""

from __future__ import annotations

import asyncio
import json

import websockets
from holdout_kit import Service

from horus_sdk import Heartbeat

svc = Service()
log = svc.logger("feed.ws")
url = svc["url"]


def routine(tick: int) -> None:
    if tick == 0:
        log.info("subscribed to ticker channel", extra={"url": url, "products": "ETH-USD,BTC-USD"})
    log.info("ticks in the last 20 s", extra={"count": 398 + tick % 7, "product": "ETH-USD"})
    if tick % 9 == 4:
        log.warning("ticker gap detected, requesting a snapshot", extra={"expected": 10422 + tick, "got": 10424 + tick})
        log.info("snapshot resync complete", extra={"product": "ETH-USD", "levels": 50})
    if tick % 12 == 7:
        log.info("ping answered", extra={"rtt_ms": 41 + tick % 5})
    if tick == 93:
        # Exchanges drop websocket connections now and then; this one came back at the first attempt.
        log.warning("websocket closed", extra={"code": 1006, "reason": "", "error": "no close frame received or sent"})
        log.info("reconnected", extra={"url": url, "attempts": 1})


async def stream(hb: Heartbeat) -> None:
    attempts = 0
    backoff = 0.1
    while True:
        try:
            async with websockets.connect(url, ping_interval=20) as ws:
                if attempts:
                    log.info("reconnected", extra={"url": url, "attempts": attempts})
                attempts, backoff = 0, 0.1
                async for message in ws:
                    tick = json.loads(message)
                    hb.progress("ticks")
                    if tick["sequence"] % 40 == 0:
                        log.info("ticks in the last 2 s", extra={"count": 40, "product": tick["product_id"]})
        except websockets.ConnectionClosedError as exc:
            log.warning("websocket closed", extra={"code": exc.code, "reason": exc.reason, "error": str(exc)})
        except OSError as exc:
            attempts += 1
            if attempts >= svc["max_attempts"]:
                log.error(
                    "giving up reconnecting to the ticker feed",
                    extra={"url": url, "attempts": attempts, "error": str(exc)},
                )
                return
            log.warning(
                "reconnect failed", extra={"url": url, "attempt": attempts, "retry_in_s": backoff, "error": str(exc)}
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 1.6)


async def main() -> None:
    async with Heartbeat(svc["heartbeat"], interval=0.1) as hb:
        await stream(hb)
        # Nothing restarts the stream: the loop idles, beating, until someone restarts the process.
        await asyncio.Event().wait()


svc.history(routine)
asyncio.run(main())
