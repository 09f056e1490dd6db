"""A positions cache with a journal: two threads, two locks, taken in opposite orders.

The refresher thread holds the cache lock while it fetches marks, then takes the journal lock to record the
refresh. The main thread holds the journal lock while it appends, and once the journal is old enough it
rotates it, taking the cache lock to write the cache's snapshot at the head of the new journal. When a
rotation meets a refresh, each thread waits for the lock the other holds, forever, and both fall silent.
The standard logging module, thread names in each line. Parameters: ``journal_dir``, ``rotate_after``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("positions.cache")
journal_dir = Path(svc["journal_dir"])
cache_lock, journal_lock = threading.Lock(), threading.Lock()
marks: dict[str, float] = {}
journal = (journal_dir / "positions-000001.jsonl").open("a", buffering=1)
journal_number, journal_opened = 1, time.monotonic()


def routine(tick: int) -> None:
    log.info("journaled %d position updates", 30 + tick % 12)
    if tick % 10 == 0:
        log.info("marks refreshed for %d instruments in %d ms", 412, 48 + tick % 7)
    if tick % 8 == 5:
        log.warning("position for acct-%d drifted from the venue's by 0.%d; re-synced", tick % 40, tick % 9)
    if tick % 45 == 30:
        log.info("rotating journal positions-%06d.jsonl (1.9 MB)", tick // 45)


def fetch_marks() -> dict[str, float]:
    time.sleep(0.05)  # the marks service's answer time
    return {"ETH-PERP": 2211.5, "BTC-PERP": 64210.0}


def record_refresh(count: int) -> None:
    with journal_lock:
        journal.write(json.dumps({"type": "marks", "count": count, "at": time.time()}) + "\n")


def refresher() -> None:
    refreshes = 0
    while True:
        with cache_lock:
            marks.update(fetch_marks())
            record_refresh(len(marks))
        refreshes += 1
        if refreshes % 20 == 0:
            log.info("marks refreshed for %d instruments in %d ms", 412, 51)
        time.sleep(0.01)


def rotate_journal() -> None:
    global journal, journal_number, journal_opened
    journal.close()
    journal_number += 1
    log.info("rotating journal positions-%06d.jsonl", journal_number - 1)
    journal = (journal_dir / f"positions-{journal_number:06d}.jsonl").open("a", buffering=1)
    with cache_lock:
        journal.write(json.dumps({"type": "snapshot", "marks": marks}) + "\n")
    journal_opened = time.monotonic()


svc.history(routine)
threading.Thread(target=refresher, name="marks-refresher", daemon=True).start()
started = time.monotonic()
updates = 0
while True:
    with journal_lock:
        for account in range(3):
            journal.write(json.dumps({"type": "position", "account": f"acct-{account}", "qty": updates}) + "\n")
        updates += 1
        if updates % 5 == 0:
            log.info("journaled %d position updates", 15)
        if time.monotonic() - started > svc["rotate_after"] and time.monotonic() - journal_opened > 0.5:
            svc.failing()
            rotate_journal()
    svc.sleep()
