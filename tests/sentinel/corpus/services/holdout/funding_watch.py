"""A funding-rate watcher logging with a stdlib format: it reads ``watch.toml`` (beside this file, in its
git work tree) at start, then polls funding rates every ``poll_seconds`` and logs what it saw.

Nothing in it fails: when a commit sets ``poll_seconds`` to an hour, it does exactly that, and its log
goes quiet for an hour after the first poll.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import tomllib
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("funding.watch")
settings = tomllib.loads((Path(__file__).resolve().parent / "watch.toml").read_text())
poll = float(settings["poll_seconds"])


def on_term(signum: int, frame: object) -> None:
    log.info("received SIGTERM, stopping (pid %d)", os.getpid())
    sys.exit(0)


def routine(tick: int) -> None:
    log.info("funding ETH-PERP 0.0100% BTC-PERP 0.0087% SOL-PERP -0.0021% (3 venues)")
    if tick % 4 == 1:
        log.info("venue health: 3/3 up, errors=0 stale=0")
    if tick % 7 == 5:
        log.warning("venue kraken-futures answered in 930 ms (slow, limit 800 ms)")


signal.signal(signal.SIGTERM, on_term)
svc.history(routine)
log.info("funding watch starting: %d markets, polling every %g s", len(settings["markets"]), poll)
tick = 0
while True:
    routine(tick)
    tick += 1
    time.sleep(poll)
