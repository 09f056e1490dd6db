"""A stand-in trading bot for the demo: it scans markets and logs, then hangs on an order call.

On its first run it reaches ``place_maker_order``, whose awaitable never returns, exactly like the bot in
the seed story: the process stays alive, its log stops. Later runs trade normally.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path


async def place_maker_order(market: str) -> str:
    # The exchange accepted the connection and never answered; there is no timeout.
    await asyncio.Event().wait()
    return "never"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="conservative")
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--hang-after", type=float, default=4.0)
    args = parser.parse_args()
    first_run_marker = args.log.with_suffix(".hung-once")
    will_hang = not first_run_marker.exists()
    started = time.monotonic()
    with args.log.open("a", buffering=1) as log:

        def on_sigterm() -> None:
            log.write(f"{time.strftime('%H:%M:%S')} received SIGTERM, exiting\n")
            log.flush()
            os._exit(143)

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        log.write(f"{time.strftime('%H:%M:%S')} bot started pid={os.getpid()} mode={args.mode}\n")
        while True:
            log.write(f"{time.strftime('%H:%M:%S')} scan ETH/daily score=89 STRONG\n")
            if will_hang and time.monotonic() - started > args.hang_after:
                first_run_marker.touch()
                log.write(f"{time.strftime('%H:%M:%S')} placing maker order on ETH/daily\n")
                await place_maker_order("ETH/daily")
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
