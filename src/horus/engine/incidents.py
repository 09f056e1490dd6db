"""Sentinel inside the daemon: every failure past its threshold (and so every heal) becomes an incident.

Lifecycle, per monitor (at most one incident that is not closed):

    detected  -> snapshot of the service taken before any heal acts -> probable root cause
    heal attempts (each step of the escalation ladder), each with its outcome
    recovering-> the monitor's lifecycle confirmed its recovery (``horus.engine.lifecycle`` decides, and
                 says whether a working heal is credited); a failure within ``reopen_within_seconds``
                 reopens the incident
    closed    -> after ``reopen_within_seconds`` of recovery, and only while the lifecycle calls the monitor
                 healthy: the post-mortem is written and indexed; a closed incident never absorbs new events

The tracker records; it decides nothing about the service's health.

The incident store is used from one thread of its own, so the event loop never waits on its disk; the
snapshot and the analysis run in a worker thread *before* the heal acts (a restart would erase what they
look at), bounded by a timeout so that no snapshot can hold a heal back for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from horus import humanize
from horus.clock import Clock
from horus.config.models import MonitorSettings, SentinelSettings
from horus.log import get_logger
from horus.sentinel.diagnosis import explain
from horus.sentinel.fingerprint import FINGERPRINT_VERSION, failure_kind, fingerprint, signature
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.postmortem import render_postmortem, write_postmortem
from horus.sentinel.snapshot import log_tail, take_snapshot
from horus.sentinel.store import SqliteIncidentStore

if TYPE_CHECKING:
    from horus.engine.lifecycle import Transition
    from horus.heals.base import HealOutcome

__all__ = ["Detection", "IncidentTracker"]

log = get_logger("horus.sentinel")
T = TypeVar("T")

# A snapshot (a CPU sample, an HTTP request, a py-spy dump) may hold a heal back at most this long.
SNAPSHOT_TIMEOUT_SECONDS = 15.0
# Snapshots of failures that no heal waits for share this many threads; a burst of them (200 monitors whose
# servers never answer, each snapshot waiting out its HTTP request) queues there, never in front of a heal.
WATCH_SNAPSHOT_THREADS = 4
# A snapshot a heal waits for gets a thread of its own, up to this many at once (then it queues as well).
HEAL_SNAPSHOT_THREADS = 64
# Closed incidents are pruned at most this often.
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class Detection:
    """A monitor that failed past its threshold, with what the engine knows at that moment."""

    settings: MonitorSettings
    reason: str
    failures: int
    failing_since: float | None
    last_healthy_at: float | None
    evidence: dict[str, Any]  # from Check.evidence: the SDK's crash record and its summary
    upstreams: dict[str, str]  # each declared dependency's state in words
    upstream_failing: str | None = None  # set when this failure is a symptom of that dependency's
    before_heal: bool = False  # a heal waits for this detection: its snapshot never queues behind others


@dataclass
class _Live:
    """What the engine keeps in memory about a monitor's incident that is not closed."""

    id: int
    detected_at: float
    failing_since: float | None
    hypotheses: list[Hypothesis] = field(default_factory=list)
    # When recovery was confirmed, on the monotonic clock (a wall clock step must not close or keep open an
    # incident): set while the incident is "recovering".
    recovered_at: float | None = None
    first_heal_finished_at: float | None = None
    attempt_id: int | None = None
    # The escalation step that ended the last incident of this pattern: the memory that changes the response.
    learned_step: int = 0
    learned_from: int | None = None


class IncidentTracker:
    """Turns a monitor's failures, heals and recoveries into incidents; all its methods are for the loop."""

    def __init__(
        self, state_dir: Path, settings: SentinelSettings, *, clock: Clock, config_path: Path | None = None
    ) -> None:
        self.state_dir = state_dir
        self.settings = settings
        self.clock = clock
        self.config_path = config_path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="horus-sentinel")
        self._watch_snapshots = ThreadPoolExecutor(
            max_workers=WATCH_SNAPSHOT_THREADS, thread_name_prefix="horus-snapshot"
        )
        self._heal_snapshots = threading.BoundedSemaphore(HEAL_SNAPSHOT_THREADS)
        self._store: SqliteIncidentStore | None = None
        self._live: dict[str, _Live] = {}
        # Incidents being opened right now (their snapshot is being taken), so that a symptom detected in
        # the meantime can still point at its upstream's incident.
        self._opening: dict[str, asyncio.Future[int]] = {}
        self._last_prune = float("-inf")  # monotonic

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self._store = SqliteIncidentStore.open(self.state_dir, max_snapshot_bytes=self.settings.snapshot_max_bytes)
        # Incidents left open by an earlier Horus carry on (their verification restarts from now).
        for incident in self._store.incidents(status="open", limit=10_000) + self._store.incidents(
            status="recovering", limit=10_000
        ):
            live = _Live(incident.id, incident.opened_at, None)
            if incident.status == "recovering":
                live.recovered_at = self.clock.monotonic()
            self._live[incident.monitor] = live

    async def stop(self) -> None:
        # Snapshots still running are abandoned (their threads end on their own timeouts); queued ones are not run.
        self._watch_snapshots.shutdown(wait=False, cancel_futures=True)
        await self._run(self._close_store)
        self._thread.shutdown(wait=True)

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self._thread.submit(fn, *args, **kwargs))

    @property
    def store(self) -> SqliteIncidentStore:
        assert self._store is not None
        return self._store

    def recovering(self, monitor: str) -> bool:
        live = self._live.get(monitor)
        return live is not None and live.recovered_at is not None

    def incident_of(self, monitor: str) -> int | None:
        live = self._live.get(monitor)
        return live.id if live is not None else None

    # -- detection ---------------------------------------------------------------------------------

    async def detected(self, detection: Detection) -> int:
        """The monitor has failed past its threshold: open its incident (with a snapshot and a probable
        root cause), or add to the one it has. Returns the incident's id."""
        now = self.clock.wall()
        name, reason, failures = detection.settings.name, detection.reason, detection.failures
        live = self._live.get(name)
        if live is not None:
            if live.recovered_at is not None:
                await self._run(self.store.reopen, live.id, at=now, reason=f"failed again: {reason}")
                live.recovered_at = None
                log.warning("incident.reopened", monitor=name, incident=live.id, reason=reason)
            else:
                await self._run(self.store.append, live.id, "observation_failed", reason, at=now, failures=failures)
            return live.id
        opening = asyncio.get_running_loop().create_future()
        self._opening[name] = opening
        try:
            incident_id = await self._open_incident(detection, now)
        except BaseException as exc:
            opening.set_exception(exc)
            opening.exception()  # retrieved: a symptom waiting on it gets the error, nobody else needs it
            raise
        else:
            opening.set_result(incident_id)
        finally:
            self._opening.pop(name, None)
        return incident_id

    async def _open_incident(self, detection: Detection, now: float) -> int:
        settings, reason, evidence = detection.settings, detection.reason, detection.evidence
        failing_since, last_healthy_at = detection.failing_since, detection.last_healthy_at
        name = settings.name
        snapshot = await self._snapshot(
            settings, evidence, before_heal=detection.before_heal, healthy_until=last_healthy_at
        )
        diagnosis = await explain(
            settings,
            snapshot,
            reason=reason,
            evidence=evidence,
            upstreams=detection.upstreams,
            failing_since=failing_since,
            last_healthy_at=last_healthy_at,
            config_path=self.config_path,
            change_window_seconds=self.settings.change_window_seconds,
            now=now,
        )
        hypotheses = diagnosis.hypotheses
        tail = log_tail(snapshot)
        kind = failure_kind(settings.check.type, reason)
        sig = signature(tail, evidence.get("crash_summary"))
        print_ = fingerprint(
            monitor=name,
            check_type=settings.check.type,
            failure_kind=kind,
            http_status=_http_status(snapshot),
            signature=sig,
        )
        upstream_id = await self._upstream_incident(detection.upstream_failing)
        incident_id = await self._run(
            self._record_detection,
            detection,
            now=now,
            snapshot=snapshot,
            hypotheses=hypotheses,
            fingerprint=print_,
            signature=sig,
            kind=kind,
            upstream_id=upstream_id,
        )
        live = _Live(incident_id, now, failing_since, hypotheses)
        live.learned_step, live.learned_from = await self._run(self._step_that_worked, print_, incident_id)
        self._live[name] = live
        top = hypotheses[0].title if hypotheses else "unknown"
        log.warning("incident.opened", monitor=name, incident=incident_id, fingerprint=print_, probable_cause=top)
        return incident_id

    async def _upstream_incident(self, upstream: str | None) -> int | None:
        if upstream is None:
            return None
        if upstream in self._opening:
            try:
                return await asyncio.shield(self._opening[upstream])
            except Exception:
                return None
        live = self._live.get(upstream)
        return live.id if live is not None else None

    def learned_step(self, monitor: str) -> tuple[int, int | None]:
        """The escalation step that recovered the last incident with this one's fingerprint, and that
        incident's id: (0, None) when nothing was learned."""
        live = self._live.get(monitor)
        return (live.learned_step, live.learned_from) if live is not None else (0, None)

    def _step_that_worked(self, fingerprint: str, current: int) -> tuple[int, int | None]:
        for incident in self.store.incidents(fingerprint=fingerprint, status="closed", limit=10):
            if incident.id == current or not incident.recovered:
                continue
            worked = [a.step for a in self.store.heal_attempts(incident.id) if a.ok]
            return (worked[-1], incident.id) if worked else (0, None)
        return 0, None

    async def _snapshot(
        self,
        settings: MonitorSettings,
        evidence: dict[str, Any],
        *,
        before_heal: bool = False,
        healthy_until: float | None = None,
    ) -> dict[str, Any]:
        take = functools.partial(
            take_snapshot,
            settings,
            crash_evidence=evidence or None,
            max_bytes=self.settings.snapshot_max_bytes,
            py_spy=self.settings.py_spy,
            log_lines=self.settings.log_lines,
            timeout=SNAPSHOT_TIMEOUT_SECONDS - 1,
            healthy_until=healthy_until,
        )
        # Never on the loop's default executor, which probes share: a burst of slow snapshots must not hold
        # up a check, nor a heal that waits for its own snapshot.
        if before_heal and self._heal_snapshots.acquire(blocking=False):
            running = _in_own_thread(take, done=self._heal_snapshots.release)
        else:
            running = asyncio.wrap_future(self._watch_snapshots.submit(take))
        try:
            return await asyncio.wait_for(running, SNAPSHOT_TIMEOUT_SECONDS)
        except TimeoutError:
            return {"error": f"the snapshot took longer than {humanize.seconds(SNAPSHOT_TIMEOUT_SECONDS)}"}

    def _record_detection(
        self,
        detection: Detection,
        *,
        now: float,
        snapshot: dict[str, Any],
        hypotheses: list[Hypothesis],
        fingerprint: str,
        signature: str,
        kind: str,
        upstream_id: int | None,
    ) -> int:
        settings, reason, failing_since = detection.settings, detection.reason, detection.failing_since
        upstream = detection.upstream_failing
        store = self.store
        incident = store.open_incident(
            settings.name,
            at=now,
            fingerprint=fingerprint,
            fingerprint_version=FINGERPRINT_VERSION,
            signature=signature,
            check_type=settings.check.type,
            failure_kind=kind,
            reason=reason,
            upstream_incident_id=upstream_id,
            message=f"{detection.failures} failed check(s) in a row"
            + (f" since {_utc(failing_since)}" if failing_since else "")
            + f": {reason}",
        )
        store.add_snapshot(incident.id, snapshot, at=now, message=_describe(snapshot))
        if hypotheses:
            top = hypotheses[0]
            store.set_root_cause(incident.id, top.title, top.evidence)
            if top.recommendation:
                store.set_recommendation(fingerprint, top.recommendation)
        if upstream is not None:
            store.append(
                incident.id,
                "suppressed_as_symptom",
                f"not healed: its dependency {upstream} is failing"
                + (f" (incident {upstream_id})" if upstream_id else ""),
                at=now,
                upstream=upstream,
            )
        return incident.id

    # -- heals ----------------------------------------------------------------------------------------

    async def heal_started(self, monitor: str, action: str, step: int) -> None:
        live = self._live.get(monitor)
        if live is None:
            return
        now = self.clock.wall()
        attempt = await self._run(self.store.add_heal_attempt, live.id, action=action, step=step, at=now)
        live.attempt_id = attempt.id

    async def heal_finished(self, settings: MonitorSettings, outcome: HealOutcome, transition: Transition) -> None:
        live = self._live.get(settings.name)
        if live is None:
            return
        now = self.clock.wall()
        if live.attempt_id is not None:
            summary = f"refused: {outcome.summary}" if outcome.refused else outcome.summary
            await self._run(self.store.finish_heal_attempt, live.attempt_id, ok=outcome.ok, summary=summary, at=now)
        if live.first_heal_finished_at is None and not outcome.refused:
            live.first_heal_finished_at = now

    async def note(self, monitor: str, kind: str, message: str) -> None:
        """An event for the monitor's incident timeline (quarantined, resumed, notified...)."""
        live = self._live.get(monitor)
        if live is not None:
            await self._run(self.store.append, live.id, kind, message, at=self.clock.wall())

    # -- what the lifecycle decided -------------------------------------------------------------------

    async def recovered(self, monitor: str, transition: Transition) -> None:
        """The lifecycle confirmed the recovery: the incident is recovering (it closes later, or reopens)."""
        live = self._live.get(monitor)
        if live is None or live.recovered_at is not None:
            return
        now = self.clock.wall()
        note = f"{transition.details['outcome']}: {transition.reason}"
        await self._run(self.store.mark_recovering, live.id, at=now, message=note)
        live.recovered_at = self.clock.monotonic()
        log.info("incident.recovery_confirmed", monitor=monitor, incident=live.id, note=note)

    async def not_recovered(self, monitor: str, transition: Transition) -> None:
        live = self._live.get(monitor)
        if live is None:
            return
        within = transition.details.get("within", "its limit")
        await self._run(
            self.store.append, live.id, "not_recovered", f"not recovered within {within}", at=self.clock.wall()
        )
        log.error("incident.not_recovered", monitor=monitor, incident=live.id)

    async def tick(self, may_close: Callable[[str], bool]) -> None:
        """Incidents to close and retention; called every second or so. An incident closes only after
        ``reopen_within_seconds`` of confirmed recovery and while ``may_close(monitor)`` (the lifecycle's
        word that the monitor is healthy now)."""
        now = self.clock.wall()
        for name, live in list(self._live.items()):
            if live.recovered_at is None:
                continue
            if self.clock.monotonic() - live.recovered_at < self.settings.reopen_within_seconds:
                continue
            if may_close(name):
                await self._close(name, live, recovered=True)
        if self.clock.monotonic() - self._last_prune >= PRUNE_EVERY_SECONDS:
            self._last_prune = self.clock.monotonic()
            await self._run(
                self.store.prune, now=now, keep_days=self.settings.keep_days, keep_max=self.settings.keep_max
            )

    async def _close(self, name: str, live: _Live, *, recovered: bool) -> None:
        del self._live[name]
        path = await self._run(self._write_postmortem, live, recovered)
        log.info("incident.closed", monitor=name, incident=live.id, postmortem=str(path))

    def _write_postmortem(self, live: _Live, recovered: bool) -> Path:
        store = self.store
        now = self.clock.wall()
        timeline = store.timeline(live.id)
        recovered_entries = [e for e in timeline if e.kind == "recovery_confirmed"]
        recovered_at = recovered_entries[-1].at if recovered_entries else None
        detect = live.detected_at - live.failing_since if live.failing_since else None
        heal = live.first_heal_finished_at - live.detected_at if live.first_heal_finished_at else None
        recover = recovered_at - live.detected_at if recovered_at is not None else None
        note = recovered_entries[-1].message if recovered_entries else "not recovered"
        # Closed first (with its timings), then rendered from what the store says, then indexed.
        store.close_incident(
            live.id,
            at=now,
            recovered=recovered,
            note=note,
            detect_seconds=detect,
            heal_seconds=heal,
            recover_seconds=recover,
        )
        incident = store.get(live.id)
        pattern = store.pattern(incident.fingerprint)
        # After a restart only the chosen cause and its evidence are stored, not its confidence: none is made up.
        hypotheses = live.hypotheses
        markdown = render_postmortem(
            incident,
            store.timeline(live.id),
            store.snapshots(live.id),
            store.heal_attempts(live.id),
            prior_matching=store.prior_matching(incident.fingerprint, before=incident.opened_at, exclude_id=live.id),
            recommendation=pattern.recommendation if pattern else None,
            hypotheses=hypotheses,
        )
        path = write_postmortem(self.state_dir, incident, markdown)
        store.index_postmortem(live.id, markdown, path=path)
        return path


def _in_own_thread(fn: Callable[[], T], *, done: Callable[[], None]) -> asyncio.Future[T]:
    """Run ``fn`` on a daemon thread of its own; its result (or exception) arrives on the loop's future. A
    daemon thread: one stuck on a dead mount must never keep Horus from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is gone: Horus stopped meanwhile
                loop.call_soon_threadsafe(settle, functools.partial(future.set_exception, exc))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, functools.partial(future.set_result, result))
        finally:
            done()

    threading.Thread(target=work, name="horus-snapshot-heal", daemon=True).start()
    return future


def _http_status(snapshot: dict[str, Any]) -> int | None:
    for entry in snapshot.get("http") or []:
        if isinstance(entry, dict) and isinstance(entry.get("status"), int):
            return int(entry["status"])
    return None


def _describe(snapshot: dict[str, Any]) -> str:
    from horus.sentinel.snapshot import describe_process_state

    try:
        return describe_process_state(snapshot)
    except Exception:
        return "snapshot taken"


def _utc(when: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(when))
