"""When to heal: consecutive failures, startup grace and cooldown. Pure logic, no I/O, no clock reads.

healthy    -> the failure count resets; "recovered" if the monitor had been failing
error      -> nothing changes: a broken probe says nothing about the service
unhealthy  -> inside the startup grace after a heal: not counted
              otherwise counted; at ``min_failures_to_heal`` a heal runs unless the cooldown since
              the last heal has not expired
"""

from __future__ import annotations

from dataclasses import dataclass

from horus.checks.base import Status
from horus.store.state import Instant, StoredMonitorState

__all__ = ["HealPolicy", "MonitorState", "Verdict"]


@dataclass
class MonitorState:
    """What the engine knows about one monitor; persisted so a restarted Horus carries on."""

    name: str
    consecutive_failures: int = 0
    last_status: Status | None = None
    last_reason: str = ""
    last_check_at: float | None = None
    failing_since: float | None = None  # wall time of the first unhealthy look in this episode
    last_heal: Instant | None = None

    @classmethod
    def restore(cls, stored: StoredMonitorState, now: Instant) -> MonitorState:
        return cls(
            name=stored.monitor,
            consecutive_failures=stored.consecutive_failures,
            last_status=Status(stored.last_status) if stored.last_status else None,
            last_reason=stored.last_reason or "",
            last_check_at=stored.last_check_at,
            failing_since=stored.failing_since,
            last_heal=stored.last_heal.rebased(now) if stored.last_heal else None,
        )

    def to_stored(self) -> StoredMonitorState:
        return StoredMonitorState(
            monitor=self.name,
            consecutive_failures=self.consecutive_failures,
            last_status=self.last_status.value if self.last_status else None,
            last_reason=self.last_reason,
            last_check_at=self.last_check_at,
            failing_since=self.failing_since,
            last_heal=self.last_heal,
        )

    def durable_fields(self) -> tuple[object, ...]:
        """What must reach the disk when it changes (not the time of every healthy look)."""
        return (self.consecutive_failures, self.last_status, self.failing_since, self.last_heal)


@dataclass(frozen=True)
class Verdict:
    counted: bool = False  # this unhealthy look counted toward the threshold
    in_grace: bool = False  # unhealthy, but inside the startup grace after a heal
    threshold_reached: bool = False
    heal: bool = False  # run the heal now
    cooldown_remaining: float = 0.0  # > 0 when a heal was due but the cooldown holds it back
    recovered: bool = False  # healthy again after an unhealthy episode
    unhealthy_for: float = 0.0  # with recovered: seconds since the first unhealthy look of the episode


class HealPolicy:
    def __init__(
        self,
        *,
        min_failures_to_heal: int,
        heal_cooldown_seconds: float,
        startup_grace_seconds: float,
        can_heal: bool,
    ) -> None:
        self.min_failures = min_failures_to_heal
        self.cooldown = heal_cooldown_seconds
        self.grace = startup_grace_seconds
        self.can_heal = can_heal

    def observe(self, state: MonitorState, status: Status, reason: str, now: Instant) -> Verdict:
        """Fold one observation into ``state`` and say what follows from it."""
        state.last_check_at = now.wall
        if status is Status.ERROR:
            return Verdict()
        state.last_status = status
        state.last_reason = reason
        if status is Status.HEALTHY:
            was_failing = state.failing_since is not None
            unhealthy_for = max(0.0, now.wall - state.failing_since) if state.failing_since is not None else 0.0
            state.consecutive_failures = 0
            state.failing_since = None
            return Verdict(recovered=was_failing, unhealthy_for=unhealthy_for)

        if state.failing_since is None:
            state.failing_since = now.wall
        since_heal = state.last_heal.seconds_until(now) if state.last_heal is not None else None
        if since_heal is not None and since_heal < self.grace:
            return Verdict(in_grace=True)
        state.consecutive_failures += 1
        if state.consecutive_failures < self.min_failures:
            return Verdict(counted=True)
        if not self.can_heal:
            return Verdict(counted=True, threshold_reached=True)
        if since_heal is not None and since_heal < self.cooldown:
            return Verdict(counted=True, threshold_reached=True, cooldown_remaining=self.cooldown - since_heal)
        return Verdict(counted=True, threshold_reached=True, heal=True)

    @staticmethod
    def heal_started(state: MonitorState, now: Instant) -> None:
        """The heal is about to act: the cooldown and the startup grace run from now."""
        state.last_heal = now
        state.consecutive_failures = 0
