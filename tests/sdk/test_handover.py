"""The loop thread hands its watcher thread turns, so the watcher never races a busy loop for the GIL.

Real threads throughout; the loop side is played by the test's thread or by pytest's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from horus_sdk import BlockingDetector, Heartbeat, LoopWatchdog, blocking, watchdog
from horus_sdk._stacks import HANDOVER_LIMIT, Handover
from tests.support import wait_until_sync


class Watcher:
    """A watcher thread that records each wait's outcome: a turn (True) or its own timer (False)."""

    def __init__(self, handover: Handover, timeout: float = 30.0, busy: threading.Event | None = None) -> None:
        self.handover = handover
        self.timeout = timeout
        self.busy = busy  # while set, the watcher does not come back to wait
        self.turns = 0
        self.timer_wakes = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        handover.open()

    def run(self) -> None:
        while True:
            got_turn = self.handover.wait(self.timeout)
            if self.handover.stopped:
                return
            if got_turn:
                self.turns += 1
            else:
                self.timer_wakes += 1
            while self.busy is not None and self.busy.is_set():
                time.sleep(0.001)


def test_an_offer_wakes_the_watcher_and_returns_once_it_has_taken_its_turn() -> None:
    handover = Handover(every=0.0)
    watcher = Watcher(handover)
    for expected in range(1, 6):
        time.sleep(0.01)  # let the watcher come back to its wait
        handover.offer(time.monotonic())
        wait_until_sync(lambda: watcher.turns == expected)  # noqa: B023
    handover.stop()
    watcher.thread.join(timeout=5)
    assert not watcher.thread.is_alive()
    assert (watcher.turns, watcher.timer_wakes) == (5, 0)


def test_offers_are_made_at_most_once_per_period() -> None:
    handover = Handover(every=10.0)
    watcher = Watcher(handover)
    now = time.monotonic()
    for step in range(20):
        time.sleep(0.002)
        handover.offer(now + step * 0.1)  # two seconds of ticks: one offer is due
    handover.offer(now + 10.0)  # ten seconds after the first: the second
    wait_until_sync(lambda: watcher.turns == 2)
    time.sleep(0.05)
    assert watcher.turns == 2
    handover.stop()


def test_a_busy_watcher_never_holds_the_loop_thread_up() -> None:
    busy = threading.Event()
    handover = Handover(every=0.0)
    watcher = Watcher(handover, busy=busy)
    busy.set()
    time.sleep(0.01)
    handover.offer(time.monotonic())  # taken, but not answered while the watcher is busy
    wait_until_sync(lambda: watcher.turns == 1)
    started = time.perf_counter()
    for _ in range(50):
        handover.offer(time.monotonic())
    per_offer = (time.perf_counter() - started) / 50
    assert per_offer < HANDOVER_LIMIT * 20  # bounded, generous for a loaded machine
    busy.clear()
    wait_until_sync(lambda: watcher.turns == 2)  # the turn offered while it was busy, taken now
    # Late answers do not leave the handover out of step: each later offer is a turn taken.
    for expected in (3, 4, 5):
        time.sleep(0.01)
        handover.offer(time.monotonic())
        wait_until_sync(lambda: watcher.turns == expected)  # noqa: B023
    time.sleep(0.05)
    assert watcher.turns == 5
    handover.stop()
    watcher.thread.join(timeout=5)
    assert not watcher.thread.is_alive()


def test_stop_ends_the_wait_at_once_and_offers_then_do_nothing() -> None:
    handover = Handover(every=0.0)
    watcher = Watcher(handover, timeout=60.0)
    time.sleep(0.01)
    started = time.monotonic()
    handover.stop()
    watcher.thread.join(timeout=5)
    assert time.monotonic() - started < 5
    assert handover.stopped and not watcher.thread.is_alive()
    handover.offer(time.monotonic() + 100)
    assert handover.wait(60.0) is False  # returns at once once stopped


class CountingHandover(Handover):
    def __init__(self, every: float) -> None:
        super().__init__(every)
        self.turns = self.timer_wakes = 0

    def wait(self, timeout: float) -> bool:
        got_turn = super().wait(timeout)
        if not self.stopped:
            if got_turn:
                self.turns += 1
            else:
                self.timer_wakes += 1
        return got_turn


async def test_beside_a_busy_loop_the_watchers_wake_on_turns_not_on_their_own_timers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocking, "Handover", CountingHandover)
    monkeypatch.setattr(watchdog, "Handover", CountingHandover)
    hb = Heartbeat(tmp_path / "heartbeat.json")
    detector = BlockingDetector(threshold=0.1)
    loop_watchdog = LoopWatchdog(warn_after=0.5, kill_after=5, crash_dir=tmp_path, heartbeat=hb, kill=False)
    async with hb, detector, loop_watchdog:
        detector_handover, watchdog_handover = detector._handover, loop_watchdog._handover
        assert isinstance(detector_handover, CountingHandover)
        assert isinstance(watchdog_handover, CountingHandover)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # never idle: the loop lets go of the GIL only in select()
            sum(i * i for i in range(300))
            hb.progress("work")
            await asyncio.sleep(0)
    # The detector's watcher sleeps 0.1 s past each tick: every wake of its own would be a GIL race.
    assert detector_handover.turns >= 10
    assert detector_handover.timer_wakes <= detector_handover.turns // 5
    assert watchdog_handover.turns >= 3
    assert watchdog_handover.timer_wakes <= 2  # its first look, before any turn was offered
