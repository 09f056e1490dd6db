"""A trade journal writer: asyncio, beating with horus-sdk (channel ``writes`` moves on each commit), and
writing each tick's fills into SQLite (``database``) in a worker thread, with a 0.2 s busy timeout.

Logs with a pipe-separated stdlib logging format. When another process holds the database's lock, the
insert fails for real with sqlite3's "database is locked"; the writer logs it and tries again next tick.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from holdout_kit import Service

from horus_sdk import Heartbeat

svc = Service()
log = svc.logger("journal")


def write_fills(tick: int) -> None:
    db = sqlite3.connect(svc["database"], timeout=0.2, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO fills VALUES (?, ?, ?)", [(tick, i, time.time()) for i in range(5)])
        db.execute("COMMIT")
    finally:
        db.close()


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("journal: committed 5 fills (wal 12 KB)")
    if tick % 5 == 1:
        log.info("journal stats: conflicts=0 retries=0 errors=0")
    if tick % 8 == 6:
        log.warning("wal checkpoint skipped: database busy (readers=1), will retry at next commit")


async def main() -> None:
    async with Heartbeat(svc["heartbeat"], interval=0.1) as beat:
        tick = 0
        while True:
            try:
                await asyncio.to_thread(write_fills, tick)
                beat.progress("writes")
                routine(tick)
            except sqlite3.OperationalError:
                svc.failing()
                log.exception("could not commit fills for tick %d", tick)
            tick += 1
            await asyncio.sleep(svc.tick_seconds)


setup = sqlite3.connect(svc["database"])
setup.execute("CREATE TABLE IF NOT EXISTS fills (tick INTEGER, n INTEGER, at REAL)")
setup.commit()
setup.close()
svc.history(routine)
log.info("journal writer starting, database %s", svc["database"])
asyncio.run(main())
