"""Celery's worker consumer: connect to the broker (retrying), run each delivered task, reconnect when the
connection is lost, with Celery's own words for each step."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kombu import Connection

logger = logging.getLogger("celery.worker.consumer.consumer")
strategy = logging.getLogger("celery.worker.strategy")
trace = logging.getLogger("celery.app.trace")

CONNECTION_RETRY_STEP = "Trying again {when}... ({retries}/{max_retries})"
CONNECTION_ERROR = "consumer: Cannot connect to %s: %s.\n%s\n"
CONNECTION_LOST = "consumer: Connection to broker lost. Trying to re-establish the connection..."


class Consumer:
    def __init__(self, app: Any, hostname: str) -> None:
        self.app = app
        self.hostname = hostname
        self.connection = Connection(app.broker)
        self.max_retries = 100

    def start(self) -> None:
        while True:
            self.connect()
            try:
                self.loop()
            except OSError:
                logger.warning(CONNECTION_LOST, exc_info=True)
                self.connection.release()

    def connect(self) -> None:
        retries = 0

        def on_connection_error(exc: Exception, interval: float) -> None:
            nonlocal retries
            retries += 1
            next_step = CONNECTION_RETRY_STEP.format(
                when=f"in {interval:.2f} seconds", retries=retries, max_retries=self.max_retries
            )
            logger.error(CONNECTION_ERROR, self.connection.as_uri(), exc, next_step)

        connection = self.connection.ensure_connection(on_connection_error, self.max_retries, 0.2, 0.2, 3.0)
        connection.on_message = self.on_message
        logger.info("Connected to %s", self.connection.as_uri())

    def loop(self) -> None:
        while True:
            self.connection.drain_events()

    def on_message(self, frame: bytes) -> None:
        task_id, name, body = frame.decode().split(" ", 2)
        strategy.info("Task %s[%s] received", name, task_id)
        started = time.perf_counter()
        result = self.app.tasks[name](**json.loads(body))
        trace.info("Task %s[%s] succeeded in %.4fs: %r", name, task_id, time.perf_counter() - started, result)
