"""Writes each batch of fills to the data lake as a Parquet part (pyarrow), into a temporary name first.

A part that cannot be written is removed and the batch kept for the next try. The standard logging module
with the cookbook's format. Parameters: ``lake``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from holdout_kit import Service

svc = Service()
log = svc.logger("lake.writer")
lake = Path(svc["lake"]) / "fills" / f"date={time.strftime('%Y-%m-%d')}"
lake.mkdir(parents=True, exist_ok=True)


def routine(tick: int) -> None:
    log.info("wrote part-%06d.parquet: %d rows, %d KiB", tick, 500, 19 + tick % 4)
    if tick % 6 == 1:
        log.warning("schema drift: column 'fee' missing in %d rows, filled with null", 3 + tick % 5)
    if tick % 10 == 8:
        log.info("compacted 12 parts into part-%06d.parquet", tick)
    if tick % 15 == 4:
        log.warning("flush took %d ms (warn above 500 ms)", 640 + tick)


def write_part(sequence: int, rows: list[dict[str, object]]) -> None:
    target = lake / f"part-{sequence:06d}.parquet"
    partial = lake / f".{target.name}.tmp"
    try:
        pq.write_table(pa.Table.from_pylist(rows), partial, compression="snappy")
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


svc.history(routine)
sequence, pending = 0, []
while True:
    pending += [
        {"fill_id": sequence * 500 + i, "market": "ETH-PERP", "qty": i % 9 + 1, "px": 2211.5} for i in range(500)
    ]
    try:
        write_part(sequence, pending)
    except OSError:
        log.exception("could not write part-%06d.parquet (%d rows kept for the next try)", sequence, len(pending))
        time.sleep(0.5)
        continue
    if sequence % 10 == 0:
        log.info("wrote part-%06d.parquet: %d rows", sequence, len(pending))
    sequence, pending = sequence + 1, []
    svc.sleep()
