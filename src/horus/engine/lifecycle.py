"""A monitor's life as one state machine: the only place that decides "healed", "recovered",
"quarantined", "restart storm" and whether an incident may close. Pure: no I/O and no clock reads; the
daemon feeds it each observation and each heal's outcome with the time, and follows the transitions it
returns (the log, the notifier, the incident tracker and ``horus status`` all read the same values).

::

                    healthy look                 unhealthy look
       UNKNOWN ───────────────────► HEALTHY ────────────────────────► FAILING ◄──────────────┐
          │                            ▲                           │   │   │                 │
          │ unhealthy look             │ healthy for confirm_seconds   │   │ upstream failing │ unhealthy look,
          └────────────────────────────┼──────────────────────► │   │   └──► SYMPTOM ───────┤ restart seen
                                       │                           │   │ threshold, may heal │
                                   CONFIRMING ◄── healthy look ────┘   ▼                     │
                                       ▲                            HEALING ── refused/failed┘
                                       │ healthy look / verify passes  │ acted
                                       └───────────────────────── VERIFYING ─ deadline ─► NOT_RECOVERED
                                                                       (stays VERIFYING until a verdict)
       budget spent (at the threshold) ──► QUARANTINED ── resume / retry time / confirmed recovery ─┘

Rules, each one sentence (the README states them too):

- *Not known yet* (a check that cannot judge: a growth window not yet watched, a first datagram not yet
  due) and a probe error change nothing: they never start a heal and never confirm a recovery.
- Recovery is confirmed when the service has looked healthy for ``confirm_seconds`` in a row, with at
  least two healthy looks, and neither a restart Horus did not cause nor a crash in its output in that
  time; or when the ``verify`` check proved output resumed after a heal. It is *credited* to a heal only
  if that heal acted and succeeded.
- A heal that was refused (a safety rule stopped it before it touched anything) is not a heal: no
  cooldown, no startup grace, no budget spent; a permanent refusal stops further attempts until the
  config is reloaded or ``horus resume``.
- The startup grace runs from when the heal finished.
- Restarts Horus did not cause are counted in a window; ``restart_limit`` of them make a restart storm,
  which is a failure that Horus announces but does not heal (the service's own supervisor restarts it
  already; another restart cannot help).
- An incident may close only while its monitor is HEALTHY.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from horus import humanize
from horus.checks.base import Status
from horus.config.models import RestartLimit
from horus.engine.policy import HealPolicy, MonitorState, Verdict
from horus.store.state import HealRecord, Instant

__all__ = ["LifeState", "Lifecycle", "Phase", "Step", "Transition", "TransitionKind"]

# At least this many healthy looks, whatever confirm_seconds says: one fresh observation is never enough.
CONFIRM_LOOKS = 2
# The most restarts remembered per monitor (a storm's count is exact up to this).
MAX_RESTARTS_KEPT = 10_000


class Phase(enum.StrEnum):
    UNKNOWN = "unknown"  # no verdict yet since Horus started (or the check cannot judge yet)
    HEALTHY = "healthy"
    FAILING = "failing"  # unhealthy looks: counting, or past the threshold and waiting (cooldown, no heal)
    SYMPTOM = "symptom"  # failing while a declared dependency fails: not healed
    HEALING = "healing"  # a heal is acting
    VERIFYING = "verifying"  # the heal acted: waiting for the service to show it works
    CONFIRMING = "confirming"  # healthy again after a failure, for less than the confirmation period
    QUARANTINED = "quarantined"  # the heal budget is spent: not healed until the retry time or resume


class TransitionKind(enum.StrEnum):
    FAILING = "failing"  # the first counted failure of an episode
    THRESHOLD = "threshold"  # past the threshold with no heal to run now (none configured, cooldown)
    SYMPTOM = "symptom"  # past the threshold while an upstream fails
    HEAL_STARTED = "heal_started"
    HEALED = "healed"  # the heal acted and said it succeeded (recovery still to be confirmed)
    HEAL_FAILED = "heal_failed"
    HEAL_REFUSED = "heal_refused"  # a safety rule stopped it: nothing was touched
    CONFIRMING = "confirming"  # a healthy look after a failure: the confirmation period starts
    CONFIRMATION_BROKEN = "confirmation_broken"  # failed (or restarted) again before it was confirmed
    RECOVERED = "recovered"  # confirmed; details say whether a working heal is credited
    NOT_RECOVERED = "not_recovered"  # a heal acted but recovery was not confirmed within verify_within
    QUARANTINED = "quarantined"
    RESUMED = "resumed"  # out of quarantine by the operator (or out of a permanent heal refusal)
    RESTARTED = "restarted"  # a restart Horus did not cause
    RESTART_STORM = "restart_storm"  # restart_limit restarts within the window


@dataclass(frozen=True)
class Transition:
    """One change in a monitor's life, as every follower sees it."""

    kind: TransitionKind
    monitor: str
    before: Phase
    after: Phase
    at: float  # wall time
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """What one observation led to: the transitions, and what the daemon must do next."""

    verdict: Verdict
    transitions: list[Transition] = field(default_factory=list)
    heal: bool = False  # run the heal now (verdict.step, verdict.retrying say which)
    detect: bool = False  # open (or add to) the monitor's incident without healing
    upstream: str | None = None  # with detect: the failing dependency this is a symptom of
    recheck_in: float | None = None  # look again this soon (the end of the confirmation period)

    def has(self, kind: TransitionKind) -> bool:
        return any(t.kind is kind for t in self.transitions)


@dataclass(slots=True)
class LifeState:
    """The part of a monitor's life that is not persisted: after a restart of Horus it starts afresh,
    from what the persisted :class:`MonitorState` says (failing, quarantined, or not known yet)."""

    name: str
    phase: Phase = Phase.UNKNOWN
    instance: str | None = None  # the service's pid (and start time) as last seen, to notice restarts
    confirm_since: Instant | None = None
    healthy_looks: int = 0
    heal_credited: bool = False  # the last heal of this episode acted and succeeded
    healed_in_episode: bool = False  # a heal acted in this episode (so a recovery follows a heal)
    verify_deadline: Instant | None = None
    heal_finished: Instant | None = None
    heal_blocked: str | None = None  # a permanent refusal: why no heal is tried until reload or resume
    # Wall times of restarts Horus did not cause, within the window. A tuple: most monitors never restart,
    # and an empty tuple costs them nothing (at 10,000 monitors a deque each is megabytes).
    restarts: tuple[float, ...] = ()
    storm: bool = False
    waiting_for: str | None = None  # why a due heal is not run (cooldown, storm...), once announced
    horus_restart_pending: bool = False  # a heal acted since the last look: the next restart is Horus's

    @classmethod
    def restored(cls, state: MonitorState, heals: Sequence[HealRecord] = ()) -> LifeState:
        """The life of a monitor an earlier Horus left, from its saved state and its heal log: a heal that
        acted in this episode still counts (its recovery is "after a working heal" or "without a working
        heal", never "without a heal")."""
        life = cls(state.name)
        if state.quarantined_until is not None:
            life.phase = Phase.QUARANTINED
        elif state.last_status is Status.UNHEALTHY or state.failing_since is not None:
            life.phase = Phase.FAILING
        since = state.failing_since
        acted = [
            h
            for h in heals
            if since is not None
            and h.started_at >= since
            and h.finished_at is not None
            and h.monitor == state.name
            and not h.details.get("refused")
        ]
        if acted:
            life.healed_in_episode = True
            life.heal_credited = bool(max(acted, key=lambda h: h.started_at).ok)
        return life


class Lifecycle:
    """The rules of one monitor. Immutable after construction, so monitors with the same settings share
    one instance (see :meth:`shared`); what changes lives in :class:`MonitorState` and :class:`LifeState`."""

    @classmethod
    @functools.cache
    def shared(cls, **settings: Any) -> Lifecycle:
        return cls(**settings)

    def __init__(
        self,
        *,
        policy: HealPolicy,
        confirm_seconds: float,
        verify_within_seconds: float,
        restart_limit: RestartLimit,
        has_verify: bool = False,
    ) -> None:
        self.policy = policy
        self.confirm_seconds = confirm_seconds
        self.verify_within = verify_within_seconds
        self.restart_limit = restart_limit
        self.has_verify = has_verify

    # -- observations ------------------------------------------------------------------------------------

    def observe(
        self,
        state: MonitorState,
        life: LifeState,
        status: Status,
        reason: str,
        now: Instant,
        *,
        restarts: int = 0,
        crashed: bool = False,
        upstream_failing: str | None = None,
    ) -> Step:
        """Fold one look at the service in. ``restarts`` is how many restarts this look revealed (a new
        pid or start time, new crash records); the first one after a heal that acted is Horus's own.
        ``crashed``: the service's own output shows a crash (a traceback in its log) since the last look."""
        transitions: list[Transition] = []
        restarts = self._not_ours(life, restarts)
        if restarts:
            transitions += self._restarted(life, restarts, now)
        self._forget_old_restarts(life, now)
        if life.storm and len(life.restarts) < self.restart_limit.count:
            life.storm = False  # the restarts stopped: judged on the check again
        if life.storm and status is not Status.ERROR:
            status = Status.UNHEALTHY
            reason = self._storm_reason(life) + f"; the check says: {reason}"
        if status is Status.ERROR or status is Status.UNKNOWN:
            state.last_check_at = now.wall
            return Step(Verdict(), transitions)
        if status is Status.HEALTHY:
            interrupted = (
                "restarted" if restarts else ("crashed (its log shows an uncaught error)" if crashed else None)
            )
            return self._healthy(state, life, reason, now, transitions, interrupted=interrupted)
        return self._unhealthy(state, life, reason, now, transitions, upstream_failing)

    def _not_ours(self, life: LifeState, restarts: int) -> int:
        if restarts and life.horus_restart_pending:
            restarts -= 1
        life.horus_restart_pending = False
        return max(0, restarts)

    def _restarted(self, life: LifeState, count: int, now: Instant) -> list[Transition]:
        life.restarts = (*life.restarts, *([now.wall] * count))[-MAX_RESTARTS_KEPT:]
        self._forget_old_restarts(life, now)
        limit = self.restart_limit
        out = [
            self._transition(
                TransitionKind.RESTARTED,
                life,
                life.phase,
                now,
                f"restarted without Horus ({len(life.restarts)} in the last {humanize.duration(limit.within_seconds)})",
                restarts=len(life.restarts),
            )
        ]
        if not life.storm and len(life.restarts) >= limit.count:
            life.storm = True
            out.append(
                self._transition(
                    TransitionKind.RESTART_STORM,
                    life,
                    life.phase,
                    now,
                    self._storm_reason(life),
                    restarts=len(life.restarts),
                )
            )
        return out

    def _forget_old_restarts(self, life: LifeState, now: Instant) -> None:
        horizon = now.wall - self.restart_limit.within_seconds
        if life.restarts and life.restarts[0] < horizon:
            life.restarts = tuple(t for t in life.restarts if t >= horizon)

    def _storm_reason(self, life: LifeState) -> str:
        limit = self.restart_limit
        return (
            f"restart storm: restarted {len(life.restarts)} times in {humanize.duration(limit.within_seconds)} "
            f"without Horus (limit {limit.count})"
        )

    def _healthy(
        self,
        state: MonitorState,
        life: LifeState,
        reason: str,
        now: Instant,
        transitions: list[Transition],
        *,
        interrupted: str | None,
    ) -> Step:
        episode_since = state.failing_since
        verdict = self.policy.observe(state, Status.HEALTHY, reason, now)
        phase = life.phase
        if phase in (Phase.UNKNOWN, Phase.HEALTHY) and episode_since is None:
            self._move(life, Phase.HEALTHY)
            return Step(verdict, transitions)
        # Failing before: the episode stays open until the service has proved itself over a confirmation
        # period, so one fresh observation (a crash loop's traceback freshening its log) is never enough.
        state.failing_since = episode_since if episode_since is not None else now.wall
        if phase is not Phase.CONFIRMING or interrupted:
            if phase is Phase.CONFIRMING:
                transitions.append(
                    self._transition(
                        TransitionKind.CONFIRMATION_BROKEN, life, phase, now, f"{interrupted} while confirming recovery"
                    )
                )
            life.confirm_since = now
            life.healthy_looks = 1
            self._move(life, Phase.CONFIRMING)
            transitions.append(self._transition(TransitionKind.CONFIRMING, life, phase, now, reason))
            return Step(verdict, transitions, recheck_in=self.confirm_seconds)
        life.healthy_looks += 1
        assert life.confirm_since is not None
        healthy_for = life.confirm_since.seconds_until(now)
        confirmed = healthy_for >= self.confirm_seconds and life.healthy_looks >= CONFIRM_LOOKS
        if confirmed and not self.has_verify_pending(life):
            note = f"healthy for {humanize.duration(healthy_for)}: {reason}"
            transitions.append(self._recovered(state, life, now, note))
            return Step(verdict, transitions)
        return Step(verdict, transitions, recheck_in=max(0.05, self.confirm_seconds - healthy_for))

    def has_verify_pending(self, life: LifeState) -> bool:
        """With a ``verify`` check, recovery after a heal needs it (output, not liveness)."""
        return self.has_verify and life.healed_in_episode

    def _recovered(self, state: MonitorState, life: LifeState, now: Instant, note: str) -> Transition:
        started = state.failing_since
        before = life.phase
        credited = life.heal_credited
        healed = life.healed_in_episode
        self._move(life, Phase.HEALTHY)
        state.failing_since = None
        state.consecutive_failures = 0
        state.quarantined_until = None  # the service proved itself; the spent budget still stands
        life.confirm_since = None
        life.healthy_looks = 0
        life.verify_deadline = None
        life.waiting_for = None
        life.heal_credited = False
        life.healed_in_episode = False
        if credited:
            outcome = "recovered after a working heal"
        elif healed:
            outcome = "recovered without a working heal"
        else:
            outcome = "recovered without a heal"
        return self._transition(
            TransitionKind.RECOVERED,
            life,
            before,
            now,
            note,
            credited=credited,
            outcome=outcome,
            unhealthy_for=max(0.0, now.wall - started) if started is not None else 0.0,
        )

    def _unhealthy(
        self,
        state: MonitorState,
        life: LifeState,
        reason: str,
        now: Instant,
        transitions: list[Transition],
        upstream_failing: str | None,
    ) -> Step:
        before = life.phase
        first = state.failing_since is None and before is not Phase.CONFIRMING
        if before is Phase.CONFIRMING:
            transitions.append(self._transition(TransitionKind.CONFIRMATION_BROKEN, life, before, now, reason))
            life.confirm_since = None
            life.healthy_looks = 0
            self._move(life, self._failing_phase(state, life))
        verdict = self.policy.observe(state, Status.UNHEALTHY, reason, now, grace_from=life.heal_finished)
        if life.phase in (Phase.UNKNOWN, Phase.HEALTHY):
            self._move(life, Phase.FAILING)
        if first and not verdict.in_grace:
            transitions.append(self._transition(TransitionKind.FAILING, life, before, now, reason))
        step = Step(verdict, transitions)
        if verdict.quarantine_now:
            before_q = life.phase
            self._move(life, Phase.QUARANTINED)
            transitions.append(
                self._transition(TransitionKind.QUARANTINED, life, before_q, now, reason, heals=state.heals_in_streak)
            )
            step.detect = True
            return step
        if not verdict.threshold_reached:
            return step
        if upstream_failing is not None:
            if life.phase is not Phase.SYMPTOM:
                before_s = life.phase
                self._move(life, Phase.SYMPTOM)
                transitions.append(
                    self._transition(TransitionKind.SYMPTOM, life, before_s, now, reason, upstream=upstream_failing)
                )
            step.detect = True
            step.upstream = upstream_failing
            return step
        if life.phase is Phase.SYMPTOM:
            self._move(life, Phase.FAILING)
        if verdict.quarantined:
            self._move(life, Phase.QUARANTINED)
            return step
        blocked = self._why_not_heal(life)
        if verdict.heal and blocked is None:
            step.heal = True
            return step
        step.detect = True
        why = blocked or self._wait_words(verdict)
        key = why.split(":", 1)[0]
        if life.waiting_for != key:
            # Announced once per reason for waiting, not on every look past the threshold.
            life.waiting_for = key
            transitions.append(
                self._transition(
                    TransitionKind.THRESHOLD,
                    life,
                    before,
                    now,
                    reason,
                    why_not_healed=why,
                    cooldown_remaining=verdict.cooldown_remaining,
                    storm=life.storm,
                )
            )
        return step

    @staticmethod
    def _failing_phase(state: MonitorState, life: LifeState) -> Phase:
        """Where a failing monitor is: quarantined, still verifying a heal, or failing."""
        if state.quarantined_until is not None:
            return Phase.QUARANTINED
        return Phase.VERIFYING if life.verify_deadline is not None else Phase.FAILING

    @staticmethod
    def _why_not_heal(life: LifeState) -> str | None:
        if life.storm:
            return "restart storm: the service's own supervisor keeps restarting it, and another restart cannot help"
        if life.heal_blocked is not None:
            return f"the last heal was refused: {life.heal_blocked}"
        return None

    def _wait_words(self, verdict: Verdict) -> str:
        if verdict.cooldown_remaining > 0:
            return f"cooldown: the next heal waits {humanize.seconds(verdict.cooldown_remaining)}"
        return "no heal is configured: Horus is only watching"

    # -- heals -------------------------------------------------------------------------------------------

    def heal_started(self, state: MonitorState, life: LifeState, action: str, step: int, now: Instant) -> Transition:
        before = life.phase
        self.policy.heal_started(state, now)
        life.waiting_for = None
        self._move(life, Phase.HEALING)
        return self._transition(TransitionKind.HEAL_STARTED, life, before, now, action, step=step)

    def heal_finished(
        self,
        state: MonitorState,
        life: LifeState,
        *,
        ok: bool,
        refused: bool,
        permanent: bool,
        summary: str,
        undo: tuple[Any, ...],
        now: Instant,
    ) -> Transition:
        """The heal ended. ``undo`` is :meth:`HealPolicy.before_heal` taken before it started, so that a
        refused heal leaves no trace in the cooldown, the grace or the budget."""
        if refused:
            self.policy.undo_heal(state, undo)
            if permanent:
                life.heal_blocked = summary
            self._move(life, self._failing_phase(state, life))
            return self._transition(TransitionKind.HEAL_REFUSED, life, Phase.HEALING, now, summary, permanent=permanent)
        life.heal_finished = now
        life.healed_in_episode = True
        life.heal_credited = ok
        life.horus_restart_pending = True
        life.verify_deadline = Instant(
            wall=now.wall + self.verify_within, mono=now.mono + self.verify_within, boot=now.boot
        )
        self._move(life, Phase.VERIFYING)
        kind = TransitionKind.HEALED if ok else TransitionKind.HEAL_FAILED
        return self._transition(kind, life, Phase.HEALING, now, summary)

    def verify_passed(
        self, state: MonitorState, life: LifeState, took: str, reason: str, now: Instant
    ) -> Transition | None:
        """The ``verify`` check proved output resumed ``took`` after the last heal attempt. Its words say
        whether that heal worked: output that resumed after a failed heal came back by something else."""
        if not life.healed_in_episode or life.phase not in (Phase.VERIFYING, Phase.CONFIRMING):
            return None
        after = "after the heal" if life.heal_credited else "after a heal that failed"
        return self._recovered(state, life, now, f"output resumed {took} {after}: {reason}")

    def tick(self, state: MonitorState, life: LifeState, now: Instant) -> Transition | None:
        """Deadlines that pass between looks: a heal whose effect was not confirmed in time."""
        deadline = life.verify_deadline
        if deadline is None or deadline.seconds_until(now) < 0:
            return None
        life.verify_deadline = None
        return self._transition(
            TransitionKind.NOT_RECOVERED,
            life,
            life.phase,
            now,
            state.last_reason or "no confirmed recovery since the heal",
            within=humanize.duration(self.verify_within),
        )

    def resume(self, state: MonitorState, life: LifeState, now: Instant) -> Transition | None:
        """``horus resume``: out of quarantine (and out of a permanent refusal), with the whole budget.
        None when there was nothing to resume."""
        if state.quarantined_until is None and life.heal_blocked is None and life.phase is not Phase.QUARANTINED:
            return None
        before = life.phase
        HealPolicy.resume(state)
        life.heal_blocked = None
        if life.phase is Phase.QUARANTINED:
            self._move(life, Phase.FAILING if state.failing_since is not None else Phase.UNKNOWN)
        return self._transition(TransitionKind.RESUMED, life, before, now, "resumed by the operator")

    @staticmethod
    def may_close_incident(life: LifeState) -> bool:
        return life.phase is Phase.HEALTHY

    # -- helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _move(life: LifeState, phase: Phase) -> None:
        life.phase = phase

    def _transition(
        self, kind: TransitionKind, life: LifeState, before: Phase, now: Instant, reason: str, **details: Any
    ) -> Transition:
        return Transition(kind, life.name, before, life.phase, now.wall, reason, details)
