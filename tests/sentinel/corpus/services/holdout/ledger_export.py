"""A Go ledger exporter (stand-in): each batch reads the journal from PostgreSQL and writes a file.

Parameters: ``pg_port``, ``pushgateway_port`` (where its metrics go; nothing listens there on this host),
``out_dir``. Each connection is a real TCP connect; errors are worded as pgx v5 and net/http word them,
and logged with logrus's TextFormatter. A batch that cannot connect is retried after a pause, forever.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("exporter")
PG = ("127.0.0.1", int(svc["pg_port"]))
PUSH = ("127.0.0.1", int(svc["pushgateway_port"]))
out = Path(svc["out_dir"])


def go_dial_error(address: tuple[str, int], exc: OSError) -> str:
    reason = {111: "connection refused", 104: "connection reset by peer"}.get(exc.errno or 0, str(exc.strerror).lower())
    return f"dial tcp {address[0]}:{address[1]}: connect: {reason}"


def push_metrics() -> None:
    try:
        socket.create_connection(PUSH, timeout=0.2).close()
    except OSError as exc:
        url = f"http://{PUSH[0]}:{PUSH[1]}/metrics/job/ledger-exporter"
        log.error("metrics push failed", extra={"error": f'Post "{url}": {go_dial_error(PUSH, exc)}'})


def export(batch: int) -> None:
    with socket.create_connection(PG, timeout=1.0) as conn:
        conn.sendall(b"SELECT * FROM journal WHERE batch = %d\n" % batch)
        conn.recv(64)
    (out / f"journal-{batch:06d}.parquet").write_bytes(b"PAR1" + bytes(256))


def routine(tick: int) -> None:
    if tick % 2 == 0:
        log.info("batch exported", extra={"batch": 88100 + tick, "rows": 412, "duration": "31ms"})
    if tick % 5 == 1:
        log.info("export stats", extra={"exported": 60, "errors": 0, "retries": 0})
    if tick % 6 == 3:
        log.warning("slow query", extra={"duration": "612ms", "query": "SELECT * FROM journal WHERE batch = $1"})
    if tick % 8 == 5:
        push_metrics()


svc.history(routine)
log.info("ledger-exporter starting", extra={"version": "v2.14.1", "pg": f"{PG[0]}:{PG[1]}"})
batch = 1
tick = 0
while True:
    try:
        export(batch)
    except OSError as exc:
        svc.failing()
        target = f"host={PG[0]} user=exporter database=ledger"
        log.error(
            "export batch failed",
            extra={"batch": batch, "error": f"failed to connect to `{target}`: dial error ({go_dial_error(PG, exc)})"},
        )
        log.warning("retrying batch", extra={"batch": batch, "backoff": "500ms"})
        if tick % 8 == 5:
            push_metrics()
        tick += 1
        time.sleep(0.5)
        continue
    routine(tick)
    batch += 1
    tick += 1
    svc.sleep()
