"""A tick recorder logging with loguru's format: it snapshots the order book into ``spool_dir`` as files
of ``snapshot_bytes`` each, every ``every`` seconds, and retries a snapshot that could not be written.

When the spool's filesystem fills, ``write`` raises OSError ENOSPC for real; each attempt is logged with
its traceback, and the recorder keeps trying.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("recorder.sink")
feed = svc.logger("recorder.feed")
spool = Path(svc["spool_dir"])
size = int(svc["snapshot_bytes"])
every = float(svc["every"])


def flush(sequence: int) -> None:
    path = spool / f"book-{sequence:07d}.bin"
    try:
        with open(path, "wb") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        path.unlink(missing_ok=True)
        raise


def routine(tick: int) -> None:
    if tick % 2 == 0:
        feed.info("book ETH-PERP: 48 levels, spread 0.1, seq %d", 5_511_000 + tick)
    if tick % 4 == 1:
        log.info("retention: removed 0 expired snapshots (errors=0)")
    if tick % 6 == 3:
        feed.warning("websocket ping timeout after 10 s, reconnecting to wss://stream.exchange.example/ws")
        feed.info("reconnected to wss://stream.exchange.example/ws after 1 attempt")


svc.history(routine)
log.info("recorder starting: spool %s, snapshot every %.2f s", spool, every)
sequence = 1
tick = 0
while True:
    try:
        flush(sequence)
        sequence += 1
    except OSError:
        svc.failing()
        log.exception("could not write snapshot %07d", sequence)
    routine(tick)
    tick += 1
    time.sleep(every)
