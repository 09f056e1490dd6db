"""The daemon: every monitor's check -> policy -> heal -> persist -> log, driven by one scheduler.

Monitors never wait on each other (see ``horus.engine.scheduler``): a probe that hangs delays nothing
but itself. State writes go to one dedicated thread in order, so the event loop never waits on the disk;
a heal is recorded as started (committed) before it acts.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from horus import humanize
from horus.checks.base import CheckResult, ProbeContext, Status, new_probe_http_client
from horus.checks.registry import build_check
from horus.clock import Clock, SystemClock, boot_id
from horus.config.models import MonitorSettings
from horus.engine.policy import HealPolicy, MonitorState, Verdict
from horus.engine.runner import CheckRun, run_heal
from horus.engine.scheduler import Scheduler
from horus.engine.stats import EngineStats
from horus.errors import StoreError
from horus.heals.base import HealContext, HealOutcome
from horus.heals.registry import build_heal
from horus.log import get_logger
from horus.store.state import Instant, StateStore

__all__ = ["Daemon", "Monitor"]

log = get_logger("horus.engine")
T = TypeVar("T")

# A probe that asks to be re-run sooner than this is re-run after this, so a file dated in the future
# cannot spin a monitor in a tight loop.
MIN_RECHECK_SECONDS = 0.05
# A crash record written this long before the first failed check still explains the failure (the
# service ended itself, then the check noticed).
EVIDENCE_LOOKBACK_SECONDS = 600.0
# After an unexpected bug in a monitor's own handling, look at it again after this long.
CRASH_RESTART_SECONDS = 5.0


class Daemon:
    def __init__(self, monitors: Iterable[MonitorSettings], store: StateStore, *, clock: Clock | None = None) -> None:
        monitors = list(monitors)
        self.settings = [m for m in monitors if m.enabled]
        self.disabled = [m.name for m in monitors if not m.enabled]
        self.store = store
        self.clock = clock or SystemClock()
        self._boot = boot_id()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="horus-store")
        self.states: dict[str, MonitorState] = {}
        self.stats = EngineStats()

    def now(self) -> Instant:
        return Instant(wall=self.clock.wall(), mono=self.clock.monotonic(), boot=self._boot)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call on the store's thread and wait for it."""
        return await asyncio.wrap_future(self.db_nowait(fn, *args, **kwargs))

    def db_nowait(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue a store call; calls run one at a time in the order they were queued."""
        return self._db_thread.submit(fn, *args, **kwargs)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every enabled monitor until ``stop`` is set."""
        now = self.now()
        stored = {s.monitor: s for s in await self.db(self.store.all_states)}
        for settings in self.settings:
            previous = stored.get(settings.name)
            self.states[settings.name] = (
                MonitorState.restore(previous, now) if previous else MonitorState(name=settings.name)
            )
        started: dict[str, Any] = {"monitors": len(self.settings), "state_db": str(self.store.path)}
        if self.disabled:
            started["disabled"] = self.disabled
        log.info("horus.started", **started)
        async with new_probe_http_client() as http:
            ctx = ProbeContext(clock=self.clock, http=http)
            scheduler = Scheduler(clock=self.clock, ctx=ctx, on_check=self.stats.record_check)
            monitors = [Monitor(self, settings) for settings in self.settings]
            await asyncio.gather(*(monitor.check.open() for monitor in monitors))
            for monitor in monitors:
                window = min(monitor.settings.interval_seconds, monitor.settings.start_jitter_seconds)
                scheduler.start(monitor, random.uniform(0, window))
            # Everything built so far (config, monitors, plugins) lives as long as the daemon. Freezing it
            # keeps the cyclic garbage collector from walking millions of such objects again and again:
            # at 10,000 monitors those walks cost more CPU than the checks, and stall the loop.
            gc.collect()
            gc.freeze()
            dispatcher = asyncio.create_task(scheduler.run(), name="horus-scheduler")
            try:
                await stop.wait()
            finally:
                dispatcher.cancel()
                await asyncio.gather(dispatcher, return_exceptions=True)
                await asyncio.gather(*(monitor.check.aclose() for monitor in monitors), return_exceptions=True)
                self._db_thread.shutdown(wait=True)
                log.info("horus.stopped")


class Monitor:
    """One watched service at run time: its check, heal, policy and state."""

    def __init__(self, daemon: Daemon, settings: MonitorSettings) -> None:
        self.daemon = daemon
        self.settings = settings
        self.name = settings.name
        self.check = build_check(settings.check)
        self.check_timeout = self.check.timeout_seconds(settings.check_timeout_seconds)
        self.heal = build_heal(settings.heal) if settings.heal is not None else None
        self.policy = HealPolicy(
            min_failures_to_heal=settings.min_failures_to_heal,
            heal_cooldown_seconds=settings.heal_cooldown_seconds,
            startup_grace_seconds=settings.startup_grace_seconds,
            can_heal=self.heal is not None,
        )
        self.state = daemon.states[settings.name]
        self.log = log.bind(monitor=settings.name)
        self._slot: float | None = None
        self._announced_cooldown_for: Instant | None = None
        self._announced_unhealed = False

    # -- what the scheduler calls ------------------------------------------------------------------

    def complete(self, run: CheckRun) -> Coroutine[Any, Any, None] | None:
        """Fold one check's result in; returns the heal to run when one is due."""
        state = self.state
        result = run.result
        before = state.durable_fields()
        now = self.daemon.now()
        verdict = self.policy.observe(state, result.status, result.reason, now)
        self._log_observation(result.status, result.reason, run.duration_seconds, verdict)
        if verdict.heal:
            return self._heal(result.reason)
        if state.durable_fields() != before:
            self._persist()
        return None

    def next_due(self, result: CheckResult, now: float) -> float:
        interval = self.settings.interval_seconds
        if self._slot is None:
            self._slot = now  # the first check anchors the monitor's fixed-rate schedule
        # Fixed rate on slots; a monitor that fell behind (a long probe or heal) skips, never bursts.
        self._slot = max(self._slot + interval, now)
        due = self._slot
        if result.recheck_in is not None:
            due = min(due, now + max(MIN_RECHECK_SECONDS, result.recheck_in))
        return due

    def crashed(self, now: float) -> float:
        self.log.exception("monitor.crashed", retry_in=CRASH_RESTART_SECONDS)
        return now + CRASH_RESTART_SECONDS

    # -- what follows from a result ------------------------------------------------------------------

    def _log_observation(self, status: Status, reason: str, duration: float, verdict: Verdict) -> None:
        if status is Status.ERROR:
            self.log.warning("check.error", reason=reason, latency_ms=round(duration * 1000, 1))
        elif status is Status.HEALTHY:
            if verdict.recovered:
                self.log.info("monitor.recovered", reason=reason, unhealthy_for=humanize.seconds(verdict.unhealthy_for))
                self._announced_unhealed = False
            else:
                self.log.debug("check.ok", reason=reason, latency_ms=round(duration * 1000, 1))
        elif verdict.in_grace:
            self.log.info("check.failed_in_grace", reason=reason, note="not counted: service is starting up")
        else:
            self.log.warning(
                "check.failed",
                reason=reason,
                failures=self.state.consecutive_failures,
                threshold=self.settings.min_failures_to_heal,
            )
            if verdict.cooldown_remaining > 0 and self._announced_cooldown_for != self.state.last_heal:
                self._announced_cooldown_for = self.state.last_heal
                self.log.warning(
                    "heal.suppressed", why="cooldown", remaining=humanize.seconds(verdict.cooldown_remaining)
                )
            if verdict.threshold_reached and self.heal is None and not self._announced_unhealed:
                self._announced_unhealed = True
                self.log.warning("monitor.unhealthy", note="no heal configured; watching only")

    async def _heal(self, reason: str) -> None:
        assert self.heal is not None
        heal = self.heal
        daemon = self.daemon
        # Plugins log through structlog too (kill_process.signal_sent): their events carry the monitor.
        structlog.contextvars.bind_contextvars(monitor=self.name)
        self.policy.heal_started(self.state, daemon.now())
        heal_id: int | None = None
        try:
            heal_id = await daemon.db(
                daemon.store.begin_heal, self.state.to_stored(), action=heal.action, reason=reason
            )
        except StoreError as exc:
            # Healing matters more than bookkeeping; the cooldown still holds in memory.
            self.log.error("store.error", error=str(exc), note="healing anyway; cooldown kept in memory only")
        # Looked at before the heal acts: a restart may clear what the service left behind.
        since = self.state.failing_since - EVIDENCE_LOOKBACK_SECONDS if self.state.failing_since else None
        try:
            evidence = await asyncio.to_thread(self.check.evidence, since)
        except Exception:
            self.log.exception("check.evidence_failed")
            evidence = {}
        self.log.warning("heal.started", action=heal.action, reason=reason, **evidence)
        daemon.stats.record_heal()
        timeout = heal.timeout_seconds(self.settings.heal_timeout_seconds)
        outcome: HealOutcome | None = None
        try:
            outcome = await run_heal(heal, HealContext(clock=daemon.clock, monitor=self.name), timeout=timeout)
        finally:
            if outcome is None:  # cancelled by shutdown while acting
                outcome = HealOutcome(ok=False, summary="interrupted: Horus was stopped during the heal")
            if outcome.ok:
                self.log.warning("heal.finished", action=heal.action, outcome="ok", summary=outcome.summary)
            else:
                self.log.error("heal.failed", action=heal.action, summary=outcome.summary, permanent=outcome.permanent)
            if heal_id is not None:
                self._finish_heal(heal_id, outcome)

    def _finish_heal(self, heal_id: int, outcome: HealOutcome) -> None:
        store = self.daemon.store
        self._after_write(
            self.daemon.db_nowait(
                store.finish_heal,
                heal_id,
                ok=outcome.ok,
                summary=outcome.summary,
                details=dict(outcome.details),
                finished_at=self.daemon.clock.wall(),
            )
        )

    def _persist(self) -> None:
        self._after_write(
            self.daemon.db_nowait(self.daemon.store.save, self.state.to_stored(), now=self.daemon.clock.wall())
        )

    def _after_write(self, write: Future[Any]) -> None:
        def report(done: Future[Any]) -> None:
            exc = done.exception()
            if exc is not None:
                self.log.error("store.error", error=str(exc))

        write.add_done_callback(report)
