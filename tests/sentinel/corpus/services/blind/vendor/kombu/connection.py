"""kombu's Connection: the broker URL as kombu prints it (the password masked) and ensure_connection."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import amqp


class Connection:
    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.hostname = parts.hostname or "localhost"
        self.port = parts.port or 5672
        self.userid = parts.username or "guest"
        self.virtual_host = parts.path[1:] or "/"
        self.connection: amqp.Connection | None = None

    def as_uri(self) -> str:
        return f"amqp://{self.userid}:**@{self.hostname}:{self.port}/{self.virtual_host}"

    def ensure_connection(
        self,
        errback: Callable[[Exception, float], None],
        max_retries: int,
        interval_start: float,
        interval_step: float,
        interval_max: float,
    ) -> amqp.Connection:
        interval = interval_start
        for _ in range(max_retries):
            try:
                connection = amqp.Connection(f"{self.hostname}:{self.port}", connect_timeout=4)
                connection.connect()
                self.connection = connection
                return connection
            except OSError as exc:
                errback(exc, interval)
                time.sleep(interval)
                interval = min(interval + interval_step, interval_max)
        raise OSError(f"failed to connect to {self.as_uri()} after {max_retries} attempts")

    def drain_events(self, timeout: float | None = None) -> None:
        assert self.connection is not None
        self.connection.drain_events(timeout)

    def release(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
