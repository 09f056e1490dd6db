"""When each monitor's check runs: one heap of due times for every monitor, not a sleeping task each.

Why one heap: with a task per monitor, every check pays for a task wake-up, a sleep timer and a timeout
timer in asyncio's own heap: about 100 µs of CPU in CPython, which at 10,000 monitors is most of a core.
Here a due check costs a pop from a heap of small tuples.

How checks run:
- *Inline* checks (a stat of a local file) run in batches on a filesystem thread. They are cheap, and
  however long a stat on a dead network mount blocks, the event loop never waits for it: that monitor
  gets a probe error at its timeout and the thread is left to finish on its own. No other monitor waits
  for it either: once a check has run for ``STUCK_AFTER_SECONDS`` the rest of its batch, and every batch
  after it, go to another filesystem thread; and a check whose last look is still stuck is not looked at
  again (its monitor gets a probe error at once), so one hung file holds one thread, not one per look.
- Every other check runs as its own task under its monitor's hard timeout, so a probe that hangs delays
  nothing but itself.
A monitor is never checked twice at once: it is put back on the heap only when its check (and any heal
that followed) is over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

from horus import humanize
from horus.checks.base import Check, CheckResult, ProbeContext
from horus.clock import Clock
from horus.engine.runner import CheckRun, run_check, run_inline
from horus.log import get_logger

__all__ = ["DaemonThreadExecutor", "FilesystemWorker", "Scheduled", "Scheduler"]

log = get_logger("horus.engine")

# Checks due within this window run together, and no check runs more than this early.
COALESCE_SECONDS = 0.002
# The scheduler wakes at most this often; checks that fall due in between run together at the next
# wake. Each wake costs about as much as a cheap check, so at thousands of checks a second this is
# most of the saving. It is also the most a check can be late because of the scheduler.
MIN_WAKE_SPACING_SECONDS = 0.02
# An inline check that has run this long is taken as stuck (a stat on a dead mount, a slow disk): what is
# queued behind it moves to another filesystem thread. A healthy stat takes microseconds, a cold one on a
# busy disk milliseconds; a needless extra thread costs little and ends when idle.
STUCK_AFTER_SECONDS = 0.25
# Each stuck check holds a thread until its system call returns; past this many threads, batches wait.
MAX_FS_THREADS = 32
# A filesystem thread beyond the first ends after this long without work.
IDLE_FS_THREAD_SECONDS = 30.0
# Threads for the event loop's asyncio.to_thread calls (the same bound as ThreadPoolExecutor's default).
MAX_EXECUTOR_THREADS = 32


class Scheduled(Protocol):
    """What the scheduler needs of a monitor (horus.engine.daemon.Monitor)."""

    name: str
    check: Check
    check_timeout: float
    retired: bool  # taken off the schedule (a config reload replaced or removed it)

    def complete(self, run: CheckRun) -> Coroutine[Any, Any, None] | None:
        """Fold a finished check in; return follow-up work (a heal) that must end before the next check."""

    def next_due(self, result: CheckResult, now: float) -> float: ...

    def crashed(self, now: float) -> float:
        """Log a bug in the monitor's own handling; return when to try it again."""


class _Batch:
    """Inline checks submitted together; any filesystem thread may take the next one to start."""

    __slots__ = ("checks", "ctx", "done", "next", "ready")

    def __init__(
        self, checks: list[Check], ctx: ProbeContext, done: Callable[[list[tuple[int, CheckRun]]], None]
    ) -> None:
        self.checks = checks
        self.ctx = ctx
        self.done = done  # called with (index, run) pairs, on a filesystem thread
        self.next = 0  # the index of the next check to start
        self.ready: list[tuple[int, CheckRun]] = []  # finished, not yet handed back


class FilesystemWorker:
    """Daemon threads that run batches of inline checks, so a hung stat never blocks the loop, nor any
    other monitor's check.

    Normally one thread runs every batch. When its current check has run for ``STUCK_AFTER_SECONDS``,
    :meth:`unstick` (the scheduler calls it) starts another thread for what is queued behind it: the rest
    of its batch, then the batches after. Daemon threads rather than an executor: executor threads are
    joined when Python exits, and a stat stuck on a dead mount must never keep Horus from stopping.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: deque[_Batch] = deque()  # batches with a check not yet started, oldest first
        self._busy_since: dict[int, float] = {}  # thread ident -> when its current check started
        self._running: dict[int, float] = {}  # id(check) -> when its look started, for checks running now
        self._threads = 0
        self._idle = 0
        self._stopped = False
        self._at_limit_said = False
        with self._lock:
            self._start_thread()

    @property
    def threads(self) -> int:
        return self._threads

    def submit(
        self, checks: list[Check], ctx: ProbeContext, done: Callable[[list[tuple[int, CheckRun]]], None]
    ) -> None:
        with self._lock:
            self._queue.append(_Batch(checks, ctx, done))
            if self._idle:
                self._work.notify()
            else:
                self._unstick_locked()

    def unstick(self) -> None:
        """Start another thread if work is queued and every thread is on a check that looks stuck."""
        with self._lock:
            self._unstick_locked()

    def stop(self) -> None:
        """Let idle threads end. A stuck one is a daemon thread: it never holds Horus's exit."""
        with self._lock:
            self._stopped = True
            self._work.notify_all()

    def _unstick_locked(self) -> None:
        if not self._queue or self._idle or self._stopped:
            return
        stuck_before = time.monotonic() - STUCK_AFTER_SECONDS
        stuck = sum(1 for since in self._busy_since.values() if since <= stuck_before)
        if self._threads - stuck > 0:
            return  # a thread is making progress (between checks, or on one that began just now)
        if self._threads >= MAX_FS_THREADS:
            if not self._at_limit_said:
                self._at_limit_said = True
                log.warning("filesystem.threads_exhausted", threads=self._threads, stuck=stuck)
            return
        self._start_thread()
        log.info("filesystem.thread_started", threads=self._threads, stuck=stuck)

    def _start_thread(self) -> None:
        self._threads += 1
        threading.Thread(target=self._serve, name=f"horus-fs-{self._threads}", daemon=True).start()

    def _serve(self) -> None:
        me = threading.get_ident()
        work = self._work
        with self._lock:
            while True:
                if not self._queue:
                    if self._stopped:
                        break
                    self._idle += 1
                    spare = self._threads > 1
                    woken = work.wait(IDLE_FS_THREAD_SECONDS if spare else None)
                    self._idle -= 1
                    if not woken and not self._queue and self._threads > 1:
                        break  # an extra thread nobody needed for a while
                    continue
                batch = self._queue[0]
                index = batch.next
                batch.next += 1
                if batch.next == len(batch.checks):
                    self._queue.popleft()
                check = batch.checks[index]
                key = id(check)
                since = self._running.get(key)
                if since is not None:
                    # Its last look is stuck on another thread: a second look would be stuck too (and two
                    # looks at once would share the check's own state).
                    waited = humanize.seconds(time.monotonic() - since)
                    run = CheckRun(
                        CheckResult.error(
                            f"still waiting for the previous look, started {waited} ago "
                            "(the filesystem is not answering)"
                        ),
                        0.0,
                    )
                else:
                    self._running[key] = self._busy_since[me] = time.monotonic()
                    self._lock.release()
                    try:
                        run = run_inline(check, batch.ctx)
                    finally:
                        self._lock.acquire()
                        del self._running[key], self._busy_since[me]
                batch.ready.append((index, run))
                if batch.next == len(batch.checks) or (self._queue and self._queue[0] is not batch):
                    # Nothing left of it to start here: hand back all that is done, this thread's and
                    # that of any thread that was stuck in it and came back.
                    ready, batch.ready = batch.ready, []
                    self._lock.release()
                    try:
                        batch.done(ready)
                    finally:
                        self._lock.acquire()
            self._threads -= 1


class DaemonThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor (``asyncio.to_thread``), on daemon threads.

    ThreadPoolExecutor joins its threads when Python exits, and ``asyncio.run`` waits for them too: one
    call stuck on a dead mount (a crash record, a sqlite database on NFS) would keep Horus running after
    SIGTERM. These threads are never joined; a stuck one ends with the process. It is a ThreadPoolExecutor
    in type only, because asyncio accepts nothing else as a default executor; none of its machinery runs.
    """

    def __init__(self, max_workers: int = MAX_EXECUTOR_THREADS) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="horus-thread")
        self._most = max_workers
        self._calls: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None
        ] = queue.SimpleQueue()
        self._spare = threading.Semaphore(0)
        self._guard = threading.Lock()
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._calls.put((future, fn, args, kwargs))
            if not self._spare.acquire(blocking=False) and self._started < self._most:
                self._started += 1
                threading.Thread(target=self._serve, name=f"horus-thread-{self._started}", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # Never waits: when Horus shuts down nobody awaits a call still running; it is stuck, and must not
        # hold the exit.
        with self._guard:
            self._closed = True
            for _ in range(self._started):
                self._calls.put(None)

    def _serve(self) -> None:
        while (job := self._calls.get()) is not None:
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del job, future, fn, args, kwargs
            self._spare.release()


class Scheduler:
    def __init__(self, *, clock: Clock, ctx: ProbeContext, on_check: Callable[[str, float | None], None]) -> None:
        self.clock = clock
        self.ctx = ctx
        self._on_check = on_check  # (status, lateness) for statistics
        self._heap: list[tuple[float, int, Scheduled]] = []
        self._order = itertools.count()
        # Each monitor's live heap entry (by its order number): check_soon() adds an earlier entry and the
        # old one is skipped when it comes up, so a monitor is never on the heap twice for real.
        self._entry: dict[str, tuple[float, int]] = {}
        self._first_run: set[str] = set()
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._fs = FilesystemWorker()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, monitor: Scheduled, delay: float) -> None:
        """Put a monitor on the schedule for the first time, ``delay`` seconds from now."""
        self._first_run.add(monitor.name)
        self._schedule(monitor, self.clock.monotonic() + delay)

    def check_soon(self, monitor: Scheduled) -> None:
        """Check ``monitor`` now rather than at its next turn (an upstream it depends on recovered). A monitor
        whose check is running already is left alone: it is put back on the heap when that check ends."""
        entry = self._entry.get(monitor.name)
        now = self.clock.monotonic()
        if entry is not None and entry[0] > now:
            self._schedule(monitor, now)

    def overdue_seconds(self, now: float) -> float:
        """How late the earliest due check is at monotonic ``now`` (0.0 when none is): a scheduler that keeps
        up stays near 0, one that is stuck or starved grows without bound."""
        return max(0.0, now - self._heap[0][0]) if self._heap else 0.0

    def _schedule(self, monitor: Scheduled, when: float) -> None:
        if monitor.retired:
            return
        order = next(self._order)
        self._entry[monitor.name] = (when, order)
        heapq.heappush(self._heap, (when, order, monitor))
        if when < self._wake_at and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        """Dispatch due checks until cancelled."""
        self._loop = loop = asyncio.get_running_loop()
        # Every asyncio.to_thread from here on (a probe's file read, a heal's evidence, the daemon's own
        # writes) runs on daemon threads, so none that is stuck can keep Horus from exiting.
        loop.set_default_executor(DaemonThreadExecutor())
        try:
            while True:
                now = self.clock.monotonic()
                inline: list[tuple[Scheduled, float | None]] = []
                while self._heap and self._heap[0][0] <= now + COALESCE_SECONDS:
                    when, order, monitor = heapq.heappop(self._heap)
                    live = self._entry.get(monitor.name)
                    if monitor.retired or live is None or live[1] != order:
                        continue  # taken off the schedule, or superseded by check_soon()
                    del self._entry[monitor.name]
                    lateness = None if monitor.name in self._first_run else max(0.0, now - when)
                    self._first_run.discard(monitor.name)
                    if monitor.check.inline:
                        inline.append((monitor, lateness))
                    else:
                        self._spawn(self._run_async(monitor, lateness))
                if inline:
                    self._run_batch(inline)
                self._wake = loop.create_future()
                self._wake_at = max(self._heap[0][0], now + MIN_WAKE_SPACING_SECONDS) if self._heap else float("inf")
                timer = None
                if self._heap:
                    timer = loop.call_later(max(0.0, self._wake_at - self.clock.monotonic()), _resolve, self._wake)
                try:
                    await self._wake
                finally:
                    if timer is not None:
                        timer.cancel()
        finally:
            self._fs.stop()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_async(self, monitor: Scheduled, lateness: float | None) -> None:
        # This task's own context: what the probe logs or starts (a command's record) names its monitor.
        structlog.contextvars.bind_contextvars(monitor=monitor.name)
        run = await run_check(monitor.check, self.ctx, timeout=monitor.check_timeout)
        after = self._complete(monitor, run, lateness)
        if after is not None:
            await after

    def _run_batch(self, batch: list[tuple[Scheduled, float | None]]) -> None:
        assert self._loop is not None
        loop = self._loop
        pending = {id(monitor): (monitor, lateness) for monitor, lateness in batch}
        started = self.clock.monotonic()
        timers: list[asyncio.TimerHandle] = []

        def arm() -> None:
            elapsed = self.clock.monotonic() - started
            soonest = min(monitor.check_timeout for monitor, _ in pending.values())
            timers.append(loop.call_later(max(0.0, soonest - elapsed), timed_out))

        def timed_out() -> None:
            # The filesystem thread is stuck (a dead mount?): answer for it, and ignore it when it returns.
            elapsed = self.clock.monotonic() - started
            for key, (monitor, lateness) in list(pending.items()):
                if elapsed >= monitor.check_timeout:
                    del pending[key]
                    limit = humanize.seconds(monitor.check_timeout)
                    error = CheckResult.error(f"probe did not finish within {limit} (the filesystem is not answering)")
                    self._finish(monitor, CheckRun(error, elapsed), lateness)
            if pending:
                arm()

        def finished(runs: list[tuple[int, CheckRun]]) -> None:
            for index, run in runs:
                monitor = batch[index][0]
                entry = pending.pop(id(monitor), None)
                if entry is not None:
                    self._finish(monitor, run, entry[1])
            if not pending:
                for timer in timers:
                    timer.cancel()

        def hand_back(runs: list[tuple[int, CheckRun]]) -> None:  # on a filesystem thread
            # The loop may be gone: Horus stopped while this batch was stuck. Nobody is waiting then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finished, runs)

        def watch() -> None:
            # Until the batch is answered, make sure no stuck check holds up the rest of it, or what follows.
            if pending:
                self._fs.unstick()
                timers.append(loop.call_later(STUCK_AFTER_SECONDS, watch))

        arm()
        timers.append(loop.call_later(STUCK_AFTER_SECONDS, watch))
        self._fs.submit([monitor.check for monitor, _ in batch], self.ctx, hand_back)

    def _finish(self, monitor: Scheduled, run: CheckRun, lateness: float | None) -> None:
        after = self._complete(monitor, run, lateness)
        if after is not None:
            self._spawn(after)

    def _complete(self, monitor: Scheduled, run: CheckRun, lateness: float | None) -> Coroutine[Any, Any, None] | None:
        """Fold the result in and reschedule; a heal that follows comes back as a coroutine to run."""
        self._on_check(run.result.status, lateness)
        try:
            followup = monitor.complete(run)
        except Exception:
            # A bug in Horus must not silently stop a service from being watched.
            self._schedule(monitor, monitor.crashed(self.clock.monotonic()))
            return None
        if followup is None:
            self._schedule(monitor, monitor.next_due(run.result, self.clock.monotonic()))
            return None
        return self._after(monitor, followup, run.result)

    async def _after(self, monitor: Scheduled, followup: Coroutine[Any, Any, None], result: CheckResult) -> None:
        try:
            await followup
        except asyncio.CancelledError:
            raise
        except Exception:
            self._schedule(monitor, monitor.crashed(self.clock.monotonic()))
            return
        self._schedule(monitor, monitor.next_due(result, self.clock.monotonic()))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
