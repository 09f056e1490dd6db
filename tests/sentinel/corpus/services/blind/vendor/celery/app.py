"""Celery's app: tasks by name, and the worker that runs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Celery:
    def __init__(self, main: str, broker: str) -> None:
        self.main = main
        self.broker = broker
        self.tasks: dict[str, Callable[..., Any]] = {}

    def task(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.tasks[f"{self.main}.{fn.__name__}"] = fn
        return fn

    def worker_main(self, hostname: str) -> None:
        from celery.worker.consumer.consumer import Consumer

        Consumer(self, hostname).start()
