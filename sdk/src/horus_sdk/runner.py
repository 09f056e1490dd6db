"""horus-runner: the service's main process; it starts its instances and hands trading from one to the next.

    python -m horus_sdk.runner --name bot --state-dir ~/.horus/runners/bot --source ~/bot -- python bot.py

The state dir's files are described in :mod:`horus_sdk.runner_files`; the protocol spoken with each
instance over its private channel is the one ``Control`` implements. The runner's states::

    starting ──trading──▶ running ──reload──▶ reloading ──done/failed/rolled back──▶ running
        │                   │  ▲                                    (a failure keeps the old one trading)
        │                 crash│ trading again
        ▼                   ▼  │
      backoff ◀─────────── backoff ──more than --max-restarts in --restart-window──▶ gave_up
                                                   (waits for a new version or a restart request)
    any ──SIGTERM/SIGINT──▶ stopping ──▶ stopped

Standard library only: it runs with the service's own interpreter.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import math
import os
import queue
import shlex
import signal
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from horus_sdk._runner_instance import EOF_EVENT, Instance, ServiceLog, start_instance
from horus_sdk._runner_versions import (
    SourceError,
    left_out_of_versions,
    preflight,
    prune_versions,
    python_env,
    snapshot,
    source_signature,
)
from horus_sdk.formats import write_json_atomic
from horus_sdk.runner_files import (
    FORMAT_RESULT,
    FORMAT_RUNNER,
    MAX_REASON_CHARS,
    RunnerPaths,
    describe_reload,
    process_start_token,
    read_request,
    read_runner_state,
)

__all__ = ["main"]

MAX_BACKOFF = 60.0
BACKOFF_RESET_AFTER = 60.0
STANDBY_TERM_GRACE = 5.0
KEEP_RELOADS = 20
KEEP_RESULTS = 50
TICK = 0.05
_NO_CONTROL_HINT = (
    " (it never spoke to the runner at all: an instance speaks through horus_sdk's Control, which says ready"
    " at `await control.ready()` or its first `control.cycle()`)"
)


@dataclass(frozen=True)
class Options:
    name: str
    state_dir: Path
    source: Path
    command: list[str]
    watch: bool = True
    watch_interval: float = 1.0
    debounce: float = 2.0
    check_command: str | None = None
    ready_timeout: float = 60.0
    handover_timeout: float = 10.0
    probation: float = 60.0
    stop_timeout: float = 10.0
    max_restarts: int = 5
    restart_window: float = 300.0
    keep_versions: int = 5
    log_max_bytes: int = 10 * 1024 * 1024
    log_keep: int = 3


class _Stopping(Exception):
    """SIGTERM or SIGINT arrived while the runner waited on an instance."""


class _ReloadFailed(Exception):
    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


@dataclass
class _Probation:
    entry: dict[str, Any]
    until: float  # monotonic
    previous_version: str


class Runner:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.paths = RunnerPaths.of(options.state_dir)
        self.log = ServiceLog(self.paths.logs / "service.log", max_bytes=options.log_max_bytes, keep=options.log_keep)
        self.started_at = time.time()
        self.state = "starting"
        self.state_reason = "starting the service"
        self.active: Instance | None = None
        self.standby: Instance | None = None
        self.current_version: str | None = None
        self.previous_version: str | None = None
        self.restarts = 0
        self.last_exit: dict[str, Any] | None = None
        self.reloads: list[dict[str, Any]] = []
        self.crash_times: collections.deque[float] = collections.deque()
        self.consecutive_crashes = 0
        self.backoff_until: float | None = None
        self.probation: _Probation | None = None
        self.failed_versions: dict[str, Any] = {}
        self.stop_requested = False
        self.reload_signals = 0
        self.seen_signature: Any = None
        self.seen_since = 0.0
        self.handled_signature: Any = None
        self.next_watch = 0.0
        self.watch_error: str | None = None
        self.unremovable_requests: set[str] = set()
        self.next_requests = 0.0
        self.last_state: dict[str, Any] | None = None  # what runner.json holds, but its updated_at
        self.state_write_error: str | None = None

    # --- telling -------------------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"horus-runner {self.o.name}: {message}", file=sys.stderr, flush=True)

    def write_state(self) -> None:
        data = {
            "format": FORMAT_RUNNER,
            "name": self.o.name,
            "pid": os.getpid(),
            "process_start": process_start_token(os.getpid()),
            "started_at": self.started_at,
            "state": self.state,
            "state_reason": self.state_reason[:MAX_REASON_CHARS],
            "active": self.active.record() if self.active else None,
            "standby": self.standby.record() if self.standby else None,
            "version": self.current_version,
            "previous_version": self.previous_version,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "reloads": self.reloads[-KEEP_RELOADS:],
        }
        if data == self.last_state:
            return
        unchanged = dict(data)
        data["updated_at"] = time.time()
        try:
            write_json_atomic(self.paths.state, data)
        except OSError as exc:
            # Tried again at every step (a full disk frees up), said once: until then runner.json is stale.
            error = f"could not write {self.paths.state}: {exc.strerror or exc}"
            if error != self.state_write_error:
                self.state_write_error = error
                self.say(f"{error}; Horus reads an old account of this runner until it can")
            return
        self.last_state = unchanged
        if self.state_write_error is not None:
            self.state_write_error = None
            self.say(f"{self.paths.state} is written again")

    def set_state(self, state: str, reason: str) -> None:
        self.state, self.state_reason = state, reason
        self.write_state()

    def write_result(self, request_id: str, op: str, outcome: str, reason: str, **extra: Any) -> None:
        data = {
            "format": FORMAT_RESULT,
            "id": request_id,
            "op": op,
            "outcome": outcome,
            "reason": reason[:MAX_REASON_CHARS],
            "finished_at": time.time(),
            **extra,
        }
        try:
            self.paths.results.mkdir(mode=0o700, exist_ok=True)
            write_json_atomic(self.paths.result(request_id), data)
        except (OSError, ValueError) as exc:
            self.say(f"could not write the result of request {request_id}: {exc}")
            return
        with contextlib.suppress(OSError):
            results = sorted(self.paths.results.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            for stale in results[KEEP_RESULTS:]:
                stale.unlink()

    # --- waiting on instances -----------------------------------------------------------------------------

    def note(self, instance: Instance, event: dict[str, Any]) -> None:
        """What an event tells about its instance, whoever waits for it."""
        name = event.get("event")
        epoch = event.get("epoch")
        if name == "hello":
            instance.said_hello = True
        if name in ("promoted", "trading", "resumed", "released") and isinstance(epoch, int):
            instance.epoch = epoch
        if name in ("trading", "resumed"):
            instance.trading_since = time.time()
            instance.trading_monotonic = time.monotonic()
        elif name == "released":
            instance.trading_since = None
        elif name == "tripped":
            cause = event.get("cause")
            instance.tripped = cause if isinstance(cause, dict) else {"cause": str(cause)[:200]}
            self.say(f"instance {instance.pid} (version {instance.version}) tripped: {str(cause)[:300]}")

    def wait_for(self, instance: Instance, names: set[str], timeout: float) -> tuple[str, float]:
        """Wait for one of ``names`` from ``instance``: ("event", receipt time), ("exit", when seen) or
        ("timeout", now). Other events are noted on the way."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stop_requested:
                raise _Stopping
            remaining = deadline - time.monotonic()
            try:
                received, event = instance.events.get(timeout=max(0.0, min(TICK, remaining)))
            except queue.Empty:
                if not instance.alive():
                    assert instance.exit_seen_monotonic is not None
                    return "exit", instance.exit_seen_monotonic
                if remaining <= 0:
                    return "timeout", time.monotonic()
                continue
            self.note(instance, event)
            if event.get("event") in names:
                self.write_state()
                return "event", received
            if event.get("event") == EOF_EVENT:
                # The channel is closed: the process is on its way out; wait for it to be reaped.
                instance.wait_exit(max(0.0, min(deadline - time.monotonic(), 5.0)))

    def stop_gracefully(self, instance: Instance, op: str = "stop") -> None:
        """Send ``op`` ("stop" or "exit"), wait --stop-timeout for the exit, then TERM, then KILL."""
        if instance.alive():
            instance.send(op)
            if not instance.wait_exit(self.o.stop_timeout):
                self.say(
                    f"instance {instance.pid} did not exit within {self.o.stop_timeout:g} s of {op!r}; terminating it"
                )
                instance.terminate(term_grace=STANDBY_TERM_GRACE)
        instance.close()

    def discard(self, instance: Instance) -> None:
        instance.terminate(term_grace=STANDBY_TERM_GRACE)
        instance.close()
        if self.standby is instance:
            self.standby = None

    # --- starting -----------------------------------------------------------------------------------------

    def snapshot_dir(self, version: str) -> Path:
        return self.paths.versions / version

    def launch(self, version: str) -> Instance:
        if self.stop_requested:
            # Asked to stop during a preflight or an orphan's wait: an instance started now would only be stopped.
            raise _Stopping
        instance = start_instance(
            self.o.command,
            version=version,
            snapshot=self.snapshot_dir(version),
            lease=self.paths.lease,
            handover_timeout=self.o.handover_timeout,
            extra_env={"HORUS_SOURCE_DIR": str(self.o.source)},
            log=self.log,
        )
        self.say(f"started instance {instance.pid} of version {version}")
        return instance

    def start_standby(self, version: str) -> Instance:
        """Stages 2 of a reload: start ``version`` and wait for "ready"; raises _ReloadFailed."""
        try:
            instance = self.launch(version)
        except OSError as exc:
            program = self.o.command[0]
            # It runs in the version's copy, which holds no dot-directory: a relative .venv/bin/python is not there.
            where = (
                " (a relative path is looked up in the version's copy of the source, which holds no dot-directories"
                " such as .venv: give an absolute path)"
                if "/" in program and not os.path.isabs(program)
                else ""
            )
            why = f"the command {program!r} could not start: {exc.strerror or exc}{where}"
            if not self.snapshot_dir(version).is_dir():  # the same error as a missing program, but not its fault
                why = f"the copy of version {version} it runs in ({self.snapshot_dir(version)}) is gone"
            raise _ReloadFailed("start", why) from exc
        self.standby = instance
        self.write_state()
        kind, _ = self.wait_for(instance, {"ready"}, self.o.ready_timeout)
        if kind == "exit":
            instance.close()
            self.standby = None
            raise _ReloadFailed("start", f"the new version {instance.describe_exit()} before it was ready")
        if kind == "timeout":
            self.discard(instance)
            # An instance that never even said hello has no horus_sdk Control: say so, it is the usual cause.
            hint = "" if instance.said_hello else _NO_CONTROL_HINT
            raise _ReloadFailed(
                "ready",
                f"the new version never reported ready within {self.o.ready_timeout:g} s; a timeout is never taken "
                f"as ready{hint}{instance.describe_tail()}",
            )
        return instance

    def promote(self, instance: Instance) -> tuple[str, float]:
        instance.send("promote")
        return self.wait_for(instance, {"trading"}, self.o.handover_timeout)

    def start_fresh(self, version: str) -> Instance:
        """Start ``version`` with no one else trading: ready, then promoted at once; raises _ReloadFailed.

        Its taking the lease is enough here, not its first trade: with no other instance to fall back on,
        one that reconciles for a long while (its exchange is down, say) is still the best there is, and
        killing it would only restart the same wait."""
        instance = self.start_standby(version)
        instance.send("promote")
        kind, _ = self.wait_for(instance, {"promoted", "trading"}, self.o.handover_timeout)
        if kind != "event":
            why = (
                instance.describe_exit()
                if kind == "exit"
                else f"did not take the trading lease within {self.o.handover_timeout:g} s of its promotion"
            )
            self.discard(instance)
            raise _ReloadFailed("handover", f"the new version {why}")
        self.standby = None
        return instance

    def become_active(self, instance: Instance) -> None:
        self.active = instance
        self.standby = None
        self.current_version = instance.version

    def start_current(self, why: str) -> None:
        """First start, crash restart or restart request: the current version, with no one trading."""
        assert self.current_version is not None
        self.set_state("starting", why)
        try:
            instance = self.start_fresh(self.current_version)
        except _ReloadFailed as failure:
            self.on_crash(None, f"version {self.current_version} failed to start: {failure.reason}")
            return
        self.become_active(instance)
        self.backoff_until = None
        self.set_state("running", f"version {instance.version} holds the trading lease (epoch {instance.epoch})")

    # --- crashes ------------------------------------------------------------------------------------------

    def on_crash(self, instance: Instance | None, reason: str) -> None:
        now = time.monotonic()
        if instance is not None:
            code = instance.proc.returncode
            self.last_exit = {
                "pid": instance.pid,
                "version": instance.version,
                "code": code if code is not None and code >= 0 else None,
                "signal": -code if code is not None and code < 0 else None,
                "at": time.time(),
                "output_tail": list(instance.tail)[-10:],
            }
            instance.close()
        self.active = None
        self.restarts += 1
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > self.o.restart_window:
            self.crash_times.popleft()
        if len(self.crash_times) > self.o.max_restarts:
            self.backoff_until = None
            self.set_state(
                "gave_up",
                f"{reason}; that is {len(self.crash_times)} crashes within {self.o.restart_window:g} s, more than "
                f"{self.o.max_restarts}: waiting for a new version or a restart request",
            )
            self.say(self.state_reason)
            return
        delay = min(MAX_BACKOFF, 2.0**self.consecutive_crashes)
        self.consecutive_crashes += 1
        self.backoff_until = now + delay
        self.set_state("backoff", f"{reason}; restarting in {delay:g} s")
        self.say(self.state_reason)

    # --- reloads ------------------------------------------------------------------------------------------

    def reload(self, trigger: str, requested_by: str, request_id: str | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": request_id or f"{int(time.time() * 1000):x}",
            "trigger": trigger,
            "requested_by": requested_by,
            "from_version": self.current_version,
            "to_version": None,
            "from_epoch": self.active.epoch if self.active else None,
            "to_epoch": None,
            "started_at": time.time(),
            "finished_at": None,
            "outcome": None,
            "stage": None,
            "reason": "",
            "gap_ms": None,
        }
        if request_id:
            entry["request_id"] = request_id
        try:
            return self.reload_entry(entry, trigger)
        except _Stopping:
            # Its instances are being stopped: the reload will not finish, and runner.json must not say it goes on.
            self.finish_reload(entry, "failed", "stop", "the runner was asked to stop before the reload finished")
            raise

    def reload_entry(self, entry: dict[str, Any], trigger: str) -> dict[str, Any]:
        try:
            signature = source_signature(self.o.source)
            version, snapshot_dir = snapshot(self.o.source, self.paths.versions)
        except SourceError as exc:
            return self.finish_reload(entry, "failed", "preflight", str(exc))
        # Whatever asked, this source is handled: the watcher must not reload it a second time.
        self.handled_signature = signature
        entry["to_version"] = version
        if version == self.current_version and self.active is not None:
            return self.finish_reload(entry, "unchanged", None, f"version {version} is already running")
        failed_with = self.failed_versions.get(version)
        if failed_with is not None and trigger == "watch":
            # The same contents that just failed (a change seen before the failure, or a revert to it): the
            # watcher never deploys them again by itself, or a crash on probation could become a loop.
            return self.finish_reload(
                entry,
                "failed",
                "preflight",
                f"version {version} failed before and the file watcher does not deploy it again: change the "
                "source, or ask for it with `horus reload`",
            )
        if failed_with is not None and failed_with == signature:
            return self.finish_reload(
                entry,
                "failed",
                "preflight",
                f"version {version} failed just now and is not retried until the source changes",
            )
        state_before, reason_before = self.state, self.state_reason
        self.reloads.append(entry)
        self.set_state("reloading", f"reloading to version {version} ({trigger})")
        failure = preflight(snapshot_dir, self.o.command, self.o.check_command, python_env())
        if failure:
            self.failed_versions[version] = signature
            return self.finish_reload(entry, "failed", "preflight", failure, state_before, reason_before)
        old = self.active
        try:
            if old is None:
                new = self.start_fresh(version)
                gap_ms = None
            else:
                new, gap_ms = self.handover(old, version)
        except _ReloadFailed as failure_:
            self.failed_versions[version] = signature
            return self.finish_reload(entry, "failed", failure_.stage, failure_.reason, state_before, reason_before)
        if old is not None and old.alive() is False and self.active is old:
            self.active = None
        self.previous_version = self.current_version if old is not None else self.previous_version
        self.become_active(new)
        self.consecutive_crashes = 0
        self.crash_times.clear()
        entry["to_epoch"] = new.epoch
        entry["gap_ms"] = gap_ms
        if old is not None and self.o.probation > 0 and self.previous_version:
            entry["probation_until"] = time.time() + self.o.probation
            self.probation = _Probation(entry, time.monotonic() + self.o.probation, self.previous_version)
        result = self.finish_reload(entry, "done", "probation" if self.probation else None, "")
        self.set_state("running", f"version {version} is trading (epoch {new.epoch})")
        prune_versions(self.paths.versions, keep=self.o.keep_versions, protected=self.protected_versions())
        return result

    def protected_versions(self) -> set[str]:
        return {v for v in (self.current_version, self.previous_version) if v}

    def finish_reload(
        self,
        entry: dict[str, Any],
        outcome: str,
        stage: str | None,
        reason: str,
        state_before: str | None = None,
        reason_before: str | None = None,
    ) -> dict[str, Any]:
        entry.update(outcome=outcome, stage=stage, reason=reason[:MAX_REASON_CHARS], finished_at=time.time())
        if entry not in self.reloads:
            self.reloads.append(entry)
        del self.reloads[:-KEEP_RELOADS]
        self.say(describe_reload(entry))
        if state_before is not None:
            if self.active is not None and self.active.alive():
                self.set_state("running", f"version {self.active.version} is trading (epoch {self.active.epoch})")
            else:
                self.set_state(state_before, reason_before or "")
        else:
            self.write_state()
        return entry

    def handover(self, old: Instance, version: str) -> tuple[Instance, float | None]:
        """Stages 2-5: standby, release by the old one, promotion, the old one's exit; raises _ReloadFailed
        with the old one trading again."""
        new = self.start_standby(version)
        old.send("handover")
        kind, released_at = self.wait_for(old, {"released"}, self.o.handover_timeout)
        if kind == "timeout":
            old.send("resume")
            self.discard(new)
            raise _ReloadFailed(
                "handover",
                f"the running version did not reach a cycle boundary within {self.o.handover_timeout:g} s",
            )
        kind, trading_at = self.promote(new)
        if kind != "event":
            why = (
                new.describe_exit()
                if kind == "exit"
                else f"did not start trading within {self.o.handover_timeout:g} s of its promotion"
            )
            # SIGKILL and reap, so its flock on the lease is gone before the old one takes it back.
            new.kill()
            new.close()
            self.standby = None
            if old.alive():
                old.send("resume")
                resumed, _ = self.wait_for(old, {"resumed"}, self.o.handover_timeout)
                after = (
                    "the running version resumed trading"
                    if resumed == "event"
                    else "the running version did not confirm it resumed"
                )
            else:
                after = "the running version had exited too"
            raise _ReloadFailed("handover", f"the new version {why}; {after}")
        self.active = new
        self.standby = None
        self.write_state()
        self.stop_gracefully(old, "exit")
        gap_ms = round((trading_at - released_at) * 1000.0, 1)
        return new, gap_ms

    def rollback(self, why: str) -> None:
        probation = self.probation
        assert probation is not None
        assert self.active is not None
        self.probation = None
        bad = self.active
        entry = probation.entry
        target = probation.previous_version
        self.failed_versions[bad.version] = self.handled_signature
        self.say(f"version {bad.version} failed its probation ({why}); rolling back to version {target}")
        self.set_state("reloading", f"rolling back to version {target}: {why}")
        try:
            if not self.snapshot_dir(target).is_dir():
                raise _ReloadFailed("probation", f"the snapshot of version {target} is gone")
            if bad.alive():
                new, _ = self.handover(bad, target)
            else:
                bad.close()
                self.active = None
                new = self.start_fresh(target)
        except _Stopping:
            self.rollback_failed(entry, f"{why}; the runner was asked to stop before the rollback finished")
            raise
        except _ReloadFailed as failure:
            self.rollback_failed(entry, f"{why}; {failure.reason}")
            if self.active is None or not self.active.alive():
                self.current_version = target
                self.on_crash(None, f"version {bad.version} failed its probation and version {target} did not start")
            else:
                self.set_state("running", f"version {bad.version} kept trading: the rollback failed")
            return
        self.become_active(new)
        self.previous_version = None
        entry.update(outcome="rolled_back", stage="probation", reason=why[:MAX_REASON_CHARS], finished_at=time.time())
        self.say(describe_reload(entry))
        self.rewrite_result(entry)
        self.set_state("running", f"version {target} is trading again (epoch {new.epoch}) after a rollback")

    def rollback_failed(self, entry: dict[str, Any], reason: str) -> None:
        """Not "done" any more: the new version failed its probation, and the version before it is not back."""
        entry.update(outcome="failed", stage="probation", reason=reason[:MAX_REASON_CHARS], finished_at=time.time())
        self.say(describe_reload(entry))
        self.write_state()
        self.rewrite_result(entry)

    def rewrite_result(self, entry: dict[str, Any]) -> None:
        request_id = entry.get("request_id")
        if request_id:
            self.write_result(request_id, "reload", entry["outcome"], describe_reload(entry), reload=entry)

    # --- requests and the watcher -------------------------------------------------------------------------

    def take_requests(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            pending = sorted(self.paths.requests.glob("*.json"))
            self.unremovable_requests.intersection_update(path.name for path in pending)
            for path in pending:
                if self.stop_requested:
                    return
                if path.name not in self.unremovable_requests:
                    self.take_request(path)

    def take_request(self, path: Path) -> None:
        try:
            request = read_request(path)
        except (OSError, ValueError) as exc:
            self.say(f"refused the request {path.name}: {exc}")
            try:
                path.unlink()
            except OSError:
                # A directory, say: refused once, not again at every look at requests/ while it stays.
                self.unremovable_requests.add(path.name)
            with contextlib.suppress(ValueError):
                self.write_result(path.stem, "unknown", "refused", f"the request was refused: {exc}")
            return
        with contextlib.suppress(OSError):
            path.unlink()
        request_id, op = request["id"], request["op"]
        by = str(request.get("requested_by") or "someone")[:200]
        self.say(f"{op} requested by {by} (request {request_id})")
        try:
            if op == "reload":
                entry = self.reload("request", by, request_id)
                self.write_result(request_id, op, entry["outcome"], describe_reload(entry), reload=entry)
            else:
                outcome, reason = self.restart(by)
                self.write_result(request_id, op, outcome, reason)
        except _Stopping:
            # The request file is gone already: without this answer `horus reload` would wait for one in vain.
            self.write_result(request_id, op, "failed", f"the runner was asked to stop before the {op} finished")
            raise

    def restart(self, by: str) -> tuple[str, str]:
        if self.current_version is None:
            return "failed", "there is no version to restart"
        self.probation = None
        if self.active is not None:
            self.set_state("stopping", f"restarting version {self.current_version} as {by} asked")
            self.stop_gracefully(self.active)
            self.active = None
        self.crash_times.clear()
        self.consecutive_crashes = 0
        self.start_current(f"restarting version {self.current_version} as {by} asked")
        if self.active is not None:
            epoch = self.active.epoch
            return "done", f"version {self.current_version} restarted and holds the trading lease (epoch {epoch})"
        return "failed", self.state_reason

    def watch(self) -> None:
        try:
            signature = source_signature(self.o.source)
        except SourceError as exc:
            if str(exc) != self.watch_error:  # said once, not at every poll, until it changes
                self.watch_error = str(exc)
                self.say(f"cannot watch the source: {exc}")
            return
        if self.watch_error is not None:
            self.watch_error = None
            self.say("the source can be watched again")
        now = time.monotonic()
        if signature != self.seen_signature:
            self.seen_signature, self.seen_since = signature, now
            return
        if signature != self.handled_signature and now - self.seen_since >= self.o.debounce:
            self.handled_signature = signature
            self.reload("watch", "the file watcher")

    # --- the main loop ------------------------------------------------------------------------------------

    def run(self) -> int:
        self.reap_orphans()
        try:
            self.handled_signature = source_signature(self.o.source)
            self.seen_signature = self.handled_signature
            self.current_version, _ = snapshot(self.o.source, self.paths.versions)
        except SourceError as exc:
            self.set_state("stopped", f"cannot read the source: {exc}")
            self.say(self.state_reason)
            return 1
        try:
            self.start_current(f"starting version {self.current_version}")
            while not self.stop_requested:
                self.step()
                time.sleep(TICK)
        except _Stopping:
            pass
        self.shutdown()
        return 0

    def step(self) -> None:
        now = time.monotonic()
        active = self.active
        if active is not None:
            while True:
                try:
                    _, event = active.events.get_nowait()
                except queue.Empty:
                    break
                self.note(active, event)
            self.write_state()
            if not active.alive() or active.tripped:
                if self.probation is not None:
                    why = active.describe_exit() if not active.alive() else f"tripped ({active.tripped})"
                    self.rollback(f"the new version {why}")
                    return
                if not active.alive():
                    self.on_crash(active, f"version {active.version} (pid {active.pid}) {active.describe_exit()}")
                    return
                active.tripped = None  # a trip outside probation is the kill switch's business, not a crash
            if self.probation is not None and now >= self.probation.until:
                self.say(f"version {active.version} passed its probation")
                self.probation = None
            if active.trading_monotonic and now - active.trading_monotonic >= BACKOFF_RESET_AFTER:
                self.consecutive_crashes = 0
        elif self.state == "backoff" and self.backoff_until is not None and now >= self.backoff_until:
            self.start_current(f"restarting version {self.current_version} after a crash")
            return
        if self.reload_signals:
            self.reload_signals = 0
            self.reload("signal", "SIGHUP")
            return
        if now >= self.next_requests:
            self.next_requests = now + 0.2
            self.take_requests()
        if self.o.watch and now >= self.next_watch:
            self.next_watch = now + self.o.watch_interval
            self.watch()

    def shutdown(self) -> None:
        self.stop_requested = True
        self.set_state("stopping", "the runner was asked to stop")
        instances = [i for i in (self.active, self.standby) if i is not None]
        for instance in instances:
            if instance.alive():
                instance.send("stop")
        deadline = time.monotonic() + self.o.stop_timeout
        for instance in instances:
            if not instance.wait_exit(deadline - time.monotonic()):
                instance.terminate(term_grace=STANDBY_TERM_GRACE)
            instance.close()
        self.active = self.standby = None
        self.set_state("stopped", "the runner was asked to stop and every instance exited")
        self.say("stopped")

    def reap_orphans(self) -> None:
        """Instances of a runner that was killed: they exit by themselves on channel EOF; make sure."""
        try:
            previous = read_runner_state(self.paths.root)
        except (OSError, ValueError):
            return
        orphans = []
        for role in ("active", "standby"):
            record = previous.get(role)
            if (
                isinstance(record, dict)
                and isinstance(record.get("pid"), int)
                and record.get("process_start")
                and _same_process(record["pid"], record["process_start"])
            ):
                orphans.append((record["pid"], record["process_start"]))
        if not orphans:
            return
        self.say(
            f"waiting for {len(orphans)} instance(s) left by the previous runner to exit: {[p for p, _ in orphans]}"
        )
        for signum, wait in ((None, self.o.stop_timeout), (signal.SIGTERM, STANDBY_TERM_GRACE), (signal.SIGKILL, 5.0)):
            for pid, token in orphans:
                if signum is not None and _same_process(pid, token):
                    self.say(f"sending {signal.Signals(signum).name} to instance {pid} left by the previous runner")
                    _signal_orphan(pid, signum)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(_same_process(p, t) for p, t in orphans):
                time.sleep(TICK)
            orphans = [(p, t) for p, t in orphans if _same_process(p, t)]
            if not orphans:
                return


def _signal_orphan(pid: int, signum: int) -> None:
    """Signal an instance of a previous runner as the runner signals its own: its whole process group while it
    still leads it (a wrapper such as ``sh -c`` or a start script passes nothing on to the bot it runs)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # The caller has just seen ``pid`` alive with its start token: while it lives, no one else has its id.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
            return
        os.kill(pid, signum)


def _same_process(pid: int, token: str) -> bool:
    """Whether ``pid`` is still the process that started at ``token`` and has not exited (a zombie has)."""
    if process_start_token(pid) != token:
        return False
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096)
        return raw[raw.rfind(b")") + 2 :].split()[:1] != [b"Z"]
    return True


# --- the command line ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        sys.stderr.write(f"horus-runner: {message}\n")
        raise SystemExit(2)


def _number(kind: type, *, zero_allowed: bool = False) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        # nan compares false with every bound, so a nan timeout would never expire: the runner would hang.
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < 0 and zero_allowed:
            raise argparse.ArgumentTypeError(f"cannot be negative, got {text}")
        if value <= 0 and not zero_allowed:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def _positive(kind: type) -> Any:
    return _number(kind)


def _not_negative(kind: type) -> Any:
    return _number(kind, zero_allowed=True)


def _command_line(text: str) -> str:
    """A command line split as the preflight splits it, checked now: at a reload it would be too late."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a command line ({exc})") from None
    if not words:
        raise argparse.ArgumentTypeError("is empty")
    return text


def parse_args(argv: list[str]) -> Options:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.stderr.write("horus-runner: give the service's command after --, for example: -- python bot.py\n")
        raise SystemExit(2)
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1 :]
    p = _Parser(prog="horus-runner", description="Run a service's instances and reload it without downtime.")
    p.add_argument("--name", required=True)
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--source", required=True, type=Path)
    p.add_argument("--no-watch", action="store_true")
    p.add_argument("--watch-interval", type=_positive(float), default=1.0)
    p.add_argument("--debounce", type=_not_negative(float), default=2.0)
    p.add_argument("--check-command", type=_command_line)
    p.add_argument("--ready-timeout", type=_positive(float), default=60.0)
    p.add_argument("--handover-timeout", type=_positive(float), default=10.0)
    p.add_argument("--probation", type=_not_negative(float), default=60.0)
    p.add_argument("--stop-timeout", type=_positive(float), default=10.0)
    p.add_argument("--max-restarts", type=_not_negative(int), default=5)
    p.add_argument("--restart-window", type=_positive(float), default=300.0)
    p.add_argument("--keep-versions", type=_positive(int), default=5)
    p.add_argument("--log-max-bytes", type=_positive(int), default=10 * 1024 * 1024)
    p.add_argument("--log-keep", type=_not_negative(int), default=3)
    a = p.parse_args(own)
    if not a.source.is_dir():
        p.error(f"the source {a.source} is not a directory")
    source, state_dir = a.source.expanduser().resolve(), a.state_dir.expanduser().resolve()
    inside = state_dir.is_relative_to(source) and not left_out_of_versions(state_dir.relative_to(source))
    if inside or source.is_relative_to(state_dir):
        # The runner's own writes (runner.json, logs, versions/) would be changes to the source: a reload every
        # --debounce seconds, each version holding copies of the ones before.
        p.error(f"the state dir {a.state_dir} and the source {a.source} overlap; keep the state dir outside the source")
    return Options(
        name=a.name,
        state_dir=a.state_dir.expanduser().absolute(),
        source=a.source.expanduser().resolve(),
        command=command,
        watch=not a.no_watch,
        watch_interval=a.watch_interval,
        debounce=a.debounce,
        check_command=a.check_command,
        ready_timeout=a.ready_timeout,
        handover_timeout=a.handover_timeout,
        probation=a.probation,
        stop_timeout=a.stop_timeout,
        max_restarts=a.max_restarts,
        restart_window=a.restart_window,
        keep_versions=a.keep_versions,
        log_max_bytes=a.log_max_bytes,
        log_keep=a.log_keep,
    )


def prepare_state_dir(path: Path) -> str | None:
    """Create the state dir and its directories 0o700; a sentence when that fails, or when it exists and
    another user may write it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        return f"cannot create the state dir {path}: {exc.strerror or exc}"
    if st.st_uid not in (os.getuid(), 0) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"the state dir {path} may be written by another user (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o}); make it yours with mode 700"
        )
    paths = RunnerPaths.of(path)
    for directory in (paths.logs, paths.requests, paths.results, paths.versions):
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except FileExistsError:
            return f"{directory} is not a directory; the runner keeps its {directory.name} there (move it away)"
        except OSError as exc:
            return f"cannot create {directory}: {exc.strerror or exc}"
    return None


def _hold_runner_lock(paths: RunnerPaths) -> int | None:
    """The state dir's runner lock, held until this process exits (its descriptor is never inherited by the
    instances); None when another runner holds it."""
    fd = os.open(paths.runner_lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _runner_pid(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = read_runner_state(state_dir).get("pid")
        return pid if isinstance(pid, int) else None
    return None


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    refusal = prepare_state_dir(options.state_dir)
    if refusal:
        sys.stderr.write(f"horus-runner {options.name}: {refusal}\n")
        return 2
    try:
        lock_fd = _hold_runner_lock(RunnerPaths.of(options.state_dir))
    except OSError as exc:
        sys.stderr.write(f"horus-runner {options.name}: cannot lock {options.state_dir}: {exc.strerror or exc}\n")
        return 2
    if lock_fd is None:
        # A second runner would take the first one's instances for orphans and end them, and its own would
        # wait for a lease that is held: one runner per state dir, whoever started the other.
        holder = _runner_pid(options.state_dir)
        sys.stderr.write(
            f"horus-runner {options.name}: another runner{f' (pid {holder})' if holder else ''} already runs "
            f"this service from {options.state_dir}; not starting a second one\n"
        )
        return 1
    runner = Runner(options)

    def on_stop(signum: int, _frame: Any) -> None:
        runner.stop_requested = True

    def on_hup(signum: int, _frame: Any) -> None:
        runner.reload_signals += 1

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    return runner.run()


if __name__ == "__main__":
    raise SystemExit(main())
