"""An asyncio drop-copy consumer: reads fills from the venue's feed and writes them to SQLite.

The consumer runs as a task created and forgotten (``loop.create_task`` without keeping it, nor awaiting it):
when it raises, nothing notices until the garbage collector finds the task and asyncio logs "Task exception
was never retrieved". The main coroutine goes on with its housekeeping (a cache compaction that ends with
``gc.collect()``, stats), idle otherwise. python-json-logger's format. Parameters: ``feed_port``, ``database``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3

from holdout_kit import Service

svc = Service()
log = svc.logger("dropcopy.consumer")
svc.logger("asyncio")
db = sqlite3.connect(svc["database"], isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS fills (fill_id INTEGER PRIMARY KEY, market TEXT, price REAL, qty REAL)")
written = 0


def routine(tick: int) -> None:
    log.info("stats", extra={"fills_written": 1480 + tick % 60, "window_s": 20, "queue_depth": 0})
    if tick % 6 == 3:
        log.info("cache compacted", extra={"evicted": 812 + tick, "kept": 4096})
    if tick % 9 == 5:
        log.warning("duplicate fill ignored", extra={"fill_id": 760000 + tick, "market": "ETH-PERP"})
    if tick % 23 == 12:
        log.error(
            "late fill rejected by risk: fill arrived 4.2 s after its order was cancelled",
            extra={"fill_id": 761000 + tick},
        )


async def consume(reader: asyncio.StreamReader) -> None:
    global written
    while line := await reader.readline():
        fill = json.loads(line)
        db.execute(
            "INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?)",
            (fill["fill_id"], fill["market"], fill["price"], fill["qty"]),
        )
        written += 1


async def main() -> None:
    reader, _ = await asyncio.open_connection("127.0.0.1", svc["feed_port"])
    log.info("connected to drop-copy feed", extra={"port": svc["feed_port"]})
    asyncio.get_running_loop().create_task(consume(reader))
    beat, reported = 0, 0
    cache: dict[int, bytes] = {}
    while True:
        await asyncio.sleep(0.1)
        beat += 1
        cache.update((beat * 1000 + i, bytes(64)) for i in range(200))
        if beat % 5 == 0:
            cache.clear()
            gc.collect()  # free the compacted cache now rather than in a pause mid-burst
        if beat % 10 == 0:
            log.info("stats", extra={"fills_written": written - reported, "window_s": 1, "queue_depth": 0})
            reported = written


svc.history(routine)
asyncio.run(main())
