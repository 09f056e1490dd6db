"""A ledger journal writer: appends entries every tick and says so in its log, opened once at start.

It never reopens its log (no WatchedFileHandler, no SIGHUP handler), so a logrotate without copytruncate or
a postrotate signal leaves it writing into the rotated, then compressed and deleted, file. Parameters:
``journal`` (the journal it appends to).
"""

from __future__ import annotations

import json
import time

from holdout_kit import Service

svc = Service()
log = svc.logger("ledger.journal")


def routine(tick: int) -> None:
    if tick == 0:
        log.info("journal writer started, appending to %s", svc["journal"])
    log.info("appended %d entries (seq %d..%d), fsync 1.8 ms", 60, 60 * tick, 60 * tick + 59)
    if tick % 7 == 3:
        log.warning("entry for acct-%d arrived 2.3 s out of order; re-sequenced", tick % 40)
    if tick % 11 == 5:
        log.error("reconciliation: 1 entry without a matching fill (acct-%d), parked for review", tick % 40)
    if tick % 30 == 14:
        log.info("checkpoint written: journal offset %d", 48213 * tick)


svc.history(routine)
sequence = 0
with open(svc["journal"], "a", buffering=1) as journal:
    while True:
        for _ in range(3):
            journal.write(json.dumps({"seq": sequence, "at": time.time(), "account": f"acct-{sequence % 40}"}) + "\n")
            sequence += 1
        log.info("appended %d entries (seq %d..%d), fsync 0.4 ms", 3, sequence - 3, sequence - 1)
        svc.sleep()
