"""An asyncio trading bot that runs horus-sdk: a Heartbeat file and a LoopWatchdog with a crash_dir.

``mode``:

- ``blocked_call``: ``place_order`` makes a synchronous requests.post without a timeout to ``order_url``,
  which never answers; the watchdog warns, writes its crash record and ends the process. A pending order
  is remembered (``pending_file``), so each restart places it again first, and blocks again.
- ``sleep_warn``: ``refresh_positions`` calls time.sleep for an hour inside the loop; the watchdog only
  warns (its kill_after is far away), and the bot's log stops.
- ``await_stream``: ``stream_fills`` awaits a read from ``stream_port``, which accepts and never writes;
  the heartbeat channel ``fills`` stops, the watchdog writes its crash record (with the awaiting task) and
  ends the process; each restart connects and waits again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from service_kit import Kit

from horus_sdk import Heartbeat, LoopWatchdog

kit = Kit()
log = kit.log
# The SDK's own warnings go to the bot's log, as a service's logging set-up usually sends them.
logging.getLogger("horus_sdk").handlers[:] = list(log.handlers)
logging.getLogger("horus_sdk").setLevel(logging.INFO)
mode = kit["mode"]
pending = Path(kit.get("pending_file", "/nonexistent"))


async def place_order(order_id: str) -> None:
    import requests

    log.info("placing order %s", order_id)
    requests.post(kit["order_url"], json={"id": order_id, "side": "buy", "qty": 3})
    pending.unlink(missing_ok=True)


async def refresh_positions() -> None:
    log.info("refreshing positions")
    time.sleep(3600)


async def stream_fills(beat: Heartbeat) -> None:
    reader, _writer = await asyncio.open_connection("127.0.0.1", int(kit["stream_port"]))
    log.info("fill stream connected")
    while True:
        chunk = await reader.read(4096)
        if not chunk:
            break
        beat.progress("fills")


async def trade(beat: Heartbeat) -> None:
    if mode == "blocked_call" and pending.exists():
        await place_order(pending.read_text())
    if mode == "await_stream" and kit.is_failing():
        await stream_fills(beat)
    tick = 0
    while True:
        if not kit.healthy():
            kit.failing()
            if mode == "blocked_call":
                pending.write_text("ord-20931")
                await place_order("ord-20931")
            elif mode == "sleep_warn":
                await refresh_positions()
            else:
                await stream_fills(beat)
        beat.progress("fills")
        log.info("tick %d: book in sync, 2 orders resting", tick)
        kit.tick_noise(tick)
        tick += 1
        await asyncio.sleep(kit.tick_seconds)


async def main() -> None:
    kill_after = 600.0 if mode == "sleep_warn" else float(kit.get("kill_after", 1.5))
    async with Heartbeat(kit["heartbeat_file"], interval=0.2) as beat:
        watchdog = LoopWatchdog(
            warn_after=float(kit.get("warn_after", 0.5)),
            kill_after=kill_after,
            crash_dir=kit["crash_dir"],
            heartbeat=beat if mode == "await_stream" else None,
            kill_grace=0.5,
        )
        async with watchdog:
            await trade(beat)


asyncio.run(main())
