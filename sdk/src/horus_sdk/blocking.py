"""Find the synchronous call that froze the event loop, and measure how late the loop runs.

A ``time.sleep`` or a blocking HTTP call inside a coroutine freezes every task of the loop and leaves no
traceback: the bot just goes quiet. While the loop is blocked, a watcher thread samples the loop thread's
stack, so the report names the line that blocked::

    async with BlockingDetector(threshold=0.1) as detector:
        await run_bot()
    # horus_sdk WARNING blocking.detected seconds=0.503 at=/srv/bot/bot.py:12 function=fetch_ohlcv ...

No asyncio debug mode and no patching: a loop-side ticker sleeps a short period and measures how late it
wakes (the loop's lag), and the watcher compares the clock with the ticker's next expected wake.

This module also holds the stack sampling shared with :mod:`horus_sdk.watchdog`: which frames are the
service's own code, and the innermost of them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from horus_sdk._stacks import (
    Frame,
    Handover,
    RawFrame,
    innermost_user_frame,
    raw_stack,
    start_watcher,
    stop_ticker,
    with_source,
)

__all__ = ["BlockingDetector", "BlockingReport", "Frame"]

logger = logging.getLogger("horus_sdk")

_LAG_WINDOW = 2048
"""Lag samples kept for lag_stats(): about a minute and a half at the default 0.05 s period."""
_MAX_REPORTS = 100


# -- the detector ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockingReport:
    """One stall of the event loop: how long, and the line that blocked it.

    ``file``/``line``/``function``/``code`` name the innermost frame of the service's own code on the loop
    thread while it was blocked (for ``time.sleep(1)`` in ``bot.py`` line 12: ``bot.py``, 12, the coroutine).
    ``stack`` is the whole loop thread stack, innermost last. When the stall ended before it could be
    sampled, ``file`` is ``"<unknown>"`` and ``stack`` is empty.
    """

    duration: float
    file: str
    line: int
    function: str
    code: str
    stack: tuple[Frame, ...] = ()

    def __str__(self) -> str:
        where = f"{self.file}:{self.line} in {self.function}"
        return f"event loop blocked for {self.duration:.3f} s at {where}: {self.code}"


def _log_report(report: BlockingReport) -> None:
    logger.warning(
        "blocking.detected seconds=%.3f at=%s:%d function=%s code=%r",
        report.duration,
        report.file,
        report.line,
        report.function,
        report.code,
    )


class BlockingDetector:
    """Reports each callback that blocks the event loop longer than ``threshold`` seconds.

    ``async with BlockingDetector(0.1, on_report=...) as detector:``. ``on_report`` receives one
    :class:`BlockingReport` per stall, on the event loop's thread, after the stall (default: a warning on
    the ``horus_sdk`` logger); ``detector.reports`` keeps the last 100. ``detector.lag_stats()`` gives the
    loop's lag percentiles. Nothing runs until the context is entered.
    """

    def __init__(self, threshold: float = 0.1, *, on_report: Callable[[BlockingReport], object] | None = None) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0 seconds, got {threshold!r}")
        self.threshold = float(threshold)
        self.on_report = on_report if on_report is not None else _log_report
        # Short enough that lateness is measured well below the threshold, long enough to cost the loop
        # nothing noticeable (at most 20 wakes a second).
        self._period = max(0.001, min(self.threshold / 2, 0.05))
        self._lags: collections.deque[float] = collections.deque(maxlen=_LAG_WINDOW)
        self._reports: collections.deque[BlockingReport] = collections.deque(maxlen=_MAX_REPORTS)
        # Shared with the watcher: the ticker's next expected wake, and the stack sampled during the stall
        # that made that wake late. The lock makes "is it still the same stall?" and "keep the sample" one
        # step, so a sample taken just after the stall ended is never blamed for it.
        self._lock = threading.Lock()
        self._next_wake = math.inf
        self._sample: tuple[float, list[RawFrame]] | None = None
        self._loop_thread_id: int | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        # A turn at least every threshold minus half a period: the watcher, after a turn, sleeps until the
        # next tick is `threshold` late, so its own timer fires only when the loop really stalls.
        self._handover_every = max(self._period, self.threshold - self._period / 2)
        self._handover = Handover(self._handover_every)

    @property
    def reports(self) -> list[BlockingReport]:
        """The most recent reports (at most 100), oldest first."""
        return list(self._reports)

    def lag_stats(self) -> dict[str, float]:
        """``{"p50", "p99", "max"}`` of the loop's lag in seconds and ``"samples"``, over the recent window."""
        lags = sorted(self._lags)  # one C call under the GIL: a consistent copy even while the ticker appends
        if not lags:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}
        return {"p50": _percentile(lags, 0.50), "p99": _percentile(lags, 0.99), "max": lags[-1], "samples": len(lags)}

    async def __aenter__(self) -> BlockingDetector:
        if self._ticker is not None:
            raise RuntimeError("this BlockingDetector is already running")
        loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._handover = Handover(self._handover_every)
        with self._lock:
            self._next_wake = time.monotonic() + self._period
            self._sample = None
        self._ticker = loop.create_task(self._tick(), name="horus-blocking-detector")
        self._thread = start_watcher(
            self._watch, "horus-blocking-detector", failure_event="blocking.watcher_not_started"
        )
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
        await stop_ticker(ticker)
        if thread is not None:
            # The watcher wakes on the stop event at once; the bound only matters if sampling is slow.
            thread.join(timeout=1.0)

    # -- loop side -------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        with self._lock:
            # Set when the context was entered, so a stall before the ticker first runs is measured too.
            expected = self._next_wake
        while True:
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            now = time.monotonic()
            lag = max(0.0, now - expected)
            self._lags.append(lag)
            with self._lock:
                sample, self._sample = self._sample, None
                # Moved on at once, so that a sample taken from now on is not blamed for this stall.
                self._next_wake = now + self._period
            if lag >= self.threshold:
                raw = sample[1] if sample is not None and sample[0] == expected else []
                self._report(lag, with_source(raw))
            # Counted from now, so the time spent reporting is not taken for lag.
            now = time.monotonic()
            expected = now + self._period
            with self._lock:
                self._next_wake = expected
            self._handover.offer(now)

    def _report(self, duration: float, stack: tuple[Frame, ...]) -> None:
        frame = innermost_user_frame(stack)
        if frame is None:
            report = BlockingReport(duration, "<unknown>", 0, "<unknown>", "", stack)
        else:
            report = BlockingReport(duration, frame.file, frame.line, frame.function, frame.code, stack)
        self._reports.append(report)
        try:
            self.on_report(report)
        except Exception as exc:  # the service's hook failing must not stop the detector
            logger.warning("blocking.on_report_failed error=%r", exc)

    # -- watcher thread --------------------------------------------------------------------------------

    def _watch(self) -> None:
        sampled_for = math.nan
        handover = self._handover
        while not handover.stopped:
            with self._lock:
                expected = self._next_wake
            overdue = time.monotonic() - expected - self.threshold
            if overdue < 0:
                # Sleep until this wake would be late; the ticker hands over a turn before then while the
                # loop is healthy.
                handover.wait(-overdue)
                continue
            if expected != sampled_for:
                sampled_for = expected
                try:
                    self._take_sample(expected)
                except Exception as exc:  # a failed sample costs one report its location, nothing more
                    logger.debug("blocking.sample_failed error=%r", exc)
            # Still blocked: poll until the ticker runs again, without sampling this stall twice.
            handover.wait(self._period)

    def _take_sample(self, expected: float) -> None:
        if self._loop_thread_id is None:
            return
        frame = sys._current_frames().get(self._loop_thread_id)
        raw = raw_stack(frame)
        del frame
        with self._lock:
            # Still the same stall after sampling means the ticker had not run when the stack was taken.
            # Raw tuples only: the source lines are looked up when the report is made, so a stall that
            # ends right now still gets this sample.
            if self._next_wake == expected:
                self._sample = (expected, raw)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
