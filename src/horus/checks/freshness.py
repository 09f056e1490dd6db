"""How long ago did a file last change, in a way a wall clock jump cannot fool.

A file's age from its mtime depends on the wall clock: set the clock forward an hour and every log looks
an hour stale. So after the first look, age is measured on the monotonic clock from the moment a change
was observed. The wall clock is trusted only to place a change between two looks, clamped to the time
between them.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["FreshnessTracker"]


class FreshnessTracker:
    def __init__(self) -> None:
        self._signature: Hashable | None = None
        self._age_at_reference = 0.0
        self._reference_mono = 0.0
        self._last_look_mono = 0.0

    def age(self, signature: Hashable, wall_age: float, now_mono: float) -> float:
        """Seconds since the file last changed. ``signature`` changes whenever the file does."""
        if self._signature is not None and signature == self._signature:
            self._last_look_mono = now_mono
            return self._age_at_reference + (now_mono - self._reference_mono)
        estimate = max(0.0, wall_age)
        if self._signature is not None:
            # It changed since the last look, so it cannot be older than that look.
            estimate = min(estimate, max(0.0, now_mono - self._last_look_mono))
        self._signature = signature
        self._age_at_reference = estimate
        self._reference_mono = now_mono
        self._last_look_mono = now_mono
        return estimate
