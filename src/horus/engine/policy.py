"""When to heal: consecutive failures, startup grace, cooldown and the heal budget. Pure logic, no I/O,
no clock reads.

healthy    -> the failure count resets. Healthy for ``stable_after_seconds`` in a row resets the heal budget.
              (Whether that is a *recovery* is the lifecycle's decision: ``horus.engine.lifecycle``.)
error      -> nothing changes: a broken probe says nothing about the service
unhealthy  -> inside the startup grace after a heal (from when it finished): not counted
              otherwise counted; at ``min_failures_to_heal`` a heal runs unless it must wait:
              - the n-th heal of a streak waits ``cooldown * 2^(n-2)`` after the previous one (capped
                exponential backoff: a service that keeps failing is healed less and less often);
              - after ``max_heals`` heals without a stable period the monitor is quarantined: no heal
                until ``retry_in_seconds`` have passed, then one more try (or ``horus resume``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from horus.checks.base import Status
from horus.store.state import Instant, StoredMonitorState

__all__ = ["HealPolicy", "MonitorState", "Verdict"]


@dataclass(slots=True)
class MonitorState:
    """What the engine knows about one monitor; persisted so a restarted Horus carries on."""

    name: str
    consecutive_failures: int = 0
    last_status: Status | None = None
    last_reason: str = ""
    last_check_at: float | None = None
    failing_since: float | None = None  # wall time of the first unhealthy look in this episode
    last_heal: Instant | None = None
    heals_in_streak: int = 0  # heals since the service was last stable: the budget spent, the ladder's step
    quarantined_until: Instant | None = None
    healthy_since: Instant | None = None  # not persisted: after a restart, stability is measured afresh
    last_healthy_at: float | None = None  # wall time of the last healthy look (not persisted)

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
            heals_in_streak=stored.heals_in_streak,
            quarantined_until=_rebased_future(stored.quarantined_until, now),
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
            heals_in_streak=self.heals_in_streak,
            quarantined_until=self.quarantined_until,
        )

    def durable_fields(self) -> tuple[object, ...]:
        """What must reach the disk when it changes (not the time of every healthy look)."""
        return (
            self.consecutive_failures,
            self.last_status,
            self.failing_since,
            self.last_heal,
            self.heals_in_streak,
            self.quarantined_until,
        )


def _rebased_future(moment: Instant | None, now: Instant) -> Instant | None:
    """A stored future moment (the end of a quarantine) on ``now``'s boot: across a reboot, the wall
    clock says how far ahead it still is."""
    if moment is None or (moment.boot is not None and moment.boot == now.boot):
        return moment
    ahead = moment.wall - now.wall
    return Instant(wall=moment.wall, mono=now.mono + ahead, boot=now.boot)


@dataclass(frozen=True)
class Verdict:
    counted: bool = False  # this unhealthy look counted toward the threshold
    in_grace: bool = False  # unhealthy, but inside the startup grace after a heal
    threshold_reached: bool = False
    heal: bool = False  # run the heal now
    cooldown_remaining: float = 0.0  # > 0 when a heal was due but the cooldown holds it back
    step: int = 0  # with heal: the escalation ladder's step (heals already spent in this streak)
    retrying: bool = False  # with heal: the quarantine ran out and this is its one more try
    quarantined: bool = False  # a heal was due but the monitor is in quarantine
    quarantine_now: bool = False  # the budget is spent: this look put the monitor in quarantine


class HealPolicy:
    """The rules of one monitor. Immutable after construction, so monitors with the same settings share
    one instance (see :meth:`shared`)."""

    @classmethod
    @functools.cache
    def shared(cls, **settings: Any) -> HealPolicy:
        """One instance per distinct set of settings: 10,000 monitors usually need a handful."""
        return cls(**settings)

    def __init__(
        self,
        *,
        min_failures_to_heal: int,
        heal_cooldown_seconds: float,
        startup_grace_seconds: float,
        can_heal: bool,
        max_heals: int = 5,
        backoff_max_seconds: float = 3600.0,
        stable_after_seconds: float = 1800.0,
        retry_in_seconds: float = 3600.0,
    ) -> None:
        self.min_failures = min_failures_to_heal
        self.cooldown = heal_cooldown_seconds
        self.grace = startup_grace_seconds
        self.can_heal = can_heal
        self.max_heals = max_heals
        self.backoff_max = backoff_max_seconds
        self.stable_after = stable_after_seconds
        self.retry_in = retry_in_seconds

    def wait_after_heal(self, heals_in_streak: int) -> float:
        """How long after the previous heal the next one may run: the cooldown, doubling with each heal
        of the streak, capped at ``backoff_max_seconds`` (never below the cooldown itself)."""
        if heals_in_streak <= 1:
            return self.cooldown
        return max(self.cooldown, min(self.cooldown * 2 ** (heals_in_streak - 1), self.backoff_max))

    def observe(
        self, state: MonitorState, status: Status, reason: str, now: Instant, *, grace_from: Instant | None = None
    ) -> Verdict:
        """Fold one observation into ``state`` and say what follows from it. The startup grace runs from
        ``grace_from`` (when the last heal finished), else from when it started."""
        state.last_check_at = now.wall
        if status is Status.ERROR or status is Status.UNKNOWN:
            return Verdict()
        state.last_status = status
        state.last_reason = reason
        if status is Status.HEALTHY:
            state.last_healthy_at = now.wall
            state.consecutive_failures = 0
            state.failing_since = None
            if state.healthy_since is None:
                state.healthy_since = now
            if state.heals_in_streak and state.healthy_since.seconds_until(now) >= self.stable_after:
                state.heals_in_streak = 0  # stable again: the heal budget is whole
            return Verdict()
        state.healthy_since = None

        if state.failing_since is None:
            state.failing_since = now.wall
        since_heal = state.last_heal.seconds_until(now) if state.last_heal is not None else None
        grace_start = grace_from if grace_from is not None else state.last_heal
        if grace_start is not None and grace_start.seconds_until(now) < self.grace:
            return Verdict(in_grace=True)
        state.consecutive_failures += 1
        if state.consecutive_failures < self.min_failures:
            return Verdict(counted=True)
        if not self.can_heal:
            return Verdict(counted=True, threshold_reached=True)
        retrying = False
        if state.quarantined_until is not None:
            if state.quarantined_until.seconds_until(now) < 0:
                return Verdict(counted=True, threshold_reached=True, quarantined=True)
            # The quarantine ran out: one more try; failing again puts the monitor straight back.
            state.quarantined_until = None
            state.heals_in_streak = self.max_heals - 1
            retrying = True
        wait = self.wait_after_heal(state.heals_in_streak)
        if since_heal is not None and since_heal < wait:
            return Verdict(counted=True, threshold_reached=True, cooldown_remaining=wait - since_heal)
        if state.heals_in_streak >= self.max_heals:
            state.quarantined_until = Instant(
                wall=now.wall + self.retry_in, mono=now.mono + self.retry_in, boot=now.boot
            )
            return Verdict(counted=True, threshold_reached=True, quarantine_now=True)
        return Verdict(counted=True, threshold_reached=True, heal=True, step=state.heals_in_streak, retrying=retrying)

    @staticmethod
    def heal_started(state: MonitorState, now: Instant) -> None:
        """The heal is about to act: the cooldown and the startup grace run from now."""
        state.last_heal = now
        state.consecutive_failures = 0
        state.heals_in_streak += 1

    @staticmethod
    def before_heal(state: MonitorState) -> tuple[Any, ...]:
        """What :meth:`heal_started` changes, so that a heal that was refused can be undone."""
        return (state.last_heal, state.consecutive_failures, state.heals_in_streak)

    @staticmethod
    def undo_heal(state: MonitorState, before: tuple[Any, ...]) -> None:
        """A refused heal touched nothing: no cooldown, no grace and no budget spent."""
        state.last_heal, state.consecutive_failures, state.heals_in_streak = before

    @staticmethod
    def resume(state: MonitorState) -> None:
        """``horus resume``: out of quarantine, with the whole budget."""
        state.quarantined_until = None
        state.heals_in_streak = 0
