"""What the engine knows about its own punctuality: checks run, and how late each started.

Cheap enough to record on every check (an int increment and one float in a bounded ring), so it is
always on. ``horus run --stats-file`` writes a snapshot when the daemon stops; ``make bench`` reads it.
"""

from __future__ import annotations

import json
import os
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["EngineStats"]

LATENESS_SAMPLES = 200_000


class EngineStats:
    def __init__(self, capacity: int = LATENESS_SAMPLES) -> None:
        self.started_at = time.time()
        self.checks = 0
        self.statuses: Counter[str] = Counter()
        self.heals = 0
        self._lateness = array("d")
        self._capacity = capacity
        self._next = 0

    def record_check(self, status: str, lateness: float | None) -> None:
        """One finished check; ``lateness`` is how long after its scheduled time it started."""
        self.checks += 1
        self.statuses[status] += 1
        if lateness is None:
            return
        if len(self._lateness) < self._capacity:
            self._lateness.append(lateness)
        else:  # a ring: the newest samples describe the daemon as it is now
            self._lateness[self._next] = lateness
            self._next = (self._next + 1) % self._capacity

    def record_heal(self) -> None:
        self.heals += 1

    def snapshot(self) -> dict[str, Any]:
        samples = sorted(self._lateness)
        return {
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "checks": self.checks,
            "statuses": dict(self.statuses),
            "heals": self.heals,
            "lateness_seconds": {
                "samples": len(samples),
                "p50": _percentile(samples, 0.50),
                "p99": _percentile(samples, 0.99),
                "max": samples[-1] if samples else None,
            },
        }

    def write(self, path: Path) -> None:
        """Atomically: a reader never sees half a file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(self.snapshot(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
