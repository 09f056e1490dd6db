"""An asyncio ledger that closes its books only inside the settlement window, which it awaits.

After the healthy period it awaits an event that only a settlement-window message would set, and that
message never comes: the loop is idle, the log stops, nothing says why.
"""

from __future__ import annotations

import asyncio

from service_kit import Kit

kit = Kit()
log = kit.log


async def wait_for_settlement_window(window_open: asyncio.Event) -> None:
    await window_open.wait()


async def main() -> None:
    window_open = asyncio.Event()
    tick = 0
    log.info("ledger started")
    while True:
        if not kit.healthy():
            kit.failing()
            await wait_for_settlement_window(window_open)
        log.info("ledger entry %d booked", tick)
        kit.tick_noise(tick)
        tick += 1
        await asyncio.sleep(kit.tick_seconds)


asyncio.run(main())
