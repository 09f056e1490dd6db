"""Named operations in flight (``deadline("place_maker_order", 30)``), for crash records.

A plain dict guarded by a lock: entries are added and removed from the event loop's thread and read by
the watchdog's thread when it writes a crash record.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

__all__ = ["Operation", "begin", "end", "in_flight"]


@dataclass(frozen=True)
class Operation:
    name: str
    started_monotonic: float
    thread_id: int

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started_monotonic


_lock = threading.Lock()
_ids = itertools.count()
_running: dict[int, Operation] = {}


def begin(name: str) -> int:
    """Record that ``name`` started; returns a token for :func:`end`."""
    token = next(_ids)
    with _lock:
        _running[token] = Operation(name, time.monotonic(), threading.get_ident())
    return token


def end(token: int) -> None:
    with _lock:
        _running.pop(token, None)


def in_flight() -> list[Operation]:
    """Operations still running, oldest first."""
    with _lock:
        operations = list(_running.values())
    return sorted(operations, key=lambda op: op.started_monotonic)
