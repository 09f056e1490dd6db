"""The daemon: one task per monitor, each looping check -> policy -> heal -> persist -> log.

Monitors never wait on each other: each has its own task and its own timeouts, so a probe that hangs
delays nothing but itself. State writes go to one dedicated thread so the event loop never waits on
the disk, and a heal is recorded as started (committed) before it acts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from horus import humanize
from horus.checks.base import ProbeContext, Status, new_probe_http_client
from horus.checks.registry import build_check
from horus.clock import Clock, SystemClock, boot_id
from horus.config.models import MonitorSettings
from horus.engine.policy import HealPolicy, MonitorState, Verdict
from horus.engine.runner import run_check, run_heal
from horus.errors import StoreError
from horus.heals.base import HealContext, HealOutcome
from horus.heals.registry import build_heal
from horus.log import get_logger
from horus.store.state import Instant, StateStore

__all__ = ["Daemon"]

log = get_logger("horus.engine")
T = TypeVar("T")

# A probe that asks to be re-run sooner than this is re-run after this, so a file dated in the future
# cannot spin a monitor in a tight loop.
MIN_RECHECK_SECONDS = 0.05
# After an unexpected bug in a monitor's loop, wait this long before restarting the loop.
CRASH_RESTART_SECONDS = 5.0


class Daemon:
    def __init__(self, monitors: Iterable[MonitorSettings], store: StateStore, *, clock: Clock | None = None) -> None:
        self.monitors = [m for m in monitors if m.enabled]
        self.disabled = [m.name for m in monitors if not m.enabled]
        self.store = store
        self.clock = clock or SystemClock()
        self._boot = boot_id()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="horus-store")
        self.states: dict[str, MonitorState] = {}

    def now(self) -> Instant:
        return Instant(wall=self.clock.wall(), mono=self.clock.monotonic(), boot=self._boot)

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_thread, lambda: fn(*args, **kwargs))

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every enabled monitor until ``stop`` is set."""
        now = self.now()
        for monitor in self.monitors:
            stored = await self._db(self.store.load, monitor.name)
            self.states[monitor.name] = MonitorState.restore(stored, now) if stored else MonitorState(name=monitor.name)
        started: dict[str, Any] = {"monitors": len(self.monitors), "state_db": str(self.store.path)}
        if self.disabled:
            started["disabled"] = self.disabled
        log.info("horus.started", **started)
        async with new_probe_http_client() as http:
            ctx = ProbeContext(clock=self.clock, http=http)
            tasks = [
                asyncio.create_task(self._supervise(monitor, ctx), name=f"monitor:{monitor.name}")
                for monitor in self.monitors
            ]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._db_thread.shutdown(wait=True)
                log.info("horus.stopped")

    async def _supervise(self, monitor: MonitorSettings, ctx: ProbeContext) -> None:
        # A bug in Horus must not silently stop a service from being watched.
        while True:
            try:
                await MonitorLoop(self, monitor, ctx).run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor.crashed", monitor=monitor.name, restart_in=CRASH_RESTART_SECONDS)
                await self.clock.sleep(CRASH_RESTART_SECONDS)


class MonitorLoop:
    def __init__(self, daemon: Daemon, monitor: MonitorSettings, ctx: ProbeContext) -> None:
        self.daemon = daemon
        self.monitor = monitor
        self.ctx = ctx
        self.check = build_check(monitor.check)
        self.heal = build_heal(monitor.heal) if monitor.heal is not None else None
        self.policy = HealPolicy(
            min_failures_to_heal=monitor.min_failures_to_heal,
            heal_cooldown_seconds=monitor.heal_cooldown_seconds,
            startup_grace_seconds=monitor.startup_grace_seconds,
            can_heal=self.heal is not None,
        )
        self.state = daemon.states[monitor.name]
        self.log = log.bind(monitor=monitor.name)
        self._announced_cooldown_for: Instant | None = None
        self._announced_unhealed = False

    async def run(self) -> None:
        clock = self.daemon.clock
        monitor = self.monitor
        # Each monitor runs in its own task, hence its own context: events that plugins log
        # (kill_process.signal_sent ...) carry the monitor's name too.
        structlog.contextvars.bind_contextvars(monitor=monitor.name)
        await clock.sleep(random.uniform(0, min(monitor.interval_seconds, monitor.start_jitter_seconds)))
        slot = clock.monotonic()
        while True:
            run = await run_check(
                self.check, self.ctx, timeout=self.check.timeout_seconds(monitor.check_timeout_seconds)
            )
            await self.observe(run.result.status, run.result.reason, run.duration_seconds)

            now = clock.monotonic()
            slot += monitor.interval_seconds
            if slot < now:  # fell behind (a long probe or heal): skip the missed slots, do not burst
                slot = now
            next_at = slot
            if run.result.recheck_in is not None:
                next_at = min(next_at, now + max(MIN_RECHECK_SECONDS, run.result.recheck_in))
            await clock.sleep(max(0.0, next_at - clock.monotonic()))

    async def observe(self, status: Status, reason: str, duration: float) -> None:
        state = self.state
        before = state.durable_fields()
        now = self.daemon.now()
        verdict = self.policy.observe(state, status, reason, now)
        self._log_observation(status, reason, duration, verdict)
        if verdict.heal:
            await self._heal(reason)
        elif state.durable_fields() != before:
            await self._persist()

    def _log_observation(self, status: Status, reason: str, duration: float, verdict: Verdict) -> None:
        latency_ms = round(duration * 1000, 1)
        if status is Status.ERROR:
            self.log.warning("check.error", reason=reason, latency_ms=latency_ms)
        elif status is Status.HEALTHY:
            if verdict.recovered:
                self.log.info("monitor.recovered", reason=reason, unhealthy_for=humanize.seconds(verdict.unhealthy_for))
                self._announced_unhealed = False
            else:
                self.log.debug("check.ok", reason=reason, latency_ms=latency_ms)
        elif verdict.in_grace:
            self.log.info("check.failed_in_grace", reason=reason, note="not counted: service is starting up")
        else:
            self.log.warning(
                "check.failed",
                reason=reason,
                failures=self.state.consecutive_failures,
                threshold=self.monitor.min_failures_to_heal,
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
        now = self.daemon.now()
        self.policy.heal_started(self.state, now)
        heal_id: int | None = None
        try:
            heal_id = await self.daemon._db(
                self.daemon.store.begin_heal, self.state.to_stored(), action=heal.action, reason=reason
            )
        except StoreError as exc:
            # Healing matters more than bookkeeping; the cooldown still holds in memory.
            self.log.error("store.error", error=str(exc), note="healing anyway; cooldown kept in memory only")
        self.log.warning("heal.started", action=heal.action, reason=reason)
        timeout = heal.timeout_seconds(self.monitor.heal_timeout_seconds)
        outcome: HealOutcome | None = None
        try:
            outcome = await run_heal(
                heal, HealContext(clock=self.daemon.clock, monitor=self.monitor.name), timeout=timeout
            )
        finally:
            if outcome is None:  # cancelled by shutdown while acting
                outcome = HealOutcome(ok=False, summary="interrupted: Horus was stopped during the heal")
            if outcome.ok:
                self.log.warning("heal.finished", action=heal.action, outcome="ok", summary=outcome.summary)
            else:
                self.log.error("heal.failed", action=heal.action, summary=outcome.summary, permanent=outcome.permanent)
            if heal_id is not None:
                await asyncio.shield(self._finish_heal(heal_id, outcome))

    async def _finish_heal(self, heal_id: int, outcome: HealOutcome) -> None:
        try:
            await self.daemon._db(
                self.daemon.store.finish_heal,
                heal_id,
                ok=outcome.ok,
                summary=outcome.summary,
                details=dict(outcome.details),
                finished_at=self.daemon.clock.wall(),
            )
        except StoreError as exc:
            self.log.error("store.error", error=str(exc))

    async def _persist(self) -> None:
        try:
            await self.daemon._db(self.daemon.store.save, self.state.to_stored(), now=self.daemon.clock.wall())
        except StoreError as exc:
            self.log.error("store.error", error=str(exc))
