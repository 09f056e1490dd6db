"""End the process when its event loop stalls, after writing down where it was stuck.

A hung asyncio service looks alive to every process monitor: a crash would at least restart it. The
watchdog turns a hang into a crash with a record of why::

    async with LoopWatchdog(warn_after=5, kill_after=60, crash_dir="/var/lib/horus", heartbeat=hb):
        await run_bot()

Two kinds of stall, both seen from a watcher thread that does not need the loop:

* the loop is blocked (a synchronous call in a coroutine): a loop-side ticker stops updating its time;
* the loop runs but a heartbeat channel made no progress within ``kill_after`` (an ``await`` that never
  returns, the seven-hour hang): ``heartbeat.channel_ages()``.

At ``warn_after`` of a blocked loop the loop thread's stack is logged once (logger ``horus_sdk``). At
``kill_after`` the watcher writes ``horus-crash-<pid>.json`` (format in :mod:`horus_sdk.formats`), runs
``on_kill(record)`` for at most ``kill_grace`` seconds, sends SIGTERM to its own process, and SIGKILL
``kill_grace`` seconds later. Each step is contained and bounded: a full disk or a failing hook never keeps
the process alive.
"""

from __future__ import annotations

import asyncio
import faulthandler as _faulthandler
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from horus_sdk import operations
from horus_sdk._stacks import (
    Frame,
    Handover,
    RawFrame,
    innermost_user_frame,
    raw_stack,
    sample_thread,
    start_watcher,
    stop_ticker,
    user_frame_depth,
    with_source,
)
from horus_sdk.formats import FORMAT_CRASH, crash_record_path, crash_summary, write_json_atomic

__all__ = ["ChannelAges", "LoopWatchdog"]

logger = logging.getLogger("horus_sdk")

_WRITE_LIMIT = 5.0
"""Longest wait for the crash record (and its log line) before ending the process without it: a hung
filesystem must not keep a hung process alive."""
_LOG_LIMIT = 1.0
"""Longest wait for one log call from the watcher: the stuck loop thread may hold a handler's lock."""
_BACKSTOP_SLACK = 5.0
"""Added to the watcher's worst case, so that on a loaded machine the backstop never pre-empts it."""
_BACKSTOP_REARM = 1.0
"""Re-arming faulthandler starts a thread in C, so a healthy loop re-arms it at most once a second."""
_MIN_WAIT = 0.001
"""Shortest sleep of the watcher between checks, so that a clock read a hair early never spins it."""
_TASK_READ_ATTEMPTS = 5
_ASYNCIO_SLEEP_FILE = asyncio.tasks.__file__
_REPR_LIMIT = 200


@dataclass(slots=True)
class _Seen:
    """What the watcher already acted on, so that one stall is warned about and recorded once."""

    warned_tick: float = math.nan  # the last tick of the blocked stretch already warned about
    recorded_tick: float = math.nan
    stalled_channels: set[str] = field(default_factory=set)  # acted on, until they progress again


class ChannelAges(Protocol):
    """What ``heartbeat=`` needs: seconds since each channel progressed, callable from another thread.

    :class:`horus_sdk.Heartbeat` provides it; it must not block (the watcher calls it several times a
    second).
    """

    def channel_ages(self, now_monotonic: float) -> Mapping[str, float]: ...


class LoopWatchdog:
    """Ends the process when the event loop (or a heartbeat channel) stalls; ``async with`` it.

    ``warn_after``: seconds of a blocked loop before its stack is logged. ``kill_after``: seconds of a
    blocked loop, or of a ``heartbeat`` channel without progress, before the crash record is written to
    ``crash_dir`` and the process is ended. ``on_kill(record)``: a plain function run in a thread just
    before SIGTERM, for at most ``kill_grace`` seconds (the loop is stuck: it must not need it).
    ``kill_grace``: seconds between SIGTERM and SIGKILL. ``faulthandler=True`` (with ``kill``) also arms
    :func:`faulthandler.dump_traceback_later` as a backstop for when even the watcher thread cannot run
    (a C call holding the GIL); it replaces any such timer of the service's own. ``kill=False`` only writes
    the record (dry runs, tests). ``keep_records``: crash records kept in ``crash_dir`` (one per ended
    process); older ones are removed after each new record is written.

    ``stalls`` counts the stalls seen; ``last_record_path`` is the last crash record written.
    """

    def __init__(
        self,
        warn_after: float,
        kill_after: float,
        crash_dir: str | os.PathLike[str],
        *,
        heartbeat: ChannelAges | None = None,
        on_kill: Callable[[dict[str, Any]], object] | None = None,
        kill_grace: float = 5.0,
        faulthandler: bool = False,
        kill: bool = True,
        keep_records: int = 20,
    ) -> None:
        if not warn_after > 0:
            raise ValueError(f"warn_after must be > 0 seconds, got {warn_after!r}")
        if not kill_after >= warn_after:
            raise ValueError(f"kill_after must be >= warn_after ({warn_after!r} s), got {kill_after!r}")
        if not kill_grace >= 0:
            raise ValueError(f"kill_grace must be >= 0 seconds, got {kill_grace!r}")
        if keep_records < 1:
            raise ValueError(f"keep_records must be >= 1, got {keep_records!r}")
        self.warn_after = float(warn_after)
        self.kill_after = float(kill_after)
        self.crash_dir = Path(crash_dir)
        self.heartbeat = heartbeat
        self.on_kill = on_kill
        self.kill_grace = float(kill_grace)
        self.faulthandler = faulthandler
        self.kill = kill
        self.keep_records = keep_records
        self.stalls = 0
        """Stalls seen: each blocked loop that reached ``warn_after``, each channel that reached ``kill_after``."""
        self.last_record_path: Path | None = None
        """The crash record most recently written, or None."""
        # A quarter of warn_after, so a healthy loop is never taken for a blocked one; at most 0.25 s, so a
        # stall is timed to a quarter second while the ticker costs the loop a few wakes a second.
        self._interval = min(self.warn_after / 4, 0.25)
        self._last_tick = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        # The watcher sleeps until the loop would be warn_after late; a turn every half of that keeps its
        # own timer for the stall itself.
        self._handover = Handover(self.warn_after / 2)
        self._ending = False
        self._backstop_armed = False
        self._backstop_armed_at = -math.inf

    @property
    def backstop_seconds(self) -> float:
        """When faulthandler ends the process, counted from the last tick of the loop.

        Later than the watcher's own sequence could take (record, on_kill, SIGTERM grace), so the backstop
        only acts when the watcher could not.
        """
        return self.kill_after + _WRITE_LIMIT + 2 * self.kill_grace + _BACKSTOP_SLACK

    # -- context manager -------------------------------------------------------------------------------

    async def __aenter__(self) -> LoopWatchdog:
        if self._ticker is not None:
            raise RuntimeError("this LoopWatchdog is already running")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        self._handover = Handover(self.warn_after / 2)
        self._ending = False
        self._last_tick = time.monotonic()
        if not self.crash_dir.is_dir():
            # Said now rather than discovered at the crash; the process is still ended without a record.
            logger.warning("watchdog.crash_dir_missing crash_dir=%s", self.crash_dir)
        self._ticker = loop.create_task(self._tick(), name="horus-watchdog")
        if self.faulthandler and self.kill:
            self._arm_backstop(self._last_tick)
        # Without a thread to spare it runs unwatched: Horus still watches from outside.
        self._thread = start_watcher(self._watch, "horus-watchdog", failure_event="watchdog.not_started")
        if self._thread is not None:
            self._handover.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handover.stop()
        ticker, self._ticker = self._ticker, None
        thread, self._thread = self._thread, None
        self._cancel_backstop()
        await stop_ticker(ticker)
        # Once the process is being ended, the SIGKILL stays due: the service leaving the block is not a
        # reason to let a stuck process live past its grace.
        if thread is not None and not self._ending:
            thread.join(timeout=1.0)

    # -- loop side -------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            now = time.monotonic()
            if self._backstop_armed and now - self._backstop_armed_at >= _BACKSTOP_REARM:
                self._arm_backstop(now)
            self._handover.offer(now)
            # Taken last, so that the next tick is due exactly one interval after it.
            self._last_tick = time.monotonic()
            await asyncio.sleep(self._interval)

    def _arm_backstop(self, now: float) -> None:
        try:
            # Re-arming replaces the previous timer: it fires only if the loop stops ticking this long.
            _faulthandler.dump_traceback_later(self.backstop_seconds, exit=True)
        except Exception as exc:  # e.g. sys.stderr is None: no backstop, the watcher still works
            self._backstop_armed = False
            logger.warning("watchdog.backstop_failed error=%r", exc)
            return
        self._backstop_armed = True
        self._backstop_armed_at = now

    def _cancel_backstop(self) -> None:
        if self._backstop_armed:
            self._backstop_armed = False
            try:
                _faulthandler.cancel_dump_traceback_later()
            except Exception as exc:
                logger.warning("watchdog.backstop_cancel_failed error=%r", exc)

    # -- watcher thread --------------------------------------------------------------------------------

    def _watch(self) -> None:
        seen = _Seen()
        last_failure = ""
        wait = self._interval
        while True:
            self._handover.wait(wait)
            if self._handover.stopped:
                return
            try:
                wait = max(_MIN_WAIT, self._check(seen))
            except Exception as exc:  # a bug here must not kill the watcher: the next check may work
                wait = self._interval
                if repr(exc) != last_failure:  # said once, not four times a second
                    last_failure = repr(exc)
                    self._log(logging.ERROR, "watchdog.check_failed error=%s", last_failure)
            if self._ending:
                return

    def _check(self, seen: _Seen) -> float:
        """Act on what is due now; return the seconds until something can next be due.

        The watcher sleeps until then rather than polling, and while the loop is healthy it is woken by
        the ticker's turns instead (see :class:`~horus_sdk._stacks.Handover`): a wake-up of its own costs
        a busy loop far more than the check itself.
        """
        now = time.monotonic()
        last_tick = self._last_tick
        # How late the ticker's next tick is: the loop has been blocked at least this long. Not counted from
        # the last tick, or a block that began just before the next one would be called a stall too soon.
        blocked = now - last_tick - self._interval
        if blocked >= self.warn_after:
            if last_tick != seen.warned_tick:
                seen.warned_tick = last_tick
                self.stalls += 1
                self._warn_blocked(blocked)
            if blocked < self.kill_after:
                return self.kill_after - blocked
            if last_tick != seen.recorded_tick:
                seen.recorded_tick = last_tick
                self._act(f"event loop blocked for {_seconds(blocked)} s", "loop_blocked", blocked, None)
            # Recorded (a dry run lives on): look again soon, for the loop to tick and maybe block anew.
            return self._interval
        # If the loop blocks right after its last tick, this is when it becomes a stall.
        due = self.warn_after - blocked
        if self.heartbeat is None:
            return due
        # The loop runs: now a channel that stands still means an await that never returns.
        ages = self.heartbeat.channel_ages(now)
        stalled = {name: age for name, age in ages.items() if age >= self.kill_after}
        seen.stalled_channels &= stalled.keys()
        fresh = {name: age for name, age in stalled.items() if name not in seen.stalled_channels}
        if fresh:
            name, age = max(fresh.items(), key=lambda item: item[1])
            seen.stalled_channels.update(fresh)
            self.stalls += 1
            self._act(f"channel {name!r} made no progress for {_seconds(age)} s", "channel_stalled", age, name)
        for name, age in ages.items():
            # A channel acted on is due again only after it progresses, which is not announced: poll it.
            due = min(due, self._interval if name in seen.stalled_channels else self.kill_after - age)
        return due

    def _warn_blocked(self, blocked: float) -> None:
        stack = sample_thread(self._loop_thread_id) if self._loop_thread_id is not None else ()
        frame = innermost_user_frame(stack)
        where = f"{frame.file}:{frame.line} function={frame.function} code={frame.code!r}" if frame else "unknown"
        self._log(logging.WARNING, "watchdog.loop_blocked seconds=%.1f at=%s", blocked, where)

    def _act(self, reason: str, kind: str, stalled_seconds: float, channel: str | None) -> None:
        try:
            record = self._record(reason, kind, stalled_seconds, channel)
        except Exception as exc:  # a bug in the record must cost the details, not the ending
            record = {"format": FORMAT_CRASH, "pid": os.getpid(), "wall_time": time.time(), "reason": reason}
            record["errors"] = [f"record: {exc!r}"]
        if not self.kill:
            self._save(record)
            return
        self._ending = True
        try:
            _run_bounded(self._save, record, limit=_WRITE_LIMIT, name="horus-watchdog-record")
            on_kill = self.on_kill
            finished = on_kill is None or _run_bounded(
                on_kill, record, limit=self.kill_grace, name="horus-watchdog-on-kill"
            )
            if not finished:
                self._log(logging.ERROR, "watchdog.on_kill_timeout seconds=%s", self.kill_grace)
        finally:
            self._end_process()

    def _save(self, record: dict[str, Any]) -> None:
        path = crash_record_path(self.crash_dir, record["pid"])
        try:
            write_json_atomic(path, record, fsync=True)
        except Exception as exc:
            logger.error("watchdog.record_failed path=%s error=%r reason=%s", path, exc, crash_summary(record))
            return
        self.last_record_path = path
        level, action = (logging.ERROR, "ending") if self.kill else (logging.WARNING, "dry_run")
        logger.log(level, "watchdog.stalled action=%s record=%s reason=%s", action, path, crash_summary(record))
        self._prune_records(keep=path)

    def _prune_records(self, keep: Path) -> None:
        """Remove all but the newest ``keep_records`` crash records: a service that is ended again and again
        (one record per pid) must not fill its disk. Best effort, after the new record is safe on disk."""
        try:
            records = []
            for entry in os.scandir(self.crash_dir):
                if entry.name.startswith("horus-crash-") and entry.name.endswith(".json") and entry.path != str(keep):
                    records.append((entry.stat().st_mtime, entry.path))
            records.sort(reverse=True)
            for _mtime, old in records[self.keep_records - 1 :]:
                os.unlink(old)
        except OSError as exc:
            logger.warning("watchdog.prune_failed dir=%s error=%r", self.crash_dir, exc)

    def _end_process(self) -> None:
        pid = os.getpid()
        try:
            os.kill(pid, signal.SIGTERM)
        except Exception as exc:
            self._log(logging.ERROR, "watchdog.sigterm_failed error=%r", exc)
        # The service's SIGTERM handler gets the grace to shut down; when it cannot (its loop is stuck, or
        # it ignores SIGTERM), SIGKILL cannot be refused.
        time.sleep(self.kill_grace)
        try:
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        except Exception as exc:
            self._log(logging.ERROR, "watchdog.sigkill_failed error=%r", exc)

    def _log(self, level: int, message: str, *args: object) -> None:
        _run_bounded(lambda _: logger.log(level, message, *args), None, limit=_LOG_LIMIT, name="horus-watchdog-log")

    # -- the crash record ------------------------------------------------------------------------------

    def _record(self, reason: str, kind: str, stalled_seconds: float, channel: str | None) -> dict[str, Any]:
        errors: list[str] = []
        threads: list[dict[str, Any]] = []
        loop_stack: tuple[Frame, ...] = ()
        try:
            threads, loop_stack = self._threads()
        except Exception as exc:
            errors.append(f"threads: {exc!r}")
        tasks: list[tuple[str, str, tuple[Frame, ...], str | None]] = []
        try:
            tasks = self._tasks()
        except Exception as exc:
            errors.append(f"tasks: {exc!r}")
        stuck: Frame | None
        if kind == "loop_blocked":
            stuck = innermost_user_frame(loop_stack)
        else:
            stuck = _stuck_task_frame([chain for _name, _state, chain, _awaiting in tasks])
        now = time.monotonic()
        record: dict[str, Any] = {
            "format": FORMAT_CRASH,
            "pid": os.getpid(),
            "wall_time": time.time(),
            "reason": reason,
            "kind": kind,
            "stalled_seconds": round(stalled_seconds, 3),
            "stuck": stuck.as_dict() if stuck is not None else None,
            "threads": threads,
            "tasks": [
                {"name": name, "state": state, "await_chain": [f.as_dict() for f in chain], "awaiting": awaiting}
                for name, state, chain, awaiting in tasks
            ],
            "operations": [],
        }
        if channel is not None:
            record["channel"] = channel
        try:
            record["operations"] = [
                {"name": op.name, "age_seconds": round(op.age(now), 3)} for op in operations.in_flight()
            ]
        except Exception as exc:
            errors.append(f"operations: {exc!r}")
        if errors:
            record["errors"] = errors
        return record

    def _threads(self) -> tuple[list[dict[str, Any]], tuple[Frame, ...]]:
        by_id = {thread.ident: thread for thread in threading.enumerate()}
        frames = sys._current_frames()
        raw = [(thread_id, raw_stack(frame)) for thread_id, frame in frames.items()]
        del frames  # read everything first, look up source lines after: the threads keep running
        threads: list[dict[str, Any]] = []
        loop_stack: tuple[Frame, ...] = ()
        for thread_id, raw_frames in raw:
            thread = by_id.get(thread_id)
            stack = with_source(raw_frames)
            entry: dict[str, Any] = {
                "name": thread.name if thread is not None else f"thread-{thread_id}",
                "id": thread_id,
                "stack": [frame.as_dict() for frame in stack],
            }
            if thread_id == self._loop_thread_id:
                entry["event_loop"] = True
                loop_stack = stack
            threads.append(entry)
        return threads, loop_stack

    def _tasks(self) -> list[tuple[str, str, tuple[Frame, ...], str | None]]:
        loop = self._loop
        if loop is None:
            return []
        # all_tasks() copies a WeakSet the loop thread may be changing right now; it retries, and so do we,
        # then the record goes without tasks rather than without being written.
        for attempt in range(_TASK_READ_ATTEMPTS):
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                if attempt == _TASK_READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.001)
        own = self._ticker
        snapshots: list[tuple[str, str, list[RawFrame], str | None]] = []
        for task in tasks:
            if task is own:
                continue
            raw, innermost = _await_chain(task.get_coro())
            # The future the task is parked on says more than the iterator its coroutine awaits
            # (``<Task pending name='fills' …>`` rather than ``<_asyncio.FutureIter …>``).
            waiter = getattr(task, "_fut_waiter", None)
            awaited = waiter if waiter is not None else innermost
            awaiting = _short_repr(awaited) if awaited is not None else None
            snapshots.append((task.get_name(), _task_state(task), raw, awaiting))
        snapshots.sort(key=lambda snapshot: snapshot[0])
        return [(name, state, with_source(raw), awaiting) for name, state, raw, awaiting in snapshots]


def _await_chain(coro: object) -> tuple[list[RawFrame], object | None]:
    """Frames of a task's await chain, outermost first, and the awaitable without a frame it ends on.

    Follows ``cr_await`` (coroutines), ``gi_yieldfrom`` (generator-based awaitables) and ``ag_await``, and
    stops at the first awaitable that has no frame (a Future's iterator, a custom awaitable).
    """
    raw: list[RawFrame] = []
    awaitable: Any = coro
    for _ in range(256):
        frame = _first_attr(awaitable, "cr_frame", "gi_frame", "ag_frame")
        if frame is None:
            if any(hasattr(awaitable, attr) for attr in ("cr_code", "gi_code", "ag_code")):
                return raw, None  # a coroutine that finished (or has not started) while we looked
            return raw, awaitable
        raw.append((frame.f_code.co_filename, frame.f_lineno or 0, frame.f_code.co_name))
        inner = _first_attr(awaitable, "cr_await", "gi_yieldfrom", "ag_await")
        if inner is None:
            return raw, None
        awaitable = inner
    return raw, None


def _first_attr(obj: object, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _short_repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 1] + "…"


def _task_state(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "cancelled"
    if task.done():
        return "done"
    return "cancelling" if task.cancelling() else "pending"


def _stuck_task_frame(chains: list[tuple[Frame, ...]]) -> Frame | None:
    """The frame to blame among tasks' await chains: the task whose chain reaches deepest into the
    service's own code, and its innermost such frame (``place_maker_order``, not ``Event.wait``).

    A task parked in ``asyncio.sleep`` (a scanner, a polling loop) wakes up by itself, so it cannot be the
    await that never returns: it is blamed only when no other task has frames of the service's code.
    """
    best: tuple[bool, int, int] | None = None
    stuck: Frame | None = None
    for chain in chains:
        rank, index = user_frame_depth(chain)
        if index < 0:
            continue
        sleeping = chain[-1].function == "sleep" and chain[-1].file == _ASYNCIO_SLEEP_FILE
        key = (sleeping, rank, -index)
        if best is None or key < best:
            best, stuck = key, chain[index]
    return stuck


def _run_bounded(func: Callable[[Any], object], arg: Any, *, limit: float, name: str) -> bool:
    """Run ``func(arg)`` in a daemon thread and wait at most ``limit`` seconds; True when it finished.

    A thread cannot be stopped, but it can be stopped waiting for: whatever hangs is left behind, and the
    process ends anyway.
    """
    finished = threading.Event()

    def run() -> None:
        try:
            func(arg)
        except Exception as exc:
            logger.error("watchdog.hook_failed step=%s error=%r", name, exc)
        finally:
            finished.set()

    try:
        threading.Thread(target=run, name=name, daemon=True).start()
    except RuntimeError:
        run()  # no thread to spare: run it here, unbounded, rather than skip it
        return True
    return finished.wait(limit)


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"
