"""An example trading bot instrumented with every piece of horus-sdk.

    python examples/sdk/bot.py --state DIR [--hang-orders] [--block-loop]

- ``Heartbeat``: a heartbeat file in DIR driven by the loop itself, with two channels: ``scan`` (the
  market scanner) and ``orders`` (order placement). Horus's ``heartbeat`` check reads it.
- ``deadline``: every exchange call has one, so a call that never returns becomes a TimeoutError
  naming the operation.
- ``guard_stream``: the price feed must send something every few seconds, or it is reconnected.
- ``BlockingDetector``: reports any callback that blocks the loop, with the file and line.
- ``LoopWatchdog``: when the loop stops, or the ``orders`` channel stops progressing, it writes a crash
  record to DIR naming where the bot was stuck, and ends the process so its supervisor restarts it.

``--hang-orders`` reproduces seed 000: one order call was written without a deadline and the exchange
never answers. ``--block-loop`` reproduces seed 004: a synchronous call inside async code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from horus_sdk import BlockingDetector, Heartbeat, LoopWatchdog, deadline, guard_stream

log = logging.getLogger("bot")


async def price_feed() -> AsyncIterator[float]:
    """A stand-in for an exchange websocket."""
    price = 3000.0
    while True:
        await asyncio.sleep(0.2)
        price += 0.5
        yield price


async def place_maker_order(market: str, *, exchange_answers: bool) -> str:
    # The exchange accepted the connection; when it does not answer, this awaits forever.
    if not exchange_answers:
        await asyncio.Event().wait()
    await asyncio.sleep(0.05)
    return f"order-{market}-{time.monotonic_ns()}"


async def trade(hb: Heartbeat, args: argparse.Namespace) -> None:
    async for price in guard_stream(price_feed(), max_gap=5.0, name="prices"):
        hb.progress("scan")
        if args.block_loop:
            time.sleep(2)  # noqa: ASYNC251 - seed 004 on purpose: a synchronous call blocks every coroutine
        if args.hang_orders:
            # Seed 000: the one call that slipped through without a deadline.
            await place_maker_order("ETH/daily", exchange_answers=False)
        async with deadline("place_maker_order", 30):
            await place_maker_order("ETH/daily", exchange_answers=True)
        hb.progress("orders")
        log.info("price %.1f, order placed", price)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--hang-orders", action="store_true")
    parser.add_argument("--block-loop", action="store_true")
    parser.add_argument("--kill-after", type=float, default=3.0)
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bot %(message)s")

    hb = Heartbeat(args.state / "heartbeat.json", interval=0.5)
    async with (
        hb,
        BlockingDetector(threshold=0.5),
        LoopWatchdog(
            warn_after=args.kill_after / 2,
            kill_after=args.kill_after,
            crash_dir=args.state,
            heartbeat=hb,
            kill_grace=2.0,
        ),
    ):
        await trade(hb, args)


if __name__ == "__main__":
    asyncio.run(main())
