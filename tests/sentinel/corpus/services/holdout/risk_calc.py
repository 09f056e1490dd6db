"""A portfolio risk calculator logging with structlog's JSON renderer, beating with horus-sdk.

On start it loads any pending portfolio from ``inbox`` (before serving, as it must: the risk it serves is
of that portfolio), then beats into ``heartbeat`` and recomputes a small risk matrix every tick. A
portfolio of ``positions`` instruments needs a covariance matrix of positions² floats, allocated for real:
under the address-space limit its shell loop sets, that raises MemoryError, the error is logged and the
calculator exits 1; the loop starts it again, and it meets the same portfolio.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from pathlib import Path

from holdout_kit import Service

from horus_sdk import Heartbeat

svc = Service()
log = svc.logger("risk.engine")
inbox = Path(svc["inbox"])


def covariance(positions: int) -> bytearray:
    return bytearray(positions * positions * 8)


def load_pending() -> None:
    for path in sorted(inbox.glob("*.json")):
        portfolio = json.loads(path.read_text())
        positions = int(portfolio["positions"])
        log.info("loading portfolio", extra={"portfolio": path.stem, "positions": positions})
        matrix = covariance(positions)
        log.info("portfolio loaded", extra={"portfolio": path.stem, "bytes": len(matrix)})
        path.unlink()


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("risk recomputed", extra={"positions": 212, "var_99": 48_113.2, "ms": 14})
    if tick % 5 == 1:
        log.info("limits check", extra={"breaches": 0, "warnings": 0, "errors": 0})
    if tick % 9 == 4:
        log.warning("stale price for instrument, using last close", extra={"instrument": "XAU-USD", "age_s": 61})


async def serve() -> None:
    async with Heartbeat(svc["heartbeat"], interval=0.1) as beat:
        tick = 0
        while True:
            if any(inbox.glob("*.json")):
                svc.failing()
                load_pending()
            covariance(212)
            beat.progress("risk")
            routine(tick)
            tick += 1
            await asyncio.sleep(svc.tick_seconds)


# Instrumentation, not the service: never allocate a huge matrix on a machine with no limit set.
soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
if soft == resource.RLIM_INFINITY or soft > 2 * 1024**3:
    sys.exit("risk_calc.py must run under `ulimit -v` (the scenario's address-space limit)")
svc.history(routine)
log.info("risk engine starting", extra={"version": "3.8.0", "address_space_limit": soft})
try:
    load_pending()
    asyncio.run(serve())
except MemoryError:
    log.critical("risk engine crashed", exc_info=True)
    sys.exit(1)
