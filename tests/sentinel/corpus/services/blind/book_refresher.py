"""An asyncio market maker's book refresher that calls a REST endpoint with requests, synchronously, from a
coroutine, and without a timeout: while the call waits, the event loop waits with it.

horus-sdk's Heartbeat beats from the loop, so a blocked loop stops the beats. Nothing is logged while it
waits. loguru's format. Parameters: ``api``, ``heartbeat``.
"""

from __future__ import annotations

import asyncio

import requests
from holdout_kit import Service

from horus_sdk import Heartbeat

svc = Service()
log = svc.logger("maker.book")


def routine(tick: int) -> None:
    log.info("book refreshed: %d levels, spread %.1f bps", 20, 1.2 + tick % 5 / 10)
    if tick % 6 == 4:
        log.info("quotes replaced: bid 2211.%d ask 2211.%d", tick % 5, 5 + tick % 4)
    if tick % 11 == 3:
        log.warning("inventory above soft limit (%d ETH); skewing quotes", 41 + tick % 4)
    if tick % 19 == 7:
        log.error("cancel for order m-%d rejected: order already filled", 51000 + tick)


async def refresh_book(session: requests.Session) -> dict[str, object]:
    # A blocking call in a coroutine: the loop runs nothing else until it returns.
    answer = session.get(svc["api"])
    answer.raise_for_status()
    book: dict[str, object] = answer.json()
    return book


async def main() -> None:
    session = requests.Session()
    async with Heartbeat(svc["heartbeat"], interval=0.1) as hb:
        refreshes = 0
        while True:
            book = await refresh_book(session)
            hb.progress("book")
            refreshes += 1
            if refreshes % 10 == 0:
                log.info("book refreshed: %d levels, spread %.1f bps", len(book.get("bids", [])), 1.4)
            await asyncio.sleep(svc.tick_seconds)


svc.history(routine)
asyncio.run(main())
