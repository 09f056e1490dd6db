"""LoopWatchdog turns a hang into a crash with a record of where it was stuck (seed 000).

The processes that must be ended run as real subprocesses: small bots written to ``tmp_path`` that import
horus_sdk from the source tree. ``kill=False`` (record only) is tested in this process, on pytest's loop.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from horus_sdk import Heartbeat, LoopWatchdog, operations
from horus_sdk.formats import FORMAT_CRASH, crash_record_path, read_json
from tests.support import wait_until, wait_until_sync

THIS_FILE = Path(__file__).resolve()
SDK_SRC = THIS_FILE.parents[2] / "sdk" / "src"

KILL_AFTER = 1.0
KILL_GRACE = 1.0
# Interpreter start-up plus a loaded 2-core machine: generous, since the bound is only "not hung".
MARGIN = 10.0


def line_of(marker: str, text: str | None = None) -> int:
    """The line carrying ``# stuck: <marker>`` in ``text`` (default: this file)."""
    lines = (THIS_FILE.read_text() if text is None else text).splitlines()
    found = [number for number, line in enumerate(lines, 1) if f"# stuck: {marker}" in line]
    assert len(found) == 1, f"marker {marker!r} must be on exactly one line"
    return found[0]


def functions(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["function"] for frame in frames]


# -- real processes ended by the watchdog --------------------------------------------------------------------

BOT_PRELUDE = f"""
import asyncio, pathlib, signal, sys, time
sys.path.insert(0, {str(SDK_SRC)!r})
from horus_sdk import Heartbeat, LoopWatchdog

crash_dir, marker = sys.argv[1], pathlib.Path(sys.argv[2])

def on_kill(record):
    # Stands for "flatten positions": proves the hook ran before the process was ended, and when.
    marker.write_text(f"{{time.monotonic()}} {{record['reason']}}")

def watchdog(hb=None, **options):
    options = {{"on_kill": on_kill, "kill_grace": {KILL_GRACE}, **options}}
    return LoopWatchdog(warn_after=0.3, kill_after={KILL_AFTER}, crash_dir=crash_dir, heartbeat=hb, **options)

async def scan_markets(hb):
    while True:
        hb.progress("scan")
        await asyncio.sleep(0.05)
"""

# Seed 000: the order awaits a fill that never comes; the scanner keeps the loop (and "scan") alive.
AWAIT_NEVER_RETURNS = """
async def place_maker_order(market):
    filled = asyncio.Event()
    await filled.wait()  # stuck: await

async def execute_signal(hb):
    hb.progress("orders")
    await place_maker_order("ETH-daily")
    hb.progress("orders")

async def main():
    async with Heartbeat(interval=0.2, sd_notify=False) as hb, watchdog(hb):
        scanner = asyncio.create_task(scan_markets(hb))
        await asyncio.sleep(0.2)
        await execute_signal(hb)

asyncio.run(main())
"""

# Seed 004 taken to the extreme: a synchronous call that never returns inside a coroutine.
LOOP_BLOCKED = """
async def fetch_ohlcv():
    time.sleep(60)  # stuck: time.sleep

async def main():
    async with watchdog():
        await asyncio.sleep(0.1)
        await fetch_ohlcv()

asyncio.run(main())
"""

# The process ignores SIGTERM, and the hook hangs: only SIGKILL can end it.
SHORT_GRACE = 0.5
IGNORES_SIGTERM = f"""
GRACE = {SHORT_GRACE}
signal.signal(signal.SIGTERM, signal.SIG_IGN)

def hanging_hook(record):
    on_kill(record)
    time.sleep(3600)

async def main():
    async with watchdog(on_kill=hanging_hook, kill_grace=GRACE):
        await asyncio.sleep(0.1)
        time.sleep(60)

asyncio.run(main())
"""

# The crash record cannot be written and the hook raises: the process is ended all the same.
NOWHERE_TO_WRITE = """
def failing_hook(record):
    on_kill(record)
    raise OSError(28, "No space left on device")

async def main():
    async with watchdog(on_kill=failing_hook):
        await asyncio.sleep(0.1)
        time.sleep(60)

asyncio.run(main())
"""


class Bot:
    def __init__(self, tmp_path: Path, body: str, crash_dir: Path | None = None) -> None:
        self.source = BOT_PRELUDE + textwrap.dedent(body)
        self.script = tmp_path / "bot.py"
        self.script.write_text(self.source)
        self.crash_dir = crash_dir if crash_dir is not None else tmp_path
        self.marker = tmp_path / "on_kill.marker"
        self.process: subprocess.Popen[str] | None = None

    def run(self) -> tuple[int, str, float]:
        """Run the bot until something ends it: (returncode, stderr, monotonic time it was seen ended)."""
        self.process = subprocess.Popen(
            [sys.executable, str(self.script), str(self.crash_dir), str(self.marker)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _out, err = self.process.communicate(timeout=KILL_AFTER + 2 * KILL_GRACE + MARGIN)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        return self.process.returncode, err, time.monotonic()

    def record(self) -> dict[str, Any]:
        assert self.process is not None
        return read_json(crash_record_path(self.crash_dir, self.process.pid), FORMAT_CRASH)

    def on_kill_ran_at(self) -> float:
        return float(self.marker.read_text().split()[0])


def test_an_await_that_never_returns_is_recorded_and_the_process_terminated(tmp_path: Path) -> None:
    bot = Bot(tmp_path, AWAIT_NEVER_RETURNS)
    started = time.monotonic()

    returncode, stderr, ended = bot.run()

    assert returncode == -signal.SIGTERM, stderr
    assert ended - started < KILL_AFTER + KILL_GRACE + MARGIN
    record = bot.record()
    assert bot.process is not None and record["pid"] == bot.process.pid
    assert record["reason"].startswith("channel 'orders' made no progress for ")
    assert record["stuck"]["function"] == "place_maker_order"
    assert record["stuck"]["line"] == line_of("await", bot.source)
    assert record["stuck"]["code"].startswith("await filled.wait()")
    [order_task] = [task for task in record["tasks"] if "place_maker_order" in functions(task["await_chain"])]
    assert functions(order_task["await_chain"])[:3] == ["main", "execute_signal", "place_maker_order"]
    assert order_task["await_chain"][-1]["function"] == "wait", "innermost last: asyncio.Event.wait"
    assert "Future pending" in order_task["awaiting"]
    assert any(thread["name"] == "MainThread" for thread in record["threads"])
    # on_kill ran before SIGTERM and got the record.
    assert "channel 'orders'" in bot.marker.read_text()
    assert "watchdog.stalled action=ending" in stderr


def test_a_blocked_loop_is_recorded_at_the_blocking_line(tmp_path: Path) -> None:
    bot = Bot(tmp_path, LOOP_BLOCKED)

    returncode, stderr, _ended = bot.run()

    assert returncode == -signal.SIGTERM, stderr
    record = bot.record()
    assert record["reason"].startswith("event loop blocked for ")
    assert record["stuck"]["file"] == str(bot.script)
    assert record["stuck"]["line"] == line_of("time.sleep", bot.source)
    assert record["stuck"]["function"] == "fetch_ohlcv"
    [loop_thread] = [thread for thread in record["threads"] if thread.get("event_loop")]
    assert loop_thread["name"] == "MainThread"
    assert loop_thread["stack"][-1]["function"] == "fetch_ohlcv"
    # The warning at warn_after named the line before the process was ended.
    warning = re.search(r"watchdog\.loop_blocked seconds=([\d.]+) at=(\S+) function=(\w+)", stderr)
    assert warning is not None, stderr
    assert float(warning[1]) >= 0.3
    assert warning.groups()[1:] == (f"{bot.script}:{line_of('time.sleep', bot.source)}", "fetch_ohlcv")
    assert bot.marker.exists()


def test_a_process_that_ignores_sigterm_is_sigkilled_after_the_grace(tmp_path: Path) -> None:
    bot = Bot(tmp_path, IGNORES_SIGTERM)

    returncode, stderr, ended = bot.run()

    assert returncode == -signal.SIGKILL, stderr
    # The hanging hook is given kill_grace, then SIGTERM is given kill_grace: SIGKILL comes after both.
    assert ended - bot.on_kill_ran_at() >= 2 * SHORT_GRACE
    assert "watchdog.on_kill_timeout" in stderr
    assert bot.record()["reason"].startswith("event loop blocked")


def test_a_missing_crash_dir_and_a_failing_hook_do_not_keep_the_process_alive(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    bot = Bot(tmp_path, NOWHERE_TO_WRITE, crash_dir=missing)

    returncode, stderr, _ended = bot.run()

    assert returncode == -signal.SIGTERM, stderr
    assert not missing.exists()
    assert "watchdog.crash_dir_missing" in stderr
    assert "watchdog.record_failed" in stderr
    assert "event loop blocked" in bot.marker.read_text(), "the hook still got the record"
    assert "No space left on device" in stderr


# -- record only (kill=False), in this process ---------------------------------------------------------------


def signal_when_exists(path: Path) -> threading.Event:
    """An event set once ``path`` exists, so the loop can be blocked until the watchdog has written it."""
    appeared = threading.Event()

    def watch() -> None:
        wait_until_sync(path.exists, timeout=30)
        appeared.set()

    threading.Thread(target=watch, daemon=True).start()
    return appeared


async def test_dry_run_writes_the_record_of_a_blocked_loop_and_keeps_the_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="horus_sdk")
    record_path = crash_record_path(tmp_path, os.getpid())
    written = signal_when_exists(record_path)
    token = operations.begin("place_maker_order")
    try:
        async with LoopWatchdog(warn_after=0.25, kill_after=0.5, crash_dir=tmp_path, kill=False) as watchdog:
            await asyncio.sleep(0)
            written.wait(timeout=30)  # stuck: dry run
            await wait_until(lambda: watchdog.last_record_path is not None)
    finally:
        operations.end(token)

    assert watchdog.last_record_path == record_path
    assert watchdog.stalls == 1
    record = read_json(record_path, FORMAT_CRASH)
    assert record["format"] == FORMAT_CRASH
    assert record["pid"] == os.getpid()
    assert abs(record["wall_time"] - time.time()) < 60
    assert record["reason"].startswith("event loop blocked for ")
    stuck = record["stuck"]
    assert (stuck["file"], stuck["line"]) == (str(THIS_FILE), line_of("dry run"))
    assert stuck["function"] == "test_dry_run_writes_the_record_of_a_blocked_loop_and_keeps_the_process"
    assert stuck["code"].startswith("written.wait(timeout=30)")
    [loop_thread] = [thread for thread in record["threads"] if thread.get("event_loop")]
    assert loop_thread["id"] == threading.get_ident()
    assert "test_dry_run_writes_the_record_of_a_blocked_loop_and_keeps_the_process" in functions(loop_thread["stack"])
    this_name = asyncio.current_task().get_name()  # type: ignore[union-attr]
    [this_task] = [task for task in record["tasks"] if task["name"] == this_name]
    assert this_task["state"] == "pending"
    assert this_task["await_chain"][-1]["line"] == line_of("dry run")
    [operation] = record["operations"]
    assert operation["name"] == "place_maker_order"
    assert operation["age_seconds"] >= 0.5
    [warning] = [r.getMessage() for r in caplog.records if "watchdog.loop_blocked" in r.getMessage()]
    assert f"at={THIS_FILE}:{line_of('dry run')} function=test_dry_run" in warning


async def test_a_block_shorter_than_kill_after_is_never_recorded(tmp_path: Path) -> None:
    # The hardest case: the block begins just before the ticker's next tick was due, so the last tick is
    # almost an interval older than the block. Counted from the last tick, this 0.7 s block would pass
    # kill_after (0.75 s); counted as the tick's lateness, it is a 0.7 s block.
    async with LoopWatchdog(warn_after=0.4, kill_after=0.75, crash_dir=tmp_path, kill=False) as watchdog:
        interval = watchdog.warn_after / 4
        for _ in range(3):
            last = watchdog._last_tick
            await wait_until(lambda last=last: watchdog._last_tick != last, interval=0.001)  # a tick just happened
            # The loop stays free until 20 ms before the next tick is due.
            await asyncio.sleep(max(0.0, watchdog._last_tick + interval - time.monotonic() - 0.02))
            time.sleep(0.7)
        await asyncio.sleep(interval * 2)
    assert watchdog.last_record_path is None
    assert not list(tmp_path.iterdir())


async def place_maker_order(filled: asyncio.Event) -> None:
    await filled.wait()  # stuck: order


async def test_dry_run_records_the_await_chain_of_a_channel_that_stopped(tmp_path: Path) -> None:
    filled = asyncio.Event()
    async with (
        Heartbeat(interval=0.1, sd_notify=False) as hb,
        LoopWatchdog(warn_after=0.25, kill_after=0.5, crash_dir=tmp_path, heartbeat=hb, kill=False) as watchdog,
    ):
        hb.progress("orders")
        order = asyncio.create_task(place_maker_order(filled), name="order")
        await wait_until(lambda: watchdog.last_record_path is not None)
        filled.set()
        await order

    assert watchdog.stalls == 1
    record = read_json(crash_record_path(tmp_path, os.getpid()), FORMAT_CRASH)
    assert record["reason"].startswith("channel 'orders' made no progress for ")
    assert record["stuck"]["function"] == "place_maker_order"
    assert record["stuck"]["line"] == line_of("order")
    [order_task] = [task for task in record["tasks"] if task["name"] == "order"]
    assert functions(order_task["await_chain"]) == ["place_maker_order", "wait"]


class BrokenHeartbeat:
    def __init__(self) -> None:
        self.calls = 0

    def channel_ages(self, now_monotonic: float) -> dict[str, float]:
        self.calls += 1
        raise RuntimeError("heartbeat bug")


async def test_a_failing_heartbeat_is_logged_once_and_the_loop_is_still_watched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="horus_sdk")
    heartbeat = BrokenHeartbeat()
    written = signal_when_exists(crash_record_path(tmp_path, os.getpid()))
    async with LoopWatchdog(0.1, 0.2, tmp_path, heartbeat=heartbeat, kill=False) as watchdog:
        await wait_until(lambda: heartbeat.calls >= 3)
        written.wait(timeout=30)  # stuck: broken heartbeat
        await wait_until(lambda: watchdog.last_record_path is not None)

    assert watchdog.last_record_path is not None
    assert read_json(watchdog.last_record_path, FORMAT_CRASH)["stuck"]["line"] == line_of("broken heartbeat")
    failures = [r.getMessage() for r in caplog.records if "watchdog.check_failed" in r.getMessage()]
    assert failures == ["watchdog.check_failed error=RuntimeError('heartbeat bug')"]


# -- a guest in the process ---------------------------------------------------------------------------------


def new_threads(before: set[threading.Thread]) -> list[str]:
    # Compared as sets, not counts: a thread left by an earlier test may end meanwhile.
    return sorted(thread.name for thread in set(threading.enumerate()) - before)


async def test_nothing_starts_until_the_watchdog_is_entered(tmp_path: Path) -> None:
    threads, tasks = set(threading.enumerate()), asyncio.all_tasks()
    sigterm = signal.getsignal(signal.SIGTERM)
    watchdog = LoopWatchdog(warn_after=0.5, kill_after=1.0, crash_dir=tmp_path)
    assert (new_threads(threads), asyncio.all_tasks()) == ([], tasks)

    async with watchdog:
        assert new_threads(threads) == ["horus-watchdog"]
        assert len(asyncio.all_tasks() - tasks) == 1

    assert (new_threads(threads), asyncio.all_tasks()) == ([], tasks)
    assert signal.getsignal(signal.SIGTERM) is sigterm
    assert watchdog.stalls == 0
    assert watchdog.last_record_path is None


async def test_faulthandler_backstop_is_armed_only_on_request_rearmed_while_healthy_and_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, float | None]] = []
    monkeypatch.setattr(faulthandler, "dump_traceback_later", lambda timeout, exit: calls.append(("arm", timeout)))
    monkeypatch.setattr(faulthandler, "cancel_dump_traceback_later", lambda: calls.append(("cancel", None)))

    async with LoopWatchdog(warn_after=0.5, kill_after=1.0, crash_dir=tmp_path):
        await asyncio.sleep(0)
    assert calls == [], "faulthandler is left alone unless asked for"

    watchdog = LoopWatchdog(warn_after=0.5, kill_after=1.0, crash_dir=tmp_path, kill_grace=2, faulthandler=True)
    async with watchdog:
        await wait_until(lambda: len(calls) >= 2, timeout=10)
    assert watchdog.backstop_seconds > 1.0 + 2 * 2, "fires only after the watcher's own sequence could end"
    assert calls[:2] == [("arm", watchdog.backstop_seconds)] * 2
    assert calls[-1] == ("cancel", None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"warn_after": 0, "kill_after": 1}, "warn_after"),
        ({"warn_after": 2, "kill_after": 1}, "kill_after"),
        ({"warn_after": 1, "kill_after": 2, "kill_grace": -1}, "kill_grace"),
        ({"warn_after": 1, "kill_after": 2, "keep_records": 0}, "keep_records"),
    ],
)
def test_thresholds_are_checked(tmp_path: Path, options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoopWatchdog(crash_dir=tmp_path, **options)  # type: ignore[arg-type]


async def test_only_the_newest_crash_records_are_kept(tmp_path: Path) -> None:
    # Records of earlier processes, oldest first; and a file that is not a crash record.
    for age, pid in enumerate([105, 104, 103, 102, 101]):
        old = crash_record_path(tmp_path, pid)
        old.write_text("{}")
        os.utime(old, (time.time() - 100 * (age + 1),) * 2)
    (tmp_path / "notes.json").write_text("{}")
    record_path = crash_record_path(tmp_path, os.getpid())
    written = signal_when_exists(record_path)
    async with LoopWatchdog(warn_after=0.25, kill_after=0.5, crash_dir=tmp_path, kill=False, keep_records=3):
        await asyncio.sleep(0)
        written.wait(timeout=30)  # blocks the loop until the record exists
        await wait_until(lambda: not crash_record_path(tmp_path, 103).exists())
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(["notes.json", record_path.name, "horus-crash-105.json", "horus-crash-104.json"])
