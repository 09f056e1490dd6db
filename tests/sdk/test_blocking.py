"""BlockingDetector names the synchronous call that froze the event loop (seed 004), and is quiet once fixed.

Each blocking call below carries a ``# blocks:`` comment; the tests find its line by that comment, so the
report is checked against the exact line of the call in this file.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from horus_sdk import BlockingDetector, BlockingReport
from tests.support import LoopbackHTTPServer, Route, wait_until

THIS_FILE = Path(__file__).resolve()


def line_of(marker: str) -> int:
    """The line in this file that carries ``marker`` in a comment."""
    lines = THIS_FILE.read_text().splitlines()
    found = [number for number, text in enumerate(lines, 1) if f"# blocks: {marker}" in text]
    assert len(found) == 1, f"marker {marker!r} must be on exactly one line"
    return found[0]


def reports_at(reports: list[BlockingReport], marker: str) -> list[BlockingReport]:
    """The reports that name the line of ``marker`` (a loaded machine may add unrelated ones)."""
    line = line_of(marker)
    return [report for report in reports if Path(report.file).resolve() == THIS_FILE and report.line == line]


async def fetch_ohlcv_with_time_sleep() -> None:
    time.sleep(0.5)  # blocks: time.sleep


async def brief_stall() -> None:
    time.sleep(0.25)  # blocks: brief


async def fetch_ohlcv_over_http(url: str) -> None:
    urllib.request.urlopen(url, timeout=10).read()  # blocks: urlopen


async def fetch_ohlcv_in_a_thread() -> None:
    await asyncio.to_thread(time.sleep, 0.5)


async def fetch_ohlcv_over_http_in_a_thread(url: str) -> None:
    await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())


@pytest.fixture
def slow_ohlcv(http_server: LoopbackHTTPServer) -> str:
    """A local HTTP endpoint that takes half a second to answer, like a slow exchange API."""
    route = Route(body=b"[]", content_type="application/json")
    route.delay_seconds = 0.5
    http_server.routes["/ohlcv"] = route
    return http_server.url("/ohlcv")


async def test_time_sleep_in_a_coroutine_is_reported_at_its_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="horus_sdk")
    async with BlockingDetector(threshold=0.1) as detector:
        await fetch_ohlcv_with_time_sleep()
        await wait_until(lambda: bool(reports_at(detector.reports, "time.sleep")))

    [report] = reports_at(detector.reports, "time.sleep")  # one stall, one report
    assert report.function == "fetch_ohlcv_with_time_sleep"
    assert report.code.startswith("time.sleep(0.5)")
    assert 0.4 <= report.duration < 5
    assert report.stack[-1].function == "fetch_ohlcv_with_time_sleep", "innermost frame last"
    stats = detector.lag_stats()
    assert stats["samples"] >= 1
    assert stats["p50"] <= stats["p99"] <= stats["max"]
    assert stats["max"] >= 0.4
    # By default the report is a warning on the "horus_sdk" logger.
    [message] = [r.getMessage() for r in caplog.records if "blocking.detected" in r.getMessage()]
    assert f"{THIS_FILE}:{line_of('time.sleep')} function=fetch_ohlcv_with_time_sleep" in message


async def test_blocking_http_get_is_reported_at_the_urlopen_line_not_inside_the_stdlib(slow_ohlcv: str) -> None:
    async with BlockingDetector(threshold=0.1) as detector:
        await fetch_ohlcv_over_http(slow_ohlcv)
        await wait_until(lambda: bool(reports_at(detector.reports, "urlopen")))

    [report] = reports_at(detector.reports, "urlopen")
    assert report.function == "fetch_ohlcv_over_http"
    assert 0.4 <= report.duration < 5
    # The stack still shows where inside urllib the loop thread was waiting.
    assert any(frame.file.endswith("socket.py") or "http" in frame.file for frame in report.stack[-4:])


@pytest.mark.parametrize("fixed", ["time.sleep", "urlopen"])
async def test_moving_the_call_to_a_thread_makes_the_report_disappear(fixed: str, slow_ohlcv: str) -> None:
    calls: dict[str, Callable[[], Awaitable[None]]] = {
        "time.sleep": fetch_ohlcv_in_a_thread,
        "urlopen": lambda: fetch_ohlcv_over_http_in_a_thread(slow_ohlcv),
    }
    async with BlockingDetector(threshold=0.1) as detector:
        await calls[fixed]()
        # A stall is reported when the ticker next wakes: let it wake twice more before looking.
        samples = detector.lag_stats()["samples"]
        await wait_until(lambda: detector.lag_stats()["samples"] >= samples + 2)

    assert [report for report in detector.reports if report.function.startswith("fetch_ohlcv")] == []
    assert detector.lag_stats()["max"] < 0.4, "the loop kept running while the call waited in a thread"


async def test_a_failing_on_report_hook_is_contained_and_the_next_stall_is_still_reported() -> None:
    seen: list[BlockingReport] = []

    def broken_hook(report: BlockingReport) -> None:
        seen.append(report)
        raise RuntimeError("the service's hook is broken")

    async with BlockingDetector(threshold=0.1, on_report=broken_hook) as detector:
        await brief_stall()
        await wait_until(lambda: len(reports_at(seen, "brief")) == 1)
        await brief_stall()
        await wait_until(lambda: len(reports_at(seen, "brief")) == 2)

    assert len(reports_at(detector.reports, "brief")) == 2


def new_threads(before: set[threading.Thread]) -> list[str]:
    # Compared as sets, not counts: a thread left by an earlier test may end meanwhile.
    return sorted(thread.name for thread in set(threading.enumerate()) - before)


async def test_nothing_runs_until_the_detector_is_entered() -> None:
    threads, tasks = set(threading.enumerate()), asyncio.all_tasks()
    detector = BlockingDetector(threshold=0.1)
    assert (new_threads(threads), asyncio.all_tasks()) == ([], tasks)

    async with detector:
        assert new_threads(threads) == ["horus-blocking-detector"]
        assert len(asyncio.all_tasks() - tasks) == 1

    assert (new_threads(threads), asyncio.all_tasks()) == ([], tasks)


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        BlockingDetector(threshold=0)
