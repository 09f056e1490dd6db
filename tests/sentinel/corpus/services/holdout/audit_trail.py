"""An audit trail writer logging with python-json-logger: started as root, it drops to ``nobody`` (as a
daemon should) and appends one CSV row per tick to ``trail``, opening the file for each row so that a
rotation is followed.

When the file is replaced by one that ``nobody`` may not write (a logrotate ``create 0600 root root``),
the open fails for real with PermissionError; each attempt is logged with its traceback.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("audit.trail")
trail = Path(svc["trail"])


def append(tick: int) -> None:
    with open(trail, "a") as f:
        f.write(f"{time.time():.3f},order.ack,ord_{tick:06d},desk-7\n")


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("audit rows appended", extra={"rows": 3, "dropped": 0, "errors": 0})
    if tick % 7 == 2:
        log.warning("order event without a desk id; recorded as 'unknown'", extra={"order": f"ord_{tick:06d}"})


svc.history(routine)
nobody = 65534
os.setgid(nobody)
os.setuid(nobody)
log.info("audit trail writer started as uid %d, trail %s", os.getuid(), trail)
tick = 0
while True:
    try:
        append(tick)
        routine(tick)
    except PermissionError:
        svc.failing()
        log.error("could not append to the audit trail", exc_info=True)
    tick += 1
    svc.sleep()
