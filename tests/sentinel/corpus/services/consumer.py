"""Consumes a queue of marks in a background task it started and forgot; the loop goes on beating.

After the healthy period a mark of ``"N/A"`` arrives: float() raises in the task, nobody awaits it, and
asyncio reports the exception when the task is collected. The heartbeat's ``consume`` channel stops.
"""

from __future__ import annotations

import asyncio
import logging

from service_kit import Kit

from horus_sdk import Heartbeat

kit = Kit()
log = kit.log
logging.getLogger("asyncio").handlers[:] = list(log.handlers)


async def consume(beat: Heartbeat) -> None:
    tick = 0
    while True:
        raw = "2211.5"
        if not kit.healthy():
            kit.failing()
            raw = "N/A"
        mark = float(raw)
        beat.progress("consume")
        log.info("mark %d: %.1f", tick, mark)
        kit.tick_noise(tick)
        tick += 1
        await asyncio.sleep(kit.tick_seconds)


async def main() -> None:
    async with Heartbeat(kit["heartbeat_file"], interval=0.2) as beat:
        # The bug: the task's reference is dropped, so nobody will ever see its exception.
        asyncio.ensure_future(consume(beat))  # noqa: RUF006
        while True:
            await asyncio.sleep(0.5)
            log.debug("consumer alive")


asyncio.run(main())
