"""An end-of-day report builder logging with loguru's format: every tick it appends routine lines.

When ``stop_flag`` appears it returns from its main loop and the process exits 0 without a word: the
output just stops, and nothing anywhere says why (the honest case of "unknown").
"""

from __future__ import annotations

import sys
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("eod.report")
stop = Path(svc["stop_flag"])


def routine(tick: int) -> None:
    if tick % 2 == 0:
        log.info("aggregated 1,204 fills into 38 positions")
    if tick % 5 == 3:
        log.info("report checks: mismatches=0 missing_prices=0 errors=0")
    if tick % 6 == 1:
        log.warning("price for BTC-PERP is 42 s old; using it anyway (limit 60 s)")


def main() -> int:
    tick = 0
    while not stop.exists():
        routine(tick)
        tick += 1
        svc.sleep()
    return 0


svc.history(routine)
log.info("eod report builder started")
sys.exit(main())
