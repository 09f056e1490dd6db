"""Starts a Node service of the blind set: writes the hour of routine its log already holds (pino's lines, as
the service itself writes them), then becomes ``node [node_args] <script> <params.json>`` (exec: same pid).

Parameters: ``script``, ``node_args``, ``history`` (whose routine: ``quote_api``, ``report_api`` or
``report_writer``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger(svc["history"])


def quote_api(tick: int) -> None:
    if tick == 0:
        log.info("quote-api listening", extra={"address": f"127.0.0.1:{svc['port']}"})
    log.info(
        "request completed",
        extra={
            "req": {"method": "GET", "url": "/v1/quotes"},
            "res": {"statusCode": 200},
            "responseTime": 0.8 + tick % 5 / 10,
        },
    )
    if tick % 7 == 3:
        log.warning("upstream quote stale, serving the last one", extra={"market": "SOL-PERP", "age_ms": 2300 + tick})
    if tick % 13 == 8:
        log.error(
            "request errored",
            extra={
                "req": {"method": "GET", "url": "/v1/quotes?market=LUNA-PERP"},
                "res": {"statusCode": 404},
                "err": {
                    "type": "NotFoundError",
                    "message": "unknown market LUNA-PERP",
                    "stack": "NotFoundError: unknown market LUNA-PERP\n    at lookup (/srv/quote-api/quotes.js:41:11)",
                },
            },
        )


def report_api(tick: int) -> None:
    if tick == 0:
        log.info("positions snapshot loaded", extra={"rows": 1000, "accounts": 977, "ms": 4})
        log.info("report-api listening", extra={"port": svc["port"]})
    if tick % 6 == 2:
        log.info("positions snapshot changed, reloading", extra={"path": svc["snapshot"]})
        log.info("positions snapshot loaded", extra={"rows": 1000 + tick, "accounts": 977, "ms": 5})
    if tick % 10 == 7:
        log.warning("slow report", extra={"account": f"acct-{tick % 31}", "ms": 640 + tick})


def report_writer(tick: int) -> None:
    if tick == 0:
        log.info("report-writer started", extra={"out": svc["out_dir"]})
    log.info("report written", extra={"batch": 1000 + tick * 200, "open": 0})
    if tick % 7 == 2:
        log.warning("upload of report-%06d.csv slow", 1000 + tick * 200, extra={"ms": 2100 + tick})
    if tick % 16 == 11:
        log.error(
            "upload failed, will retry",
            extra={
                "err": {
                    "type": "Error",
                    "message": "socket hang up",
                    "code": "ECONNRESET",
                    "stack": "Error: socket hang up\n    at connResetException (node:internal/errors:720:14)",
                }
            },
        )


svc.history({"quote_api": quote_api, "report_api": report_api, "report_writer": report_writer}[svc["history"]])
svc.stream.close()
node = shutil.which("node") or "node"
script = str(Path(__file__).with_name(svc["script"]))
os.execv(node, [node, *svc.get("node_args", []), script, *sys.argv[1:]])
