"""An exporter that writes what it computes to disk, until the disk or its file descriptors run out.

``mode``:

- ``artifacts``: a JSON snapshot per tick in ``out_dir``; after the healthy period the snapshots carry the
  full book and grow to ``big_bytes``, until the volume is full (the partial file is removed);
- ``log``: the same, but what fills up is the volume of its own log (``log_file``), so Python's logging
  reports each failed write on stderr (``--- Logging error ---``);
- ``sqlite``: rows in the SQLite database ``database``; after the healthy period each row carries a large
  blob, until SQLite says the database or disk is full;
- ``descriptors``: with RLIMIT_NOFILE at ``nofile``, a reconnect path that leaks a socket per call runs
  after the healthy period, until opening the next snapshot fails with EMFILE.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sqlite3
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log
mode = kit["mode"]
leaked: list[socket.socket] = []


def snapshot(tick: int, big: bool) -> str:
    levels = 400 if big else 8
    book = [{"px": 2211.5 + i / 10, "qty": 1.25 + i} for i in range(levels)]
    text = json.dumps({"tick": tick, "market": "ETH-PERP", "bids": book, "asks": book})
    return text * (int(kit.get("big_bytes", 24_000)) // len(text) + 1) if big else text


def export_file(tick: int, big: bool) -> None:
    path = Path(kit["out_dir"]) / f"snap-{tick:05d}.json"
    try:
        with path.open("w") as out:
            out.write(snapshot(tick, big))
    except OSError:
        path.unlink(missing_ok=True)
        raise


def reconnect_prices() -> None:
    # The bug: a socket per reconnect, kept in a list nobody empties.
    sock = socket.socket()
    leaked.append(sock)


def main() -> None:
    database = None
    if mode == "descriptors":
        limit = int(kit.get("nofile", 64))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    if mode == "sqlite":
        database = sqlite3.connect(kit["database"], isolation_level=None)
        database.execute("CREATE TABLE IF NOT EXISTS fills (tick INTEGER, market TEXT, book BLOB)")
    log.info("exporter started in %s mode, pid %d", mode, os.getpid())
    for tick in kit.ticks():
        big = not kit.healthy()
        if big:
            kit.failing()
        try:
            if mode in ("artifacts", "descriptors"):
                if mode == "descriptors" and big:
                    for _ in range(5):
                        reconnect_prices()
                export_file(tick, big and mode == "artifacts")
            elif mode == "log":
                export_file(tick, False)
                if big:
                    log.debug("book dump for tick %d: %s", tick, snapshot(tick, True)[:6000])
            elif mode == "sqlite":
                assert database is not None
                database.execute("INSERT INTO fills VALUES (?, ?, ?)", (tick, "ETH-PERP", snapshot(tick, big).encode()))
        except OSError:
            log.exception("export of snapshot %d failed", tick)
            continue
        except sqlite3.OperationalError:
            log.exception("could not store fill for tick %d", tick)
            continue
        log.info("exported snapshot %d", tick)
        kit.tick_noise(tick)


main()
