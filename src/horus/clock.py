"""The clock seam: monotonic time for intervals, wall time for humans and file ages.

Schedules, cooldowns and failure counts use ``monotonic`` so that a wall clock jump neither triggers
nor suppresses a heal. Tests replace the clock with :class:`horus.testing.ShiftedClock` to jump it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Protocol

__all__ = ["Clock", "SystemClock", "boot_id"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; meaningful only as differences within one boot."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, as the wall clock says (it may jump)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """An identifier of this boot, so persisted monotonic readings are compared only within it."""
    try:
        return _BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None
