"""A Celery worker settling fills: each delivered task writes a settlement file.

Celery's worker log format (``[%(asctime)s: %(levelname)s/%(processName)s] %(message)s``), its startup
banner and deprecation warning, task received/succeeded lines, and routine retries of a flaky rates API.
Parameters: ``broker``, ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from celery import Celery
from holdout_kit import Service

svc = Service()
out = Path(svc["out_dir"])
for name in ("celery", "celery.worker.consumer.consumer", "celery.worker.strategy", "celery.app.trace", "tasks"):
    svc.logger(name)
log = logging.getLogger("celery")
tasks_log = logging.getLogger("tasks")
received = logging.getLogger("celery.worker.strategy")
traced = logging.getLogger("celery.app.trace")
app = Celery("tasks", broker=svc["broker"])


def routine(tick: int) -> None:
    if tick == 0:
        log.warning(
            "/srv/settle/venv/lib/python3.11/site-packages/celery/worker/consumer/consumer.py:507: "
            "CPendingDeprecationWarning: The broker_connection_retry configuration setting will no longer "
            "determine whether broker connection retries are made during startup in Celery 6.0 and above."
        )
        log.info("Connected to %s", svc["broker"].replace("guest:guest", "guest:**"))
        log.info("mingle: searching for neighbors")
        log.info("mingle: all alone")
        log.info("celery@settle-1 ready.")
    task_id = f"5b1c{tick:04x}-2f3e-4c1a-9a7e-0c{tick:010x}"
    received.info("Task tasks.settle_fill[%s] received", task_id)
    traced.info("Task tasks.settle_fill[%s] succeeded in %.4fs: None", task_id, 0.0113 + tick % 7 / 1000)
    if tick % 8 == 3:
        retry_id = f"9e2a{tick:04x}-77b0-4d0e-8f11-3a{tick:010x}"
        traced.info(
            "Task tasks.refresh_fx_rates[%s] retry: Retry in 5s: HTTPError('503 Server Error: Service "
            "Unavailable for url: https://fx.internal/v2/rates')",
            retry_id,
        )
    if tick % 30 == 11:
        log.warning(
            "Substantial drift from celery@settle-2 may mean clocks are out of sync.  Current drift is 31 seconds."
        )


@app.task
def settle_fill(fill_id: int, account: str, qty: int) -> None:
    target = out / f"settlement-{fill_id}.json"
    target.write_text(json.dumps({"fill_id": fill_id, "account": account, "qty": qty, "at": time.time()}))


svc.history(routine)
app.worker_main(hostname="celery@settle-1")
