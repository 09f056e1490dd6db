"""A candle service that keeps its whole window in memory; the window is remembered across restarts.

It rebuilds the cache at start and on every tick, and rewrites ``status_file``. After the healthy period
the configured window jumps (``big_window`` candles, saved in ``state_file``), so every rebuild from then
on needs more memory than the shell loop's ``ulimit -v`` allows: MemoryError, logged, exit 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log
state = Path(kit["state_file"])


def window() -> int:
    if state.exists():
        return int(json.loads(state.read_text())["window"])
    return 1000


def rebuild_cache(candles: int) -> list[float]:
    closes = [0.0] * candles
    highs = [0.0] * candles
    return [c + h for c, h in zip(closes, highs, strict=True)]


def main() -> None:
    log.info("candles starting with a window of %d", window())
    for tick in kit.ticks():
        if not kit.healthy() and not state.exists():
            kit.failing()
            state.write_text(json.dumps({"window": int(kit["big_window"])}))
        size = window()
        try:
            cache = rebuild_cache(size)
        except MemoryError:
            log.exception("failed to rebuild the candle cache (window=%d)", size)
            sys.exit(1)
        Path(kit["status_file"]).write_text(json.dumps({"tick": tick, "candles": len(cache), "at": time.time()}))
        log.info("cache rebuilt: %d candles", len(cache))
        kit.tick_noise(tick)


main()
