"""When each monitor's check runs: one heap of due times for every monitor, not a sleeping task each.

Why one heap: with a task per monitor, every check pays for a task wake-up, a sleep timer and a timeout
timer in asyncio's own heap: about 100 µs of CPU in CPython, which at 10,000 monitors is most of a core.
Here a due check costs a pop from a heap of small tuples.

How checks run:
- *Inline* checks (a stat of a local file) run in batches on one filesystem thread. They are cheap, and
  however long a stat on a dead network mount blocks, the event loop never waits for it: the batch's
  monitors get a probe error at their timeout and the thread is left to finish on its own.
- Every other check runs as its own task under its monitor's hard timeout, so a probe that hangs delays
  nothing but itself.
A monitor is never checked twice at once: it is put back on the heap only when its check (and any heal
that followed) is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from horus import humanize
from horus.checks.base import Check, CheckResult, ProbeContext
from horus.clock import Clock
from horus.engine.runner import CheckRun, run_check, run_inline
from horus.log import get_logger

__all__ = ["FilesystemWorker", "Scheduled", "Scheduler"]

log = get_logger("horus.engine")

# Checks due within this window run together, and no check runs more than this early.
COALESCE_SECONDS = 0.002
# The scheduler wakes at most this often; checks that fall due in between run together at the next
# wake. Each wake costs about as much as a cheap check, so at thousands of checks a second this is
# most of the saving. It is also the most a check can be late because of the scheduler.
MIN_WAKE_SPACING_SECONDS = 0.02


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


_Batch = tuple[list[Check], ProbeContext, Callable[[list[CheckRun]], None]]


class FilesystemWorker:
    """One daemon thread that runs batches of inline checks, so a hung stat never blocks the loop.

    A daemon thread rather than an executor: executor threads are joined when Python exits, and a stat
    stuck on a dead mount must never keep Horus from stopping.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="horus-fs", daemon=True)
        self._thread.start()

    def submit(self, checks: list[Check], ctx: ProbeContext, done: Callable[[list[CheckRun]], None]) -> None:
        self._jobs.put((checks, ctx, done))

    def stop(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            checks, ctx, done = job
            done([run_inline(check, ctx) for check in checks])


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

        def finished(runs: list[CheckRun]) -> None:
            for timer in timers:
                timer.cancel()
            for (monitor, _), run in zip(batch, runs, strict=True):
                entry = pending.pop(id(monitor), None)
                if entry is not None:
                    self._finish(monitor, run, entry[1])

        def hand_back(runs: list[CheckRun]) -> None:  # on the filesystem thread
            # The loop may be gone: Horus stopped while this batch was stuck. Nobody is waiting then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finished, runs)

        arm()
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
