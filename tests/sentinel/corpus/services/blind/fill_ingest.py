"""A fills ingester: loads each CSV the exchange drops into its inbox, oldest first, and writes a summary.

It loads a whole file into memory (``list(csv.DictReader(...))``), which a day's backfill does not fit in.
It runs in the memory cgroup ``memory_cgroup`` (as a container or a systemd MemoryMax= would place it), so
the kernel's OOM killer ends it with SIGKILL; its shell loop says so and starts it again. Loguru's format.
Parameters: ``inbox``, ``out_dir``, ``memory_cgroup``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("ingest.fills")
inbox, out = Path(svc["inbox"]), Path(svc["out_dir"])
done = inbox / "done"
done.mkdir(exist_ok=True)
(Path(svc["memory_cgroup"]) / "cgroup.procs").write_text(str(os.getpid()))


def routine(tick: int) -> None:
    name = f"fills-20261121-{tick:04d}.csv"
    log.info("loading %s (%d KB)", inbox / name, 37 + tick % 11)
    log.info("wrote summary-%s.json: %d rows, %d accounts", name[6:-4], 480 + tick % 40, 31)
    if tick % 6 == 1:
        log.warning("skipping row %d of %s: bad timestamp '2026-13-01T00:00:00Z'", 100 + tick, name)
    if tick % 9 == 4:
        log.info("memory: rss %d MB after gc", 21 + tick % 3)
    if tick % 25 == 12:
        log.error("exchange sent %s twice; keeping the first copy", name)


def ingest(path: Path) -> None:
    log.info("loading %s (%d KB)", path, path.stat().st_size // 1024)
    with path.open(newline="") as source:
        rows = list(csv.DictReader(source))
    accounts = {row["account"] for row in rows}
    target = out / f"summary-{path.stem[6:]}.json"
    target.write_text(json.dumps({"rows": len(rows), "accounts": len(accounts)}))
    log.info("wrote %s: %d rows, %d accounts", target.name, len(rows), len(accounts))
    path.rename(done / path.name)


svc.history(routine)
log.info("ingester started, watching %s", inbox)
while True:
    waiting = sorted(inbox.glob("fills-*.csv"), key=lambda p: p.stat().st_mtime)
    for path in waiting:
        ingest(path)
    svc.sleep()
