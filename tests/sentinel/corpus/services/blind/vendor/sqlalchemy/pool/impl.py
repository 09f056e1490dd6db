"""QueuePool: pool_size connections kept, max_overflow more opened on demand, and a checkout that waits
at most pool_timeout seconds for one to come back."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc


class QueuePool:
    def __init__(self, creator: Callable[[], Any], pool_size: int = 5, max_overflow: int = 10, timeout: float = 30.0):
        self._creator = creator
        self._pool: queue.Queue[Any] = queue.Queue(pool_size)
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._timeout = timeout
        self._overflow = -pool_size
        self._lock = threading.Lock()

    def connect(self) -> Any:
        return self._do_get()

    def _do_get(self) -> Any:
        use_overflow = self._max_overflow > -1
        wait = use_overflow and self._overflow >= self._max_overflow
        try:
            return self._pool.get(wait, self._timeout)
        except queue.Empty:
            pass
        if use_overflow and self._overflow >= self._max_overflow:
            if not wait:
                return self._do_get()
            raise exc.TimeoutError(
                f"QueuePool limit of size {self._pool_size} overflow {self._overflow} reached, "
                f"connection timed out, timeout {self._timeout:0.2f}",
                code="3o7r",
            )
        with self._lock:
            self._overflow += 1
        try:
            return self._creator()
        except Exception:
            with self._lock:
                self._overflow -= 1
            raise

    def _return_conn(self, connection: Any) -> None:
        try:
            self._pool.put(connection, False)
        except queue.Full:
            connection.close()
            with self._lock:
                self._overflow -= 1

    def status(self) -> str:
        checked_in = self._pool.qsize()
        return (
            f"Pool size: {self._pool_size}  Connections in pool: {checked_in} Current Overflow: {self._overflow} "
            f"Current Checked out connections: {self._pool_size - checked_in + self._overflow}"
        )
