"""The nightly-style fills export, run every few seconds by a cron-like loop: it reads the day's fills from
PostgreSQL (psycopg2) and writes ``fills-export.csv`` for the accountants, logging to syslog.

Its log is the host's syslog file (rsyslog's format), shared with sshd, systemd and cron. An error it does
not expect is not caught: the traceback goes to stderr, which its wrapper keeps. Parameters: ``dsn``,
``export``.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import psycopg2
from holdout_kit import LibraryFormatter, Service

svc = Service()
log = svc.logger("fills_export")


def neighbour(tag: str) -> logging.Logger:
    """Another program writing to the same syslog file."""
    other = logging.getLogger(f"syslog.{tag}")
    handler = logging.StreamHandler(svc.stream)
    handler.setFormatter(LibraryFormatter("syslog", tag=tag))
    for back_dating in svc.handler.filters:
        handler.addFilter(back_dating)
    other.handlers[:] = [handler]
    other.setLevel(logging.INFO)
    other.propagate = False
    return other


sshd, systemd, cron = neighbour("sshd"), neighbour("systemd"), neighbour("CRON")


def routine(tick: int) -> None:
    cron.info("(desk) CMD (/srv/desk/bin/fills-export --since today)")
    log.info("exported %d fills since 2026-11-21T00:00:00Z to %s", 1200 + 13 * tick, svc["export"])
    if tick % 5 == 2:
        sshd.info("Accepted publickey for desk from 10.20.0.4 port %d ssh2: ED25519 SHA256:9c1bq0", 50100 + tick)
    if tick % 7 == 4:
        systemd.info("Started session-%d.scope - Session %d of User desk.", 4400 + tick, 4400 + tick)
    if tick % 9 == 6:
        log.warning("fill %d has no fee; exported with fee 0", 88000 + tick)
    if tick % 20 == 13:
        sshd.info("error: kex_exchange_identification: Connection closed by remote host")


svc.history(routine)
started = time.monotonic()
connection = psycopg2.connect(svc["dsn"])
with connection.cursor() as cur:
    cur.execute(
        "SELECT id, account, market, qty, px FROM fills WHERE ts >= %s ORDER BY id",
        (time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime()),),
    )
    rows = cur.fetchall()
target = Path(svc["export"])
partial = target.with_name(target.name + ".partial")
with partial.open("w", newline="") as sheet:
    writer = csv.writer(sheet)
    writer.writerow(["id", "account", "market", "qty", "px"])
    writer.writerows(rows)
os.replace(partial, target)
log.info("exported %d fills since today to %s in %.0f ms", len(rows), target, (time.monotonic() - started) * 1000)
