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
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

import structlog

from horus import children, humanize
from horus.checks.base import Check, CheckResult, ProbeContext, Status, new_probe_http_client
from horus.checks.registry import build_check
from horus.clock import Clock, SystemClock, boot_id
from horus.config.models import HorusConfig, MonitorSettings
from horus.engine.incidents import Detection, IncidentTracker
from horus.engine.lifecycle import Lifecycle, LifeState, Phase, Step, Transition, TransitionKind
from horus.engine.policy import HealPolicy, MonitorState
from horus.engine.runner import CheckRun, collect_evidence, run_check, run_heal
from horus.engine.runner_watch import RunnerWatch, follow_from_now, follow_runner, watch_of
from horus.engine.scheduler import Scheduler
from horus.engine.stats import EngineStats
from horus.engine.status import MAX_OVERDUE, StatusWriter
from horus.errors import CannotStart, CheckCannotOpen, ConfigError, EngineCrashed, StoreError
from horus.heals.base import HealContext, HealOutcome
from horus.heals.registry import build_heal
from horus.log import get_logger
from horus.notify.digest import DIGEST_WINDOW_SECONDS, digest_due, mark_digest_sent, render_digest
from horus.notify.events import Event, EventKind, Severity
from horus.notify.notifier import Notifier
from horus.notify.outbox import REDERIVE_WITHIN_SECONDS, Outbox, lost_heal_notices
from horus.sentinel.store import SqliteIncidentStore
from horus.store.state import HealRecord, Instant, StateStore, StoredMonitorState

__all__ = ["Daemon", "Monitor"]

log = get_logger("horus.engine")
T = TypeVar("T")

# A probe that asks to be re-run sooner than this is re-run after this, so a file dated in the future
# cannot spin a monitor in a tight loop.
MIN_RECHECK_SECONDS = 0.05
# A look this close to its slot is the slot's own look (the scheduler wakes in steps of 20 ms).
SLOT_TOLERANCE_SECONDS = 0.05
# A heal held back by its cooldown is looked at again just after the cooldown ends.
COOLDOWN_MARGIN_SECONDS = 0.05
# A crash record written this long before the first failed check still explains the failure (the
# service ended itself, then the check noticed).
EVIDENCE_LOOKBACK_SECONDS = 600.0
# After an unexpected bug in a monitor's own handling, look at it again after this long.
CRASH_RESTART_SECONDS = 5.0
# How often the daemon writes status.json for `horus status`.
STATUS_SECONDS = 5.0
# Beyond its interval, how late a monitor's next check may be before status lists it as overdue.
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
        self._reload_config = reload_config
        self._boot = boot_id()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="horus-store")
        self.states: dict[str, MonitorState] = {}
        self.lives: dict[str, LifeState] = {}
        self.monitors: dict[str, Monitor] = {}
        self.stats = EngineStats()
        self.started_at = self.clock.wall()
        self._scheduler: Scheduler | None = None
        self._reloading: asyncio.Lock | None = None
        # What each monitor's runner was seen doing, by monitor: kept across config reloads.
        self.runner_watches: dict[str, RunnerWatch] = {}
        # Set once every monitor is on the schedule and the scheduler runs (horus.engine.self_watch: READY=1).
        self.watching = asyncio.Event()

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
        # Before anything new runs: end what an earlier Horus started here and left running when it died.
        await asyncio.to_thread(children.reap_earlier, self.store.path.parent)
        now = self.now()
        stored = {s.monitor: s for s in await self.db(self.store.all_states)}
        # The heals of episodes an earlier Horus left open, in one read: they still count for the recovery.
        open_since = [s.failing_since for s in stored.values() if s.failing_since is not None]
        heals = await self.db(self.store.heals, limit=10_000, since=min(open_since)) if open_since else []
        for settings in self.settings:
            self._restore_state(settings.name, stored, now, heals)
        lost_state = getattr(self.store, "recovered_from_damage", None)
        if lost_state:
            # When each monitor was last healed is lost with the state database: every cooldown counts
            # as running from now, so a damaged file can never set off a storm of heals.
            for state in self.states.values():
                state.last_heal = now
            try:
                await self.db(self.store.save_many, [s.to_stored() for s in self.states.values()], now=now.wall)
            except StoreError as exc:
                log.error("store.error", error=str(exc), note="cooldowns assumed in memory only")
            log.warning("store.cooldowns_assumed", monitors=len(self.states), why=lost_state)
        # A damaged outbox or incident database is moved aside before it is opened; one that cannot be
        # opened at all costs its feature (said loudly), never the watching.
        damages = [damage for damage in [getattr(self.store, "damage", None)] if damage is not None]
        for what, check in (("notifier", Outbox.check), ("incidents", SqliteIncidentStore.check)):
            owner = self.notifier if what == "notifier" else self.incidents
            if owner is not None:
                try:
                    damage = await asyncio.to_thread(check, owner.state_dir)
                except StoreError as exc:
                    damage = None
                    log.error("store.error", error=str(exc))
                if damage is not None:
                    damages.append(damage)
        if self.notifier is not None:
            try:
                await asyncio.to_thread(self.notifier.start)
            except StoreError as exc:
                log.error("notify.unavailable", error=str(exc), note="monitoring goes on without notifications")
                self.notifier = None
        if self.notifier is not None:
            self.notifier.emit(
                Event(
                    EventKind.STARTED,
                    Severity.INFO,
                    f"Horus started on {self.notifier.host}",
                    f"Watching {len(self.settings)} monitor(s)"
                    + (f"; disabled: {', '.join(self.disabled)}" if self.disabled else ""),
                )
            )
            for damage in damages:
                # A kind of its own (store_damaged) would let channels filter it; `started` until then.
                cooldowns = " Every cooldown runs from now." if damage.what == "state database" else ""
                self.notifier.emit(
                    Event(
                        EventKind.STARTED,
                        Severity.CRITICAL,
                        f"Horus on {self.notifier.host}: {damage.what} damaged",
                        f"{damage.sentence()[:1].upper()}{damage.sentence()[1:]}; a new one was started.{cooldowns}",
                        details={"path": str(damage.path), "reason": damage.reason, "moved_to": str(damage.moved_to)},
                    )
                )
            # A heal whose event never reached the outbox (Horus killed right after it) is told now.
            try:
                heals = await self.db(self.store.heals_to_announce, since=now.wall - REDERIVE_WITHIN_SECONDS)
                notices = await asyncio.to_thread(lost_heal_notices, self.notifier.state_dir, heals)
            except StoreError as exc:
                log.error("store.error", error=str(exc), note="heals not announced before a stop are not re-derived")
                notices = []
            for notice in notices:
                told = self.notifier.problem(
                    notice.kind, notice.monitor, notice.title, notice.message, **notice.details
                )
                log.warning("notify.rederived", monitor=notice.monitor, heal_id=notice.heal_id, kind=str(notice.kind))
                if not told:
                    self.db_nowait(self.store.mark_announced, notice.heal_id, "re-derived at start; nobody wants it")
        self._reloading = asyncio.Lock()
        if self.incidents is not None:
            try:
                await self.incidents.start()
            except StoreError as exc:
                log.error("sentinel.unavailable", error=str(exc), note="monitoring goes on without incidents")
                self.incidents = None
        if self.incidents is not None:
            self._carry_on_incidents(now)
        async with new_probe_http_client() as http:
            ctx = ProbeContext(clock=self.clock, http=http)
            self._scheduler = scheduler = Scheduler(clock=self.clock, ctx=ctx, on_check=self.stats.record_check)
            try:
                await self._start_monitors(self.settings, jitter=True, starting=True)
            except CannotStart:
                await self._shut_down(started=False)
                raise
            started: dict[str, Any] = {"monitors": len(self.settings), "state_db": str(self.store.path)}
            if self.disabled:
                started["disabled"] = self.disabled
            log.info("horus.started", **started)
            # Everything built so far (config, monitors, plugins) lives as long as the daemon. Freezing it
            # keeps the cyclic garbage collector from walking millions of such objects again and again:
            # at 10,000 monitors those walks cost more CPU than the checks, and stall the loop.
            gc.collect()
            gc.freeze()
            dispatcher = asyncio.create_task(scheduler.run(), name="horus-scheduler")
            self.watching.set()
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
                await self._shut_down(started=True)

    async def _shut_down(self, *, started: bool) -> None:
        """Release everything :meth:`run` acquired, in order; ``started`` once monitoring had begun."""
        await asyncio.gather(*(m.aclose() for m in self.monitors.values()), return_exceptions=True)
        if started:
            await asyncio.to_thread(self.write_status, running=False)
        if self.incidents is not None:
            await self.incidents.stop()
        self._db_thread.shutdown(wait=True)
        if self.notifier is not None:
            if started:
                self.notifier.emit(
                    Event(EventKind.STOPPED, Severity.INFO, f"Horus stopped on {self.notifier.host}", "Horus stopped."),
                    immediately=True,
                )
            await asyncio.to_thread(self.notifier.stop)
        if started:
            log.info("horus.stopped")

    def _restore_state(
        self, name: str, stored: dict[str, StoredMonitorState], now: Instant, heals: Sequence[HealRecord] = ()
    ) -> None:
        if name in self.states:
            return
        previous = stored.get(name)
        state = MonitorState.restore(previous, now) if previous else MonitorState(name=name)
        self.states[name] = state
        self.lives[name] = LifeState.restored(state, heals)

    def _carry_on_incidents(self, now: Instant) -> None:
        """A monitor whose incident an earlier Horus left open, its recovery not confirmed, was failing then: it
        must prove its recovery again, never be taken as healthy on a first look. One whose recovery was
        confirmed (the incident only waits out its reopen window) proved it already: a failure reopens the
        incident, and its first healthy look lets it close; confirming it again would announce a second
        recovery of a service that never failed in this Horus's sight."""
        assert self.incidents is not None
        for name, life in self.lives.items():
            if self.incidents.recovering(name):
                continue
            if self.incidents.incident_of(name) is not None and life.phase is Phase.UNKNOWN:
                life.phase = Phase.FAILING
                state = self.states[name]
                if state.failing_since is None:
                    state.failing_since = now.wall

    async def _start_monitors(
        self,
        settings: Iterable[MonitorSettings],
        *,
        jitter: bool,
        keep: dict[str, Check] | None = None,
        starting: bool = False,
    ) -> None:
        """Open each new monitor's check and put it on the schedule. At start, a check that cannot hold what
        it needs (a listen address another process holds) stops Horus with every such reason (CannotStart);
        on a reload, the monitor runs anyway and its probe says why on every look."""
        assert self._scheduler is not None
        keep = keep or {}
        monitors = [Monitor(self, s, keep.get(s.name)) for s in settings]
        opening = [monitor for monitor in monitors if monitor.name not in keep]
        outcomes = await asyncio.gather(*(monitor.check.open() for monitor in opening), return_exceptions=True)
        failed: list[str] = []
        for monitor, outcome in zip(opening, outcomes, strict=True):
            if isinstance(outcome, CheckCannotOpen):
                monitor.log.error("monitor.cannot_open", error=str(outcome))
                failed.append(f"{monitor.name}: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
        if failed and starting:
            await asyncio.gather(*(monitor.check.aclose() for monitor in opening), return_exceptions=True)
            raise CannotStart("; ".join(failed))
        await asyncio.gather(*(monitor.resume_verification() for monitor in monitors))
        for monitor in monitors:
            self.monitors[monitor.name] = monitor
            window = min(monitor.settings.interval_seconds, monitor.settings.start_jitter_seconds) if jitter else 0.0
            self._scheduler.start(monitor, random.uniform(0, window))

    # -- dependencies and resume -------------------------------------------------------------------------

    def failing_upstream(self, settings: MonitorSettings) -> str | None:
        """The first declared dependency that is failing now (not yet confirmed recovered), or None."""
        for name in settings.depends_on:
            state, life = self.states.get(name), self.lives.get(name)
            if state is None or life is None:
                continue
            if state.last_status is Status.UNHEALTHY or state.quarantined_until is not None:
                return name
            if life.phase not in (Phase.HEALTHY, Phase.UNKNOWN):
                return name
        return None

    def upstream_states(self, settings: MonitorSettings) -> dict[str, str]:
        """Each declared dependency's state in words, for the root-cause analysis."""
        out = {}
        for name in settings.depends_on:
            state = self.states.get(name)
            if state is not None and state.last_status is not None:
                out[name] = f"{state.last_status.value}: {state.last_reason}"
        return out

    async def _incidents_every(self, seconds: float, ctx: ProbeContext) -> None:
        """Between looks: verify checks and verification deadlines (each monitor's lifecycle), then the
        incidents that may close (only those whose monitor the lifecycle calls healthy)."""
        while True:
            await asyncio.sleep(seconds)
            for monitor in list(self.monitors.values()):
                if monitor.life.verify_deadline is None and monitor.verify_check is None:
                    continue
                try:
                    await monitor.tick(ctx)
                except Exception:
                    log.exception("monitor.tick_failed", monitor=monitor.name)
            if self.incidents is None:
                continue
            try:
                await self.incidents.tick(self._may_close_incident)
            except Exception:
                log.exception("incident.tick_failed")

    def _may_close_incident(self, name: str) -> bool:
        life = self.lives.get(name)
        # A monitor that is no longer configured cannot get better or worse: its incident closes as it is.
        return life is None or Lifecycle.may_close_incident(life)

    def overdue_seconds(self, now_monotonic: float) -> float:
        """How late the scheduler's earliest due check is (0.0 before it runs): Horus's own progress."""
        return self._scheduler.overdue_seconds(now_monotonic) if self._scheduler is not None else 0.0

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
                if self.resume(name):
                    await self.monitors[name].note("resumed", "quarantine lifted by the operator (horus resume)")

    def resume(self, name: str) -> bool:
        """``horus resume NAME``; False when the monitor is unknown or had nothing to resume."""
        monitor = self.monitors.get(name)
        if monitor is None:
            log.warning("monitor.resume_unknown", monitor=name)
            return False
        resumed = monitor.lifecycle.resume(monitor.state, monitor.life, self.now())
        if resumed is None:
            monitor.log.info("monitor.resume_ignored", note="not quarantined and no heal refused: nothing to resume")
            return False
        monitor.persist()
        monitor.log.warning("monitor.resumed", note="quarantine lifted and heal budget reset by the operator")
        if self._scheduler is not None:
            self._scheduler.check_soon(monitor)
        return True

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
                log.error("config.reload_rejected", errors=[str(exc) or type(exc).__name__])
                return
            await self._apply(config)

    async def _apply(self, config: HorusConfig) -> None:
        new = {m.name: m for m in config.monitor_settings()}
        enabled = {name: m for name, m in new.items() if m.enabled}
        removed = [name for name in self.monitors if name not in enabled]
        changed = [name for name, m in enabled.items() if name in self.monitors and self.monitors[name].settings != m]
        added = [name for name in enabled if name not in self.monitors]
        # A monitor whose check did not change keeps its running check: its windows and history (an
        # artifact_growth window already watched) and so its verdicts carry over.
        keep = {
            name: self.monitors[name].check
            for name in changed
            if self.monitors[name].settings.check == enabled[name].check
        }
        for name in removed + changed:
            monitor = self.monitors.pop(name)
            monitor.retire()
            await monitor.aclose(keep_check=name in keep)
        for name in removed:
            self.states.pop(name, None)
            self.lives.pop(name, None)
        for life in self.lives.values():
            life.heal_blocked = None  # a refused heal may be tried again with the new config
        if added or changed:
            stored = {s.monitor: s for s in await self.db(self.store.all_states)}
            now = self.now()
            for name in added:
                self._restore_state(name, stored, now)
            # A runner a monitor names for the first time: what it did before this reload is nobody's news.
            follow_from_now(self, [enabled[name] for name in added + changed])
            await self._start_monitors([enabled[name] for name in added + changed], jitter=False, keep=keep)
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
        """How long after its last check a watched monitor is normally checked again: its interval and a margin
        for the probe and a busy loop. One that takes longer (a slow probe, a heal, a crash) is listed overdue
        with its exact last check, so the bound a reader is given is never wrong, only sometimes absent."""
        return monitor.settings.interval_seconds + STATUS_DUE_MARGIN_SECONDS


class Monitor:
    """One watched service at run time: its check, heal, lifecycle and state. It follows the transitions
    of its :class:`~horus.engine.lifecycle.Lifecycle`: the log, the notifier and the incident tracker are
    told what the lifecycle decided, and decide nothing of their own."""

    # Slots: at 10,000 monitors, a per-instance __dict__ is several MB of the daemon's memory.
    __slots__ = (
        "_slot",
        "check",
        "check_timeout",
        "consecutive_errors",
        "daemon",
        "heal",
        "ladder",
        "last_error",
        "life",
        "lifecycle",
        "log",
        "name",
        "notifier",
        "policy",
        "recheck_in",
        "retired",
        "settings",
        "state",
        "trading",
        "verify_check",
    )

    def __init__(self, daemon: Daemon, settings: MonitorSettings, check: Check | None = None) -> None:
        self.daemon = daemon
        self.settings = settings
        self.name = settings.name
        # A reload that left the check unchanged hands over the running one, with its windows and history.
        self.check = check if check is not None else build_check(settings.check)
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
        self.lifecycle = Lifecycle.shared(
            policy=self.policy,
            confirm_seconds=settings.confirm_recovery_seconds,
            verify_within_seconds=settings.verify_within_seconds,
            restart_limit=settings.restart_limit,
            has_verify=settings.verify is not None,
        )
        self.verify_check: Check | None = None
        self.state = daemon.states[settings.name]
        self.life = daemon.lives[settings.name]
        self.log = log.bind(monitor=settings.name)
        self._slot: float | None = None
        self.recheck_in: float | None = None
        self.retired = False  # replaced or removed by a config reload: its results are dropped
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.trading: dict[str, Any] | None = None  # a trading bot's mode and cause, as its last look saw them
        self.notifier = daemon.notifier

    def retire(self) -> None:
        self.retired = True

    async def aclose(self, *, keep_check: bool = False) -> None:
        if not keep_check:
            await self.check.aclose()
        if self.verify_check is not None:
            await self.verify_check.aclose()
            self.verify_check = None

    def status(self, now: Instant, problem_since: float | None) -> dict[str, Any]:
        """This monitor as `horus status` shows it."""
        state, life = self.state, self.life
        cooldown = 0.0
        if state.last_heal is not None:
            wait = self.policy.wait_after_heal(state.heals_in_streak)
            cooldown = max(0.0, wait - state.last_heal.seconds_until(now))
        status: str | None = state.last_status.value if state.last_status else None
        if self.consecutive_errors:
            status = "error"
        elif life.phase is Phase.UNKNOWN:
            status = "unknown"
        return {
            "name": self.name,
            "check": self.check.type,
            "heal": self.heal.action if self.heal is not None else None,
            "status": status,
            "phase": life.phase.value,
            "reason": self.last_error if self.consecutive_errors else state.last_reason,
            "last_check_at": state.last_check_at,
            "consecutive_failures": state.consecutive_failures,
            "min_failures_to_heal": self.settings.min_failures_to_heal,
            "failing_since": state.failing_since,
            "last_heal_at": state.last_heal.wall if state.last_heal is not None else None,
            "cooldown_remaining_seconds": round(cooldown, 1),
            "heals_in_streak": state.heals_in_streak,
            "quarantined_until": state.quarantined_until.wall if state.quarantined_until is not None else None,
            "heal_blocked": life.heal_blocked,
            "restarts_in_window": len(life.restarts),
            "restart_storm": life.storm,
            "announced_problem_since": problem_since,
            "trading": self.trading,
        }

    # -- what the scheduler calls ------------------------------------------------------------------

    def complete(self, run: CheckRun) -> Coroutine[Any, Any, None] | None:
        """Fold one check's result in; returns the follow-up (incident bookkeeping, a heal) when there is one."""
        if self.retired:
            return None
        state, life = self.state, self.life
        result = run.result
        before = state.durable_fields()
        now = self.daemon.now()
        restarts = self._restarts_seen(result)
        upstream = self.daemon.failing_upstream(self.settings) if result.status is Status.UNHEALTHY else None
        step = self.lifecycle.observe(
            state,
            life,
            result.status,
            result.reason,
            now,
            restarts=restarts,
            crashed=bool(result.details.get("crash_output")),
            upstream_failing=upstream,
        )
        self.recheck_in = self._recheck_hint(step)
        self._log_look(result, run.duration_seconds, step)
        self._alert(result)
        if result.status is not Status.ERROR:
            trading = result.details.get("trading")
            self.trading = trading if isinstance(trading, dict) else None
        if state.durable_fields() != before:
            self._persist()
        work = self._follow(step.transitions)
        if step.heal:
            work.append(self._heal(result.reason, step=step.verdict.step, retrying=step.verdict.retrying))
        elif step.detect and self._needs_detection():
            work.append(self._detect(result.reason, upstream_failing=step.upstream, with_evidence=life.storm))
        elif (
            self._has_incident() and result.status is Status.UNHEALTHY and step.has(TransitionKind.CONFIRMATION_BROKEN)
        ):
            work.append(self.note("observation_failed", f"failed again before recovery was confirmed: {result.reason}"))
        if self.settings.runner is not None:
            work.insert(0, follow_runner(self))
        if not work:
            return None
        return _in_order(work)

    def _needs_detection(self) -> bool:
        """No incident yet, or one whose recovery was confirmed: failing again opens or reopens it."""
        tracker = self.daemon.incidents
        return tracker is not None and (tracker.incident_of(self.name) is None or tracker.recovering(self.name))

    def _has_incident(self) -> bool:
        tracker = self.daemon.incidents
        return tracker is not None and tracker.incident_of(self.name) is not None

    def _restarts_seen(self, result: CheckResult) -> int:
        """Restarts this look revealed: new crash records, or a new instance (pid and start time) of the
        service. The first look only learns the instance."""
        if result.status is Status.ERROR:
            return 0
        details = result.details
        crashes = details.get("new_crashes")
        crashes = crashes if isinstance(crashes, int) else 0
        instance = details.get("instance")
        if self.settings.runner is not None:
            # Under a runner its own account says what a restart is (a new runner, or a crashed instance it
            # restarted): a hot reload gives the bot a new pid on purpose, and is none. Read after each look,
            # so a restart is counted one look later.
            instance = watch_of(self).instance
        elif instance is None and isinstance(details.get("pids"), list) and details["pids"]:
            instance = ",".join(str(pid) for pid in sorted(details["pids"]))
        changed = 0
        if isinstance(instance, str):
            if self.life.instance is not None and instance != self.life.instance:
                changed = 1
            self.life.instance = instance
        return max(changed, crashes)

    def _recheck_hint(self, step: Step) -> float | None:
        """How soon to look again, whatever the interval: the end of a confirmation period, a failure
        below the threshold (so the threshold is reached in bounded time), the end of a cooldown."""
        hints = [step.recheck_in]
        verdict = step.verdict
        if verdict.in_grace or (verdict.counted and not verdict.threshold_reached):
            hints.append(self.settings.recheck_failing_seconds)
        if verdict.cooldown_remaining > 0:
            hints.append(verdict.cooldown_remaining + COOLDOWN_MARGIN_SECONDS)
        present = [h for h in hints if h is not None]
        return min(present) if present else None

    # -- following the lifecycle's transitions ----------------------------------------------------------

    def _follow(self, transitions: Iterable[Transition]) -> list[Coroutine[Any, Any, None]]:
        """Log and notify each transition; return the incident bookkeeping it needs, to run in order."""
        work: list[Coroutine[Any, Any, None]] = []
        notifier = self.notifier
        for t in transitions:
            kind = t.kind
            if kind is TransitionKind.RECOVERED:
                self.log.info(
                    "monitor.recovered",
                    outcome=t.details["outcome"],
                    reason=t.reason,
                    unhealthy_for=humanize.seconds(t.details["unhealthy_for"]),
                )
                self.daemon.upstream_recovered(self.name)
                if self.daemon.incidents is not None:
                    work.append(self._incident_step(self.daemon.incidents.recovered(self.name, t)))
            elif kind is TransitionKind.CONFIRMING:
                self.log.info(
                    "monitor.confirming",
                    reason=t.reason,
                    confirm_within=humanize.seconds(self.settings.confirm_recovery_seconds),
                )
            elif kind is TransitionKind.CONFIRMATION_BROKEN:
                self.log.warning("monitor.confirmation_broken", reason=t.reason)
            elif kind is TransitionKind.SYMPTOM:
                self.log.warning("heal.suppressed", why="upstream_failing", upstream=t.details["upstream"])
            elif kind is TransitionKind.QUARANTINED:
                self._quarantined(t.reason)
                work.append(
                    self.note("quarantined", f"heal budget spent after {t.details['heals']} heal(s): {t.reason}")
                )
            elif kind is TransitionKind.THRESHOLD:
                self._announce_waiting(t)
            elif kind is TransitionKind.RESTARTED:
                self.log.warning("monitor.restarted", note=t.reason, restarts=t.details["restarts"])
            elif kind is TransitionKind.RESTART_STORM:
                self.log.error("monitor.restart_storm", reason=t.reason)
                if notifier is not None:
                    notifier.problem(
                        EventKind.RESTART_STORM,
                        self.name,
                        f"{self.name} is in a restart storm",
                        f"{t.reason}. Horus does not heal a service that keeps restarting itself: its supervisor "
                        "already restarts it, and one more restart cannot help. It needs a person.",
                        reason=t.reason,
                        restarts=t.details["restarts"],
                    )
            elif kind is TransitionKind.NOT_RECOVERED:
                self.log.error("monitor.not_recovered", within=t.details["within"], reason=t.reason)
                work.append(self._not_recovered(t))
        return work

    def _announce_waiting(self, t: Transition) -> None:
        """Past the threshold, and no heal runs now: say why, once per reason."""
        why = t.details["why_not_healed"]
        if t.details.get("storm"):
            return  # announced with the storm itself
        notifier = self.notifier
        if t.details.get("cooldown_remaining", 0) > 0:
            self.log.warning(
                "heal.suppressed", why="cooldown", remaining=humanize.seconds(t.details["cooldown_remaining"])
            )
            message = f"{self.name}: {t.reason}. Healed recently; the next heal waits " + (
                f"{humanize.seconds(t.details['cooldown_remaining'])} (cooldown)."
            )
        elif self.life.heal_blocked is not None:
            self.log.warning("heal.suppressed", why="refused", note=why)
            message = (
                f"{self.name}: {t.reason}. Horus will not heal it: {why}. It tries again after a config reload "
                f"or `horus resume {self.name}`."
            )
        else:
            self.log.warning("monitor.unhealthy", note="no heal configured; watching only")
            message = f"{self.name}: {t.reason}. No heal is configured: Horus is only watching."
        if notifier is not None:
            notifier.problem(EventKind.FAILING, self.name, f"{self.name} is failing", message, reason=t.reason)

    async def _not_recovered(self, t: Transition) -> None:
        tracker = self.daemon.incidents
        incident = tracker.incident_of(self.name) if tracker is not None else None
        if tracker is not None:
            await self._incident_step(tracker.not_recovered(self.name, t))
        if self.notifier is not None:
            within = t.details["within"]
            where = f" (incident {incident})" if incident is not None else ""
            self.notifier.problem(
                EventKind.NOT_RECOVERED,
                self.name,
                f"{self.name} not recovered after its heal",
                f"{self.name} was healed but has not recovered within {within}: {t.reason}{where}.",
                reason=t.reason,
                incident=incident,
            )

    # -- verification between looks ----------------------------------------------------------------------

    async def tick(self, ctx: ProbeContext) -> None:
        """Between looks: the verify check after a heal, and the verification deadline."""
        if self.retired:
            return
        life, state = self.life, self.state
        if self.verify_check is not None and self.lifecycle.has_verify_pending(life):
            run = await run_check(self.verify_check, ctx, timeout=self.settings.check_timeout_seconds)
            growth = run.result.details.get("growth")
            if run.result.is_healthy and (growth is None or (isinstance(growth, int | float) and growth > 0)):
                since = life.heal_finished
                took = humanize.duration(since.seconds_until(self.daemon.now())) if since is not None else "soon"
                done = self.lifecycle.verify_passed(state, life, took, run.result.reason, self.daemon.now())
                if done is not None:
                    await self.verify_check.aclose()
                    self.verify_check = None
                    self._persist()
                    await _in_order(self._follow([done]))
                    if self.notifier is not None:
                        self.notifier.healthy(self.name, done.reason)
                    return
        missed = self.lifecycle.tick(state, life, self.daemon.now())
        if missed is not None:
            await _in_order(self._follow([missed]))

    # -- incidents ---------------------------------------------------------------------------------------

    async def _detect(
        self,
        reason: str,
        *,
        upstream_failing: str | None = None,
        evidence: dict[str, Any] | None = None,
        failures: int | None = None,
        with_evidence: bool = False,
        before_heal: bool = False,
    ) -> None:
        tracker = self.daemon.incidents
        if tracker is None:
            return
        state = self.state
        if evidence is None and with_evidence:
            evidence = await self._evidence()
        await self._incident_step(
            tracker.detected(
                Detection(
                    self.settings,
                    reason,
                    failures=state.consecutive_failures if failures is None else failures,
                    failing_since=state.failing_since,
                    # The last healthy look, not the first failed one: what the service did (a deploy, a
                    # crash record) between the two belongs to this failure.
                    last_healthy_at=state.last_healthy_at,
                    evidence=evidence or {},
                    upstreams=self.daemon.upstream_states(self.settings),
                    upstream_failing=upstream_failing,
                    before_heal=before_heal,
                )
            ),
            timeout=DETECT_TIMEOUT_SECONDS,
        )

    async def _evidence(self) -> dict[str, Any]:
        """What the service left behind (crash records) since shortly before this episode began."""
        since = self.state.failing_since - EVIDENCE_LOOKBACK_SECONDS if self.state.failing_since else None
        try:
            return await asyncio.to_thread(collect_evidence, self.check, since)
        except Exception:
            self.log.exception("check.evidence_failed")
            return {}

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
        if now >= self._slot - SLOT_TOLERANCE_SECONDS:
            # This look was the slot's own (not an early recheck, which must not push the schedule back).
            # A monitor that fell behind (a long probe or heal) skips, never bursts.
            self._slot += interval
            if self._slot <= now:
                self._slot = now + interval
        due = self._slot
        for hint in (result.recheck_in, self.recheck_in):
            if hint is not None:
                due = min(due, now + max(MIN_RECHECK_SECONDS, hint))
        return due

    def crashed(self, now: float) -> float:
        self.log.exception("monitor.crashed", retry_in=CRASH_RESTART_SECONDS)
        return now + CRASH_RESTART_SECONDS

    # -- what follows from a result ------------------------------------------------------------------

    def _alert(self, result: CheckResult) -> None:
        """Facts a check reports once (a trading bot's disconnect, rejects, trip): logged and sent."""
        alerts = result.details.get("alerts")
        if not isinstance(alerts, list):
            return
        for alert in alerts:
            kind, message = str(alert.get("kind")), str(alert.get("message"))
            severity = Severity.parse(str(alert.get("severity", "warning")))
            self.log.warning("monitor.alert", alert=kind, message=message)
            if self.notifier is not None:
                self.notifier.alert(self.name, kind, message, severity=severity)

    def _log_look(self, result: CheckResult, duration: float, step: Step) -> None:
        status, reason = result.status, result.reason
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
        if status is Status.UNKNOWN:
            self.log.debug("check.not_known_yet", reason=reason)
            return
        if status is Status.HEALTHY and not self.life.storm:
            self.log.debug("check.ok", reason=reason, latency_ms=round(duration * 1000, 1))
            if notifier is not None and self.life.phase is Phase.HEALTHY:
                notifier.healthy(
                    self.name, step.transitions[-1].reason if step.has(TransitionKind.RECOVERED) else reason
                )
            return
        if step.verdict.in_grace:
            self.log.info("check.failed_in_grace", reason=reason, note="not counted: the service was just healed")
            return
        self.log.warning(
            "check.failed",
            reason=self.state.last_reason,
            failures=self.state.consecutive_failures,
            threshold=self.settings.min_failures_to_heal,
        )
        if notifier is not None:
            notifier.still_failing(self.name, self.state.last_reason)

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
        state, life = self.state, self.life
        failures = state.consecutive_failures  # before heal_started resets the count
        if retrying:
            self.log.warning("monitor.quarantine_retry", note="the quarantine ran out: one more try")
        # Plugins log through structlog too (kill_process.signal_sent): their events carry the monitor.
        structlog.contextvars.bind_contextvars(monitor=self.name)
        undo = self.policy.before_heal(state)
        # Looked at before the heal acts: a restart may clear what the service left behind.
        evidence = await self._evidence()
        # The incident and its snapshot come first: once the heal acts, the evidence is gone.
        await self._detect(reason, evidence=evidence, failures=failures, before_heal=True)
        rung = min(step, len(self.ladder) - 1)
        if daemon.incidents is not None and len(self.ladder) > 1:
            learned, source = daemon.incidents.learned_step(self.name)
            if learned > rung:
                # The last time this failure pattern happened, only a later step of the ladder ended it:
                # start there instead of repeating what did not work.
                rung = min(learned, len(self.ladder) - 1)
                state.heals_in_streak = max(state.heals_in_streak, rung)
                self.log.warning("heal.adapted", step=rung + 1, learned_from_incident=source)
                await self.note("note", f"starting at step {rung + 1}: incident {source} of this pattern needed it")
        heal = self.ladder[rung]
        self.lifecycle.heal_started(state, life, heal.action, rung, daemon.now())
        heal_id: int | None = None
        try:
            heal_id = await asyncio.wait_for(
                daemon.db(daemon.store.begin_heal, state.to_stored(), action=heal.action, reason=reason),
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
            context = HealContext(clock=daemon.clock, monitor=self.name, reason=reason)
            outcome = await run_heal(heal, context, timeout=timeout)
        finally:
            if outcome is None:  # cancelled by shutdown while acting
                outcome = HealOutcome(ok=False, summary="interrupted: Horus was stopped during the heal")
            finished = self.lifecycle.heal_finished(
                state,
                life,
                ok=outcome.ok,
                refused=outcome.refused,
                permanent=outcome.permanent,
                summary=outcome.summary,
                undo=undo,
                now=daemon.now(),
            )
            if heal_id is not None:
                # How the heal ended is committed to the heal log before anything reports it: a Horus
                # killed right after heal.finished re-derives the notification from it at its next start.
                ended = daemon.db_nowait(
                    daemon.store.finish_heal,
                    heal_id,
                    ok=outcome.ok,
                    summary=outcome.summary,
                    details={**outcome.details, "refused": True} if outcome.refused else dict(outcome.details),
                    finished_at=daemon.clock.wall(),
                )
                self._after_write(ended)  # which reports a failure
                with suppress(StoreError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ended)), BEGIN_HEAL_TIMEOUT_SECONDS)
            if outcome.ok:
                self.log.warning("heal.finished", action=heal.action, outcome="ok", summary=outcome.summary)
            elif outcome.refused:
                self.log.error("heal.refused", action=heal.action, summary=outcome.summary, permanent=outcome.permanent)
            else:
                self.log.error("heal.failed", action=heal.action, summary=outcome.summary, permanent=outcome.permanent)
            self._persist()
            if not outcome.refused and self.settings.verify is not None:
                await self._fresh_verify_check()
            # The heal's id in the event links it to the heal log (see the start-up).
            linked = {**evidence, "heal_id": heal_id} if heal_id is not None else evidence
            channels = self._notify_heal(heal.action, reason, outcome, linked)
            if heal_id is not None and not channels:
                # No event goes to the outbox (a repeat held back, or no channel wants it): settled.
                self._after_write(daemon.db_nowait(daemon.store.mark_announced, heal_id, "no event needed"))
            if channels:
                said = "healed" if outcome.ok else ("heal refused" if outcome.refused else "heal failed")
                await self.note("notified", f"{said}: queued for {', '.join(channels)}")
            if daemon.incidents is not None:
                await self._incident_step(daemon.incidents.heal_finished(self.settings, outcome, finished))

    async def resume_verification(self) -> None:
        """A heal an earlier Horus (or this monitor's config before a reload) was verifying: its verify check
        starts again, its window from now, so the recovery is still proved by output, not assumed."""
        if (
            self.settings.verify is not None
            and self.verify_check is None
            and self.lifecycle.has_verify_pending(self.life)
        ):
            await self._fresh_verify_check()

    async def _fresh_verify_check(self) -> None:
        """The verify check's window starts at the heal: output must grow *after* it."""
        assert self.settings.verify is not None
        if self.verify_check is not None:
            await self.verify_check.aclose()
        self.verify_check = build_check(self.settings.verify)
        await self.verify_check.open()

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
                f"Why: {reason}. Done: {outcome.summary}.{stuck} Recovery is confirmed only once the service "
                "shows it works.",
                **facts,
            )
        if outcome.refused:
            again = (
                f" Horus will not try again until the config is reloaded or `horus resume {self.name}`."
                if outcome.permanent
                else ""
            )
            return self.notifier.problem(
                EventKind.HEAL_REFUSED,
                self.name,
                f"{self.name}: heal refused ({action})",
                f"Why it was due: {reason}. Nothing was done: {outcome.summary}.{again}{stuck}",
                **facts,
            )
        return self.notifier.problem(
            EventKind.HEAL_FAILED,
            self.name,
            f"{self.name}: heal failed ({action})",
            f"Why: {reason}. Tried {action}: {outcome.summary}.{stuck}",
            **facts,
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


async def _in_order(work: list[Coroutine[Any, Any, None]]) -> None:
    for item in work:
        await item
