from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Literal

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext, Status
from horus.clock import SystemClock
from horus.engine.runner import CheckRun
from horus.engine.scheduler import Scheduler
from tests.support import wait_until


class StuckFsOptions(CheckOptions):
    type: Literal["test_stuck_fs"] = "test_stuck_fs"


class StuckFilesystemCheck(Check[StuckFsOptions]):
    """An inline check whose stat never returns until released, like one on a dead network mount."""

    options_model = StuckFsOptions
    inline = True

    def __init__(self) -> None:
        super().__init__(StuckFsOptions())
        self.release = threading.Event()

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return self.probe_inline(ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        self.release.wait(30)
        return CheckResult.healthy("answered at last")


class SlowOptions(CheckOptions):
    type: Literal["test_slow"] = "test_slow"


class SlowCheck(Check[SlowOptions]):
    """An async check that takes a while, and counts how many of it run at once."""

    options_model = SlowOptions

    def __init__(self, seconds: float) -> None:
        super().__init__(SlowOptions())
        self.seconds = seconds
        self.running = 0
        self.most_at_once = 0

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        return CheckResult.healthy("fine")


class RecordingMonitor:
    def __init__(self, name: str, check: Check, *, timeout: float, interval: float) -> None:
        self.name = name
        self.check = check
        self.check_timeout = timeout
        self.retired = False
        self.interval = interval
        self.results: list[tuple[float, CheckResult]] = []

    def complete(self, run: CheckRun):
        self.results.append((time.monotonic(), run.result))
        return None

    def next_due(self, result: CheckResult, now: float) -> float:
        return now + self.interval

    def crashed(self, now: float) -> float:
        raise AssertionError("no monitor here crashes")


async def run_scheduler(monitors, seconds_until, condition):
    scheduler = Scheduler(
        clock=SystemClock(), ctx=ProbeContext(clock=SystemClock(), http=None), on_check=lambda *_: None
    )
    for monitor in monitors:
        scheduler.start(monitor, 0)
    task = asyncio.create_task(scheduler.run())
    try:
        await wait_until(condition, timeout=seconds_until)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_hung_filesystem_gives_inline_checks_a_probe_error_at_their_timeout_and_delays_nothing_else():
    stuck = StuckFilesystemCheck()
    fs_monitor = RecordingMonitor("on-dead-mount", stuck, timeout=0.5, interval=0.2)
    other = RecordingMonitor("http-ish", SlowCheck(0.01), timeout=5, interval=0.1)
    try:
        await run_scheduler([fs_monitor, other], 10, lambda: len(fs_monitor.results) >= 2 and len(other.results) >= 15)
    finally:
        stuck.release.set()
    _, first = fs_monitor.results[0]
    assert first.status is Status.ERROR
    assert "the filesystem is not answering" in first.reason
    # The other monitor kept its 0.1 s rhythm all along, never waiting for the stuck thread.
    gaps = [b[0] - a[0] for a, b in zip(other.results, other.results[1:], strict=False)]
    assert max(gaps) < 0.4, gaps


async def test_a_monitor_is_never_checked_twice_at_once_even_when_its_check_outlasts_its_interval():
    slow = SlowCheck(0.3)
    monitor = RecordingMonitor("slow", slow, timeout=5, interval=0.05)
    await run_scheduler([monitor], 10, lambda: len(monitor.results) >= 4)
    assert slow.most_at_once == 1


async def test_check_soon_brings_a_check_forward_once_and_never_runs_a_monitor_twice_at_once():
    check = SlowCheck(0.05)
    slow = RecordingMonitor("rechecked", check, timeout=5, interval=3600)
    scheduler = Scheduler(
        clock=SystemClock(), ctx=ProbeContext(clock=SystemClock(), http=None), on_check=lambda *_: None
    )
    scheduler.start(slow, 0)
    task = asyncio.create_task(scheduler.run())
    try:
        await wait_until(lambda: len(slow.results) == 1)
        # Its next turn is an hour away; an upstream recovered, so it is looked at now, once per request.
        scheduler.check_soon(slow)
        await wait_until(lambda: len(slow.results) == 2)
        scheduler.check_soon(slow)
        scheduler.check_soon(slow)
        await wait_until(lambda: len(slow.results) == 3)
        await asyncio.sleep(0.3)  # a superseded entry coming up must neither run the check nor break the loop
        assert len(slow.results) == 3
        assert check.most_at_once == 1
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class CountingFsOptions(CheckOptions):
    type: Literal["test_counting_fs"] = "test_counting_fs"


class StuckOnceCheck(Check[CountingFsOptions]):
    """An inline check whose stat hangs until released, and that counts how many of its looks run at once."""

    options_model = CountingFsOptions
    inline = True

    def __init__(self) -> None:
        super().__init__(CountingFsOptions())
        self.release = threading.Event()
        self.started = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return self.probe_inline(ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        with self._lock:
            self.started += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.release.wait(30)
        finally:
            with self._lock:
                self.running -= 1
        return CheckResult.healthy("answered at last")


class QuickFsCheck(Check[CountingFsOptions]):
    """An inline check that answers at once, like a stat of a healthy local file."""

    options_model = CountingFsOptions
    inline = True

    def __init__(self) -> None:
        super().__init__(CountingFsOptions())

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return self.probe_inline(ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        return CheckResult.healthy("fresh")


async def test_a_file_check_stuck_on_a_dead_mount_delays_no_other_file_check_in_its_batch_or_after_it():
    stuck = StuckOnceCheck()
    # Started together, so they share batches with the stuck one: it comes first in each.
    dead = RecordingMonitor("on-dead-mount", stuck, timeout=0.6, interval=0.2)
    quick = [RecordingMonitor(f"local-{i}", QuickFsCheck(), timeout=5, interval=0.2) for i in range(3)]
    try:
        await run_scheduler(
            [dead, *quick], 15, lambda: len(dead.results) >= 4 and all(len(m.results) >= 15 for m in quick)
        )
    finally:
        stuck.release.set()
    for monitor in quick:
        assert all(result.is_healthy for _, result in monitor.results), monitor.results[:3]
        gaps = [b[0] - a[0] for a, b in zip(monitor.results, monitor.results[1:], strict=False)]
        assert max(gaps) < 0.8, gaps  # its 0.2 s rhythm, plus the time it takes to see a thread is stuck
    assert all(result.status is Status.ERROR for _, result in dead.results)
    # A look at a file whose last look is still stuck is not started again: one stuck thread, not one a look.
    assert stuck.started == 1 and stuck.most_at_once == 1
    assert "still waiting for the previous look" in dead.results[-1][1].reason


STUCK_AT_EXIT = """
import asyncio, threading
from horus.checks.base import ProbeContext
from horus.clock import SystemClock
from horus.engine.scheduler import Scheduler

async def main():
    scheduler = Scheduler(clock=SystemClock(), ctx=ProbeContext(clock=SystemClock(), http=None), on_check=print)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.05)
    never = threading.Event()
    # A call stuck for good, as a read on a dead mount: awaited by nobody once Horus stops.
    asyncio.get_running_loop().run_in_executor(None, never.wait)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

asyncio.run(main())
print("stopped")
"""


def test_a_call_stuck_off_the_event_loop_never_keeps_horus_from_exiting():
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", STUCK_AT_EXIT], capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("stopped")
    assert time.monotonic() - started < 10
