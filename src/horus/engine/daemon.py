"""The daemon: every monitor's check -> policy -> heal -> persist -> log, driven by one scheduler.

Monitors never wait on each other (see ``horus.engine.scheduler``): a probe that hangs delays nothing
but itself. State writes go to one dedicated thread in order, so the event loop never waits on the disk;
a heal is recorded as started (committed) before it acts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import random
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from horus import humanize
from horus.checks.base import CheckResult, ProbeContext, Status, new_probe_http_client
from horus.checks.registry import build_check
from horus.clock import Clock, SystemClock, boot_id
from horus.config.models import HorusConfig, MonitorSettings
from horus.engine.incidents import Detection, IncidentTracker
from horus.engine.policy import HealPolicy, MonitorState, Verdict
from horus.engine.runner import CheckRun, run_heal
from horus.engine.scheduler import Scheduler
from horus.engine.stats import EngineStats
from horus.engine.status import MAX_OVERDUE, StatusWriter
from horus.errors import ConfigError, EngineCrashed, StoreError
from horus.heals.base import HealContext, HealOutcome
from horus.heals.registry import build_heal
from horus.log import get_logger
from horus.notify.digest import DIGEST_WINDOW_SECONDS, digest_due, mark_digest_sent, render_digest
from horus.notify.events import Event, EventKind, Severity
from horus.notify.notifier import Notifier
from horus.store.state import Instant, StateStore, StoredMonitorState

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
# How often the daemon writes status.json for `horus status`.
STATUS_SECONDS = 5.0
# Beyond its interval and probe timeout, how late a monitor's next check may be before status calls it overdue.
STATUS_DUE_MARGIN_SECONDS = 2.0
# How often the daemon looks whether the daily digest is due.
DIGEST_POLL_SECONDS = 30.0
# How soon a running daemon acts on `horus resume NAME`.
RESUME_POLL_SECONDS = 1.0
# How often incidents are looked after: verify checks, verification deadlines, closing, retention.
INCIDENT_TICK_SECONDS = 1.0
# The most an incident's bookkeeping may hold a heal back: its opening (with the snapshot, itself bounded
# at 15 s), and each later step.
DETECT_TIMEOUT_SECONDS = 30.0
INCIDENT_STEP_SECONDS = 10.0
# The most recording a heal as started may hold it back (a committed write normally takes milliseconds).
BEGIN_HEAL_TIMEOUT_SECONDS = 10.0


class Daemon:
    def __init__(
        self,
        monitors: Iterable[MonitorSettings],
        store: StateStore,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        incidents: IncidentTracker | None = None,
        reload_config: Callable[[], HorusConfig] | None = None,
    ) -> None:
        monitors = list(monitors)
        self.settings = [m for m in monitors if m.enabled]
        self.disabled = [m.name for m in monitors if not m.enabled]
        self.store = store
        self.clock = clock or SystemClock()
        self.notifier = notifier
        self.incidents = incidents
        if incidents is not None:
            incidents.on_not_recovered = self._not_recovered
        self._reload_config = reload_config
        self._boot = boot_id()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="horus-store")
        self.states: dict[str, MonitorState] = {}
        self.monitors: dict[str, Monitor] = {}
        self.stats = EngineStats()
        self.started_at = self.clock.wall()
        self._scheduler: Scheduler | None = None
        self._reloading: asyncio.Lock | None = None

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
            self._restore_state(settings.name, stored, now)
        started: dict[str, Any] = {"monitors": len(self.settings), "state_db": str(self.store.path)}
        if self.disabled:
            started["disabled"] = self.disabled
        log.info("horus.started", **started)
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.start)
            self.notifier.emit(
                Event(
                    EventKind.STARTED,
                    Severity.INFO,
                    f"Horus started on {self.notifier.host}",
                    f"Watching {len(self.settings)} monitor(s)"
                    + (f"; disabled: {', '.join(self.disabled)}" if self.disabled else ""),
                )
            )
        self._reloading = asyncio.Lock()
        if self.incidents is not None:
            await self.incidents.start()
        async with new_probe_http_client() as http:
            ctx = ProbeContext(clock=self.clock, http=http)
            self._scheduler = scheduler = Scheduler(clock=self.clock, ctx=ctx, on_check=self.stats.record_check)
            await self._start_monitors(self.settings, jitter=True)
            # Everything built so far (config, monitors, plugins) lives as long as the daemon. Freezing it
            # keeps the cyclic garbage collector from walking millions of such objects again and again:
            # at 10,000 monitors those walks cost more CPU than the checks, and stall the loop.
            gc.collect()
            gc.freeze()
            dispatcher = asyncio.create_task(scheduler.run(), name="horus-scheduler")
            background = [
                asyncio.create_task(self._write_status_every(STATUS_SECONDS), name="horus-status"),
                asyncio.create_task(self._digest_when_due(DIGEST_POLL_SECONDS), name="horus-digest"),
                asyncio.create_task(self._resume_when_asked(RESUME_POLL_SECONDS), name="horus-resume"),
                asyncio.create_task(self._incidents_every(INCIDENT_TICK_SECONDS, ctx), name="horus-incidents"),
            ]
            stopping = asyncio.create_task(stop.wait(), name="horus-stop")
            try:
                await asyncio.wait([stopping, dispatcher], return_when=asyncio.FIRST_COMPLETED)
                if dispatcher.done() and not dispatcher.cancelled() and dispatcher.exception() is not None:
                    # Without its scheduler Horus would look alive and watch nothing: the very failure it
                    # exists to catch. End, loudly, so that its own supervisor restarts it.
                    log.critical("horus.scheduler_crashed", error=repr(dispatcher.exception()))
                    raise EngineCrashed(f"the scheduler stopped: {dispatcher.exception()!r}")
            finally:
                stopping.cancel()
                for task in background:
                    task.cancel()
                dispatcher.cancel()
                await asyncio.gather(dispatcher, *background, return_exceptions=True)
                await asyncio.gather(*(m.check.aclose() for m in self.monitors.values()), return_exceptions=True)
                await asyncio.to_thread(self.write_status, running=False)
                if self.incidents is not None:
                    await self.incidents.stop()
                self._db_thread.shutdown(wait=True)
                if self.notifier is not None:
                    self.notifier.emit(
                        Event(
                            EventKind.STOPPED, Severity.INFO, f"Horus stopped on {self.notifier.host}", "Horus stopped."
                        ),
                        immediately=True,
                    )
                    await asyncio.to_thread(self.notifier.stop)
                log.info("horus.stopped")

    def _restore_state(self, name: str, stored: dict[str, StoredMonitorState], now: Instant) -> None:
        if name in self.states:
            return
        previous = stored.get(name)
        self.states[name] = MonitorState.restore(previous, now) if previous else MonitorState(name=name)

    async def _start_monitors(self, settings: Iterable[MonitorSettings], *, jitter: bool) -> None:
        assert self._scheduler is not None
        monitors = [Monitor(self, s) for s in settings]
        await asyncio.gather(*(monitor.check.open() for monitor in monitors))
        for monitor in monitors:
            self.monitors[monitor.name] = monitor
            window = min(monitor.settings.interval_seconds, monitor.settings.start_jitter_seconds) if jitter else 0.0
            self._scheduler.start(monitor, random.uniform(0, window))

    # -- dependencies and resume -------------------------------------------------------------------------

    def failing_upstream(self, settings: MonitorSettings) -> str | None:
        """The first declared dependency that is failing now, or None."""
        for name in settings.depends_on:
            state = self.states.get(name)
            if state is not None and (state.last_status is Status.UNHEALTHY or state.quarantined_until is not None):
                return name
        return None

    def _not_recovered(self, name: str, incident_id: int, within: str) -> None:
        monitor = self.monitors.get(name)
        if self.notifier is None or monitor is None:
            return
        reason = monitor.state.last_reason or "no passing check since the heal"
        self.notifier.problem(
            EventKind.NOT_RECOVERED,
            name,
            f"{name} not recovered after its heal",
            f"{name} was healed but has not recovered within {within}: {reason} (incident {incident_id}).",
            reason=reason,
            incident=incident_id,
        )

    def upstream_states(self, settings: MonitorSettings) -> dict[str, str]:
        """Each declared dependency's state in words, for the root-cause analysis."""
        out = {}
        for name in settings.depends_on:
            state = self.states.get(name)
            if state is not None and state.last_status is not None:
                out[name] = f"{state.last_status.value}: {state.last_reason}"
        return out

    async def _incidents_every(self, seconds: float, ctx: ProbeContext) -> None:
        if self.incidents is None:
            return
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.incidents.tick(ctx, {name: m.settings for name, m in self.monitors.items()})
            except Exception:
                log.exception("incident.tick_failed")

    def upstream_recovered(self, name: str) -> None:
        """Look again at once at every monitor that depends on ``name``: its failure may have been a symptom."""
        if self._scheduler is None:
            return
        for monitor in self.monitors.values():
            if name in monitor.settings.depends_on:
                self._scheduler.check_soon(monitor)

    async def _resume_when_asked(self, poll_seconds: float) -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                names = await self.db(self.store.take_resume_requests)
            except StoreError as exc:
                log.warning("store.error", error=str(exc))
                continue
            for name in names:
                self.resume(name)
                if name in self.monitors:
                    await self.monitors[name].note("resumed", "quarantine lifted by the operator (horus resume)")

    def resume(self, name: str) -> None:
        monitor = self.monitors.get(name)
        state = self.states.get(name)
        if monitor is None or state is None:
            log.warning("monitor.resume_unknown", monitor=name)
            return
        HealPolicy.resume(state)
        monitor.persist()
        monitor.log.warning("monitor.resumed", note="quarantine lifted and heal budget reset by the operator")
        if self._scheduler is not None:
            self._scheduler.check_soon(monitor)

    # -- reload ----------------------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Re-read the config (on SIGHUP); runs on the event loop, never concurrently with itself."""
        if self._reload_config is None or self._reloading is None:
            log.warning("config.reload_unavailable")
            return
        task = asyncio.get_running_loop().create_task(self.reload(), name="horus-reload")
        task.add_done_callback(lambda done: None if done.cancelled() else done.exception())

    async def reload(self) -> None:
        assert self._reload_config is not None
        assert self._reloading is not None
        async with self._reloading:
            try:
                config = await asyncio.to_thread(self._reload_config)
            except ConfigError as exc:
                # The old config keeps running: a typo at 3 am must not stop the watching.
                log.error("config.reload_rejected", errors=[str(issue) for issue in exc.issues])
                if self.notifier is not None:
                    self.notifier.emit(
                        Event(
                            EventKind.CONFIG_REJECTED,
                            Severity.WARNING,
                            "Horus config reload rejected",
                            "The new config is invalid; the previous one keeps running.\n" + str(exc),
                        )
                    )
                return
            except Exception as exc:  # unreadable file and the like: same rule
                log.error("config.reload_rejected", errors=[str(exc)])
                return
            await self._apply(config)

    async def _apply(self, config: HorusConfig) -> None:
        new = {m.name: m for m in config.monitor_settings()}
        enabled = {name: m for name, m in new.items() if m.enabled}
        removed = [name for name in self.monitors if name not in enabled]
        changed = [name for name, m in enabled.items() if name in self.monitors and self.monitors[name].settings != m]
        added = [name for name in enabled if name not in self.monitors]
        for name in removed + changed:
            monitor = self.monitors.pop(name)
            monitor.retire()
            await monitor.check.aclose()
        for name in removed:
            self.states.pop(name, None)
        if added or changed:
            stored = {s.monitor: s for s in await self.db(self.store.all_states)}
            now = self.now()
            for name in added:
                self._restore_state(name, stored, now)
            await self._start_monitors([enabled[name] for name in added + changed], jitter=False)
        self.settings = list(enabled.values())
        self.disabled = [name for name, m in new.items() if not m.enabled]
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.reconfigure, config.notify, config.notify_settings)
        if self.incidents is not None:
            self.incidents.settings = config.sentinel
        summary = {"added": sorted(added), "removed": sorted(removed), "changed": sorted(changed)}
        log.info("config.reloaded", monitors=len(self.monitors), **summary)
        if self.notifier is not None:
            parts = [f"{key}: {', '.join(names)}" for key, names in summary.items() if names]
            changes = "; ".join(parts) if parts else "No monitor changed."
            self.notifier.emit(
                Event(
                    EventKind.CONFIG_RELOADED,
                    Severity.INFO,
                    "Horus config reloaded",
                    f"Watching {len(self.monitors)} monitor(s). {changes}",
                    details=summary,
                )
            )

    # -- digest ----------------------------------------------------------------------------------------

    async def _digest_when_due(self, poll_seconds: float) -> None:
        if self.notifier is None:
            return
        while True:
            try:
                await self.send_digest_if_due()
            except Exception as exc:  # the digest is a courtesy; watching goes on without it
                log.warning("digest.failed", error=str(exc))
            await asyncio.sleep(poll_seconds)

    async def send_digest_if_due(self) -> bool:
        notifier = self.notifier
        if notifier is None or notifier.settings.digest_at is None:
            return False
        state_dir = self.store.path.parent
        wall = self.clock.wall()
        local_now = dt.datetime.fromtimestamp(wall)
        if not await asyncio.to_thread(digest_due, state_dir, notifier.settings.digest_at, local_now):
            return False
        heals = await self.db(self.store.heals, since=wall - DIGEST_WINDOW_SECONDS, limit=1000)
        channels = await asyncio.wrap_future(notifier.channel_health())
        title, body = render_digest(
            now=wall, host=notifier.host, snapshot=self.status_snapshot(), heals=heals, channels=channels
        )
        notifier.emit(Event(EventKind.DIGEST, Severity.INFO, title, body), immediately=True)
        await asyncio.to_thread(mark_digest_sent, state_dir, local_now)
        log.info("digest.sent", heals=len(heals))
        return True

    # -- status ----------------------------------------------------------------------------------------

    async def _write_status_every(self, seconds: float) -> None:
        # The header (a few hundred bytes that say "alive") right away and then every 5 s, so `horus status`
        # never calls a starting daemon "not running". The rows are looked at as often, and less often with
        # thousands of monitors, where building them all costs CPU; only the rows that changed are written.
        rows_every = max(1, round(len(self.monitors) / 2000))
        count = 0
        while True:
            # Built and written on a worker thread: the loop keeps checking meanwhile. The first looks at a
            # fresh daemon's monitors come in during its first seconds (the start jitter): shown as they do.
            rows = count < 3 or count % rows_every == 0
            await asyncio.to_thread(self.write_status, running=True, every_seconds=seconds, rows=rows)
            count += 1
            await asyncio.sleep(seconds)

    def write_status(self, *, running: bool = False, every_seconds: float = STATUS_SECONDS, rows: bool = True) -> None:
        """``status.json`` for ``horus status`` (see ``horus.engine.status``): the header, and with ``rows`` what
        changed in the monitors' rows; once stopped, every row. A failure is logged, never raised (status is
        for people)."""
        writer = self.__dict__.setdefault("_status_writer", StatusWriter(self.store.path.parent))
        header, monitors = self._status(running, every_seconds)
        # The monitors not checked within their due time, with their last check: any other monitor was, which
        # lets a reader say "checked within N s" without a write for every healthy look.
        overdue: dict[str, float | None] = {}
        # And what a person reads first, cheap to look at every time: when a status, a heal, a quarantine or a
        # probe error moved since the rows were last taken, they are taken now, not up to 25 s later.
        moved = []
        for monitor in list(self.monitors.values()):
            state = monitor.state
            last = state.last_check_at
            if last is None or header["written_at"] - last > self._due_within(monitor):
                if len(overdue) < MAX_OVERDUE:
                    overdue[monitor.name] = last
                else:
                    header["overdue_more"] = True
            moved.append(
                (
                    state.last_status,
                    state.failing_since,
                    state.last_heal,
                    state.heals_in_streak,
                    state.quarantined_until,
                    bool(monitor.consecutive_errors),
                )
            )
        header["overdue"] = overdue
        fleet = hash(tuple(moved))
        take_rows = rows or not running or writer.fleet != fleet
        try:
            writer.write(header, monitors if take_rows else None, full=not running)
            if take_rows:
                writer.fleet = fleet
        except Exception as exc:
            log.warning("status.write_failed", error=str(exc))

    def status_snapshot(self) -> dict[str, Any]:
        """The same content as ``status.json``, in memory (for the digest)."""
        header, rows = self._status(running=True, every_seconds=STATUS_SECONDS)
        return {**header, "monitors": list(rows())}

    def _status(
        self, running: bool, every_seconds: float
    ) -> tuple[dict[str, Any], Callable[[], Iterator[dict[str, Any]]]]:
        now = self.now()
        problems = self.notifier.open_problems() if self.notifier is not None else {}
        header = {
            "pid": os.getpid(),
            "running": running,
            "written_at": now.wall,
            "started_at": self.started_at,
            "every_seconds": every_seconds,
            "disabled": self.disabled,
        }
        # Rows one at a time, afresh on each call; the list of monitors is copied first, since a reload may
        # change it meanwhile.
        return header, lambda: (
            {**m.status(now, problems.get(m.name)), "due_within_seconds": self._due_within(m)}
            for m in list(self.monitors.values())
        )

    @staticmethod
    def _due_within(monitor: Monitor) -> float:
        """How long after its last check a watched monitor is checked again at the latest: its interval, the
        probe's timeout, and a margin for a busy loop (one healing or crashed may take longer: it is overdue)."""
        return monitor.settings.interval_seconds + monitor.check_timeout + STATUS_DUE_MARGIN_SECONDS


class Monitor:
    """One watched service at run time: its check, heal, policy and state."""

    # Slots: at 10,000 monitors, a per-instance __dict__ is several MB of the daemon's memory.
    __slots__ = (
        "_announced_cooldown_for",
        "_announced_symptom",
        "_announced_unhealed",
        "_slot",
        "check",
        "check_timeout",
        "consecutive_errors",
        "daemon",
        "heal",
        "ladder",
        "last_error",
        "log",
        "name",
        "notifier",
        "policy",
        "retired",
        "settings",
        "state",
    )

    def __init__(self, daemon: Daemon, settings: MonitorSettings) -> None:
        self.daemon = daemon
        self.settings = settings
        self.name = settings.name
        self.check = build_check(settings.check)
        self.check_timeout = self.check.timeout_seconds(settings.check_timeout_seconds)
        self.ladder = [build_heal(options) for options in settings.escalation]
        self.heal = self.ladder[0] if self.ladder else None
        budget = settings.budget
        self.policy = HealPolicy.shared(
            min_failures_to_heal=settings.min_failures_to_heal,
            heal_cooldown_seconds=settings.heal_cooldown_seconds,
            startup_grace_seconds=settings.startup_grace_seconds,
            can_heal=self.heal is not None,
            max_heals=budget.max_heals,
            backoff_max_seconds=budget.backoff_max_seconds,
            stable_after_seconds=budget.stable_after_seconds,
            retry_in_seconds=budget.retry_in_seconds,
        )
        self._announced_symptom = False
        self.state = daemon.states[settings.name]
        self.log = log.bind(monitor=settings.name)
        self._slot: float | None = None
        self._announced_cooldown_for: Instant | None = None
        self._announced_unhealed = False
        self.retired = False  # replaced or removed by a config reload: its results are dropped
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.notifier = daemon.notifier

    def retire(self) -> None:
        self.retired = True

    def status(self, now: Instant, problem_since: float | None) -> dict[str, Any]:
        """This monitor as `horus status` shows it."""
        state = self.state
        cooldown = 0.0
        if state.last_heal is not None:
            wait = self.policy.wait_after_heal(state.heals_in_streak)
            cooldown = max(0.0, wait - state.last_heal.seconds_until(now))
        return {
            "name": self.name,
            "check": self.check.type,
            "heal": self.heal.action if self.heal is not None else None,
            "status": "error" if self.consecutive_errors else (state.last_status.value if state.last_status else None),
            "reason": self.last_error if self.consecutive_errors else state.last_reason,
            "last_check_at": state.last_check_at,
            "consecutive_failures": state.consecutive_failures,
            "min_failures_to_heal": self.settings.min_failures_to_heal,
            "failing_since": state.failing_since,
            "last_heal_at": state.last_heal.wall if state.last_heal is not None else None,
            "cooldown_remaining_seconds": round(cooldown, 1),
            "heals_in_streak": state.heals_in_streak,
            "quarantined_until": state.quarantined_until.wall if state.quarantined_until is not None else None,
            "announced_problem_since": problem_since,
        }

    # -- what the scheduler calls ------------------------------------------------------------------

    def complete(self, run: CheckRun) -> Coroutine[Any, Any, None] | None:
        """Fold one check's result in; returns the heal to run when one is due."""
        if self.retired:
            return None
        state = self.state
        result = run.result
        before = state.durable_fields()
        now = self.daemon.now()
        verdict = self.policy.observe(state, result.status, result.reason, now)
        self._log_observation(result.status, result.reason, run.duration_seconds, verdict)
        if verdict.recovered:
            self.daemon.upstream_recovered(self.name)
        tracker = self.daemon.incidents
        has_incident = tracker is not None and tracker.incident_of(self.name) is not None
        if verdict.heal:
            upstream = self.daemon.failing_upstream(self.settings)
            if upstream is None:
                self._announced_symptom = False
                return self._heal(result.reason, step=verdict.step, retrying=verdict.retrying)
            # A symptom: restarting this service cannot fix what its dependency broke. Nothing of the
            # budget is spent, and the failure count stays at the threshold for when the upstream is back.
            if not self._announced_symptom:
                self._announced_symptom = True
                self.log.warning("heal.suppressed", why="upstream_failing", upstream=upstream)
            if state.durable_fields() != before:
                self._persist()
            return self._detect(result.reason, upstream_failing=upstream) if not has_incident else None
        if state.durable_fields() != before:
            self._persist()
        if verdict.quarantine_now:
            self._quarantined(result.reason)
            return self.note("quarantined", f"heal budget spent after {state.heals_in_streak} heal(s): {result.reason}")
        if tracker is None:
            return None
        if verdict.threshold_reached and not has_incident and (self.heal is None or verdict.cooldown_remaining > 0):
            return self._detect(result.reason)
        if has_incident:
            return tracker.observed(self.settings, result)
        return None

    # -- incidents ---------------------------------------------------------------------------------------

    async def _detect(
        self,
        reason: str,
        *,
        upstream_failing: str | None = None,
        evidence: dict[str, Any] | None = None,
        failures: int | None = None,
    ) -> None:
        tracker = self.daemon.incidents
        if tracker is None:
            return
        state = self.state
        await self._incident_step(
            tracker.detected(
                Detection(
                    self.settings,
                    reason,
                    failures=state.consecutive_failures if failures is None else failures,
                    failing_since=state.failing_since,
                    last_healthy_at=state.failing_since,
                    evidence=evidence or {},
                    upstreams=self.daemon.upstream_states(self.settings),
                    upstream_failing=upstream_failing,
                )
            ),
            timeout=DETECT_TIMEOUT_SECONDS,
        )

    async def note(self, kind: str, message: str) -> None:
        """A line for this monitor's incident timeline, if it has an incident."""
        tracker = self.daemon.incidents
        if tracker is not None:
            await self._incident_step(tracker.note(self.name, kind, message))

    async def _incident_step(self, step: Coroutine[Any, Any, Any], *, timeout: float = INCIDENT_STEP_SECONDS) -> None:
        """Run one step of the incident's bookkeeping, bounded: forensics must never stand between a failure
        and its heal, even when the incident database's disk stops answering."""
        try:
            await asyncio.wait_for(step, timeout)
        except TimeoutError:
            self.log.error("incident.timed_out", limit=humanize.seconds(timeout), note="healing goes on without it")
        except Exception:
            self.log.exception("incident.failed")

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
        notifier = self.notifier
        if status is Status.ERROR:
            self.log.warning("check.error", reason=reason, latency_ms=round(duration * 1000, 1))
            self.consecutive_errors += 1
            self.last_error = reason
            if notifier is not None:
                # One broken probe is noise; a probe that stays broken leaves the service unwatched.
                if self.consecutive_errors == self.settings.min_failures_to_heal:
                    notifier.problem(
                        EventKind.PROBE_ERROR,
                        self.name,
                        f"{self.name} cannot be checked",
                        f"Horus cannot observe {self.name} ({self.consecutive_errors} checks in a row): {reason}",
                        reason=reason,
                    )
                else:
                    notifier.still_failing(self.name, reason)
            return
        self.consecutive_errors = 0
        if status is Status.HEALTHY:
            if verdict.recovered:
                self.log.info("monitor.recovered", reason=reason, unhealthy_for=humanize.seconds(verdict.unhealthy_for))
                self._announced_unhealed = False
            else:
                self.log.debug("check.ok", reason=reason, latency_ms=round(duration * 1000, 1))
            if notifier is not None:
                notifier.healthy(self.name, reason)
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
                remaining = humanize.seconds(verdict.cooldown_remaining)
                self.log.warning("heal.suppressed", why="cooldown", remaining=remaining)
                if notifier is not None:
                    notifier.problem(
                        EventKind.FAILING,
                        self.name,
                        f"{self.name} is failing",
                        f"{self.name}: {reason}. Healed recently; the next heal waits {remaining} (cooldown).",
                        reason=reason,
                    )
            elif verdict.threshold_reached and self.heal is None and not self._announced_unhealed:
                self._announced_unhealed = True
                self.log.warning("monitor.unhealthy", note="no heal configured; watching only")
                if notifier is not None:
                    notifier.problem(
                        EventKind.FAILING,
                        self.name,
                        f"{self.name} is failing",
                        f"{self.name}: {reason}. No heal is configured: Horus is only watching.",
                        reason=reason,
                    )
            elif notifier is not None:
                notifier.still_failing(self.name, reason)

    def _quarantined(self, reason: str) -> None:
        state = self.state
        assert state.quarantined_until is not None
        retry_in = humanize.duration(max(0.0, self.daemon.now().seconds_until(state.quarantined_until)))
        self.log.error("monitor.quarantined", heals=state.heals_in_streak, retry_in=retry_in, reason=reason)
        if self.notifier is not None:
            self.notifier.problem(
                EventKind.QUARANTINED,
                self.name,
                f"{self.name} quarantined: Horus stopped healing it",
                f"{self.name} failed again after {state.heals_in_streak} heal(s): {reason}. Horus will not heal it "
                f"again for {retry_in} (then it tries once more); `horus resume {self.name}` resumes at once.",
                reason=reason,
                heals=state.heals_in_streak,
            )

    async def _heal(self, reason: str, *, step: int = 0, retrying: bool = False) -> None:
        assert self.ladder
        daemon = self.daemon
        failures = self.state.consecutive_failures  # before heal_started resets the count
        if retrying:
            self.log.warning("monitor.quarantine_retry", note="the quarantine ran out: one more try")
        # Plugins log through structlog too (kill_process.signal_sent): their events carry the monitor.
        structlog.contextvars.bind_contextvars(monitor=self.name)
        self.policy.heal_started(self.state, daemon.now())
        # Looked at before the heal acts: a restart may clear what the service left behind.
        since = self.state.failing_since - EVIDENCE_LOOKBACK_SECONDS if self.state.failing_since else None
        try:
            evidence = await asyncio.to_thread(self.check.evidence, since)
        except Exception:
            self.log.exception("check.evidence_failed")
            evidence = {}
        # The incident and its snapshot come first: once the heal acts, the evidence is gone.
        await self._detect(reason, evidence=evidence, failures=failures)
        rung = min(step, len(self.ladder) - 1)
        if daemon.incidents is not None and len(self.ladder) > 1:
            learned, source = daemon.incidents.learned_step(self.name)
            if learned > rung:
                # The last time this failure pattern happened, only a later step of the ladder ended it:
                # start there instead of repeating what did not work.
                rung = min(learned, len(self.ladder) - 1)
                self.state.heals_in_streak = max(self.state.heals_in_streak, rung + 1)
                self.log.warning("heal.adapted", step=rung + 1, learned_from_incident=source)
                await self.note("note", f"starting at step {rung + 1}: incident {source} of this pattern needed it")
        heal = self.ladder[rung]
        heal_id: int | None = None
        try:
            heal_id = await asyncio.wait_for(
                daemon.db(daemon.store.begin_heal, self.state.to_stored(), action=heal.action, reason=reason),
                BEGIN_HEAL_TIMEOUT_SECONDS,
            )
        except (StoreError, TimeoutError) as exc:
            # Healing matters more than bookkeeping (a full or hung disk); the cooldown still holds in memory.
            error = (
                str(exc) or f"the state database did not answer within {humanize.seconds(BEGIN_HEAL_TIMEOUT_SECONDS)}"
            )
            self.log.error("store.error", error=error, note="healing anyway; cooldown kept in memory only")
        if daemon.incidents is not None:
            await self._incident_step(daemon.incidents.heal_started(self.name, heal.action, rung))
        self.log.warning("heal.started", action=heal.action, reason=reason, step=rung + 1, **evidence)
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
            channels = self._notify_heal(heal.action, reason, outcome, evidence)
            if channels:
                await self.note(
                    "notified", f"{'healed' if outcome.ok else 'heal failed'}: queued for {', '.join(channels)}"
                )
            if daemon.incidents is not None:
                await self._incident_step(daemon.incidents.heal_finished(self.settings, outcome))

    def _notify_heal(self, action: str, reason: str, outcome: HealOutcome, evidence: dict[str, Any]) -> list[str]:
        if self.notifier is None:
            return []
        stuck = f" The service said: {evidence['crash_summary']}." if evidence.get("crash_summary") else ""
        facts = {"reason": reason, "action": action, "summary": outcome.summary, **evidence}
        if outcome.ok:
            return self.notifier.problem(
                EventKind.HEALED,
                self.name,
                f"{self.name} healed ({action})",
                f"Why: {reason}. Done: {outcome.summary}.{stuck}",
                **facts,
            )
        return self.notifier.problem(
            EventKind.HEAL_FAILED,
            self.name,
            f"{self.name}: heal failed ({action})",
            f"Why: {reason}. Tried {action}: {outcome.summary}.{stuck}",
            **facts,
        )

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

    def persist(self) -> None:
        self._persist()

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
