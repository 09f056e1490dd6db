"""A market-making bot on asyncio with horus-sdk's Heartbeat and LoopWatchdog, logging with
python-json-logger.

Every few ticks it refreshes the fee schedule with a synchronous ``urllib`` call inside a coroutine (the
bug: it holds the event loop for as long as the API takes). When the API stops answering, the loop is
blocked; the watchdog logs where, writes its crash record into ``crash_dir`` and ends the process.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

from holdout_kit import Service

from horus_sdk import Heartbeat, LoopWatchdog

svc = Service()
log = svc.logger("maker")
svc.logger("horus_sdk")
FEES = f"http://127.0.0.1:{svc['api_port']}/v1/fees"


def fetch_fee_schedule() -> dict[str, object]:
    with urllib.request.urlopen(FEES) as answer:
        return dict(json.loads(answer.read()))


def routine(tick: int) -> None:
    if tick % 2 == 0:
        log.info("quotes refreshed", extra={"markets": 6, "orders_live": 24, "cancels": 0})
    if tick % 5 == 3:
        log.info("risk", extra={"inventory_usd": 1820.5, "limit_usd": 25000, "breaches": 0})
    if tick % 8 == 1:
        log.warning("order rejected: post-only would cross", extra={"market": "ETH-PERP", "side": "bid"})


async def main() -> None:
    beat = Heartbeat(svc["heartbeat"], interval=0.1)
    async with (
        beat,
        LoopWatchdog(warn_after=0.5, kill_after=1.0, crash_dir=svc["crash_dir"], heartbeat=beat, kill_grace=0.5),
    ):
        tick = 0
        while True:
            if tick % 5 == 0:
                fetch_fee_schedule()
            routine(tick)
            beat.progress("quotes")
            tick += 1
            await asyncio.sleep(svc.tick_seconds)


svc.history(routine)
log.info("maker bot starting", extra={"fees": FEES})
asyncio.run(main())
