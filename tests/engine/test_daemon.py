from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import pytest
import structlog

from horus.clock import SystemClock
from horus.config.models import HorusConfig, SentinelSettings
from horus.engine import daemon as daemon_module
from horus.engine.daemon import Daemon
from horus.engine.incidents import IncidentTracker
from horus.store import StateStore
from horus.testing import ShiftedClock
from tests.support import wait_until


@contextlib.asynccontextmanager
async def running(tmp_path, monitors: list[dict], clock=None) -> AsyncIterator[tuple[Daemon, list[dict]]]:
    """A real daemon on a real state database, its events captured as dicts."""
    config = HorusConfig.model_validate(
        {"defaults": {"start_jitter_seconds": 0, "confirm_recovery_seconds": 0.3}, "monitors": monitors}
    )
    store = StateStore.open(tmp_path / "state")
    daemon = Daemon(config.monitor_settings(), store, clock=clock)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as events:
        task = asyncio.create_task(daemon.run(stop))
        try:
            yield daemon, events
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            store.close()


def named(events: list[dict], event: str, monitor: str | None = None) -> list[dict]:
    return [e for e in events if e["event"] == event and (monitor is None or e.get("monitor") == monitor)]


def counting_heal(tmp_path, name="heals.txt") -> dict:
    """A heal that appends one line per run to a file, so heals can be counted from outside."""
    return {"action": "run_script", "command": f"echo healed >> {tmp_path / name}", "shell": True}


def heal_count(tmp_path, name="heals.txt") -> int:
    path = tmp_path / name
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_a_log_going_stale_is_detected_within_a_second_whatever_the_interval(tmp_path):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    written = time.time()
    monitor = {
        "name": "bot",
        "interval_seconds": 60,
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 1.5},
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: named(events, "check.failed", "bot"), timeout=10)
        detected = time.time()
    assert 1.5 <= detected - written <= 2.5


async def test_a_hung_http_probe_delays_no_other_monitor(tmp_path, silent_server):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    written = time.time()
    hung = [
        {
            "name": f"api-{i}",
            "interval_seconds": 1,
            "check_timeout_seconds": 30,
            "check": {"type": "http_health", "url": silent_server.url(f"/{i}")},
        }
        for i in range(20)
    ]
    bot = {
        "name": "bot",
        "interval_seconds": 60,
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 1.5},
    }
    async with running(tmp_path, [*hung, bot]) as (_, events):
        await wait_until(lambda: named(events, "check.failed", "bot"), timeout=10)
        detected = time.time()
    assert detected - written <= 2.5


async def test_a_probe_that_never_answers_is_cut_off_at_its_timeout_and_counted_unhealthy(tmp_path, silent_server):
    monitor = {
        "name": "api",
        "interval_seconds": 0.2,
        "check_timeout_seconds": 0.3,
        "check": {"type": "http_health", "url": silent_server.url()},
    }
    async with running(tmp_path, [monitor]) as (daemon, events):
        await wait_until(lambda: len(named(events, "check.failed", "api")) >= 2, timeout=10)
    assert named(events, "check.failed", "api")[0]["reason"] == "no answer within 300 ms"
    assert daemon.states["api"].consecutive_failures >= 2


async def test_a_probe_error_is_shown_as_an_error_and_never_heals(tmp_path):
    monitor = {
        "name": "svc",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "check": {"type": "command", "command": ["/nonexistent/health-check"]},
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: len(named(events, "check.error", "svc")) >= 5, timeout=10)
    assert "not found" in named(events, "check.error", "svc")[0]["reason"]
    assert not named(events, "heal.started")
    assert heal_count(tmp_path) == 0


async def test_a_failing_monitor_heals_once_per_cooldown_not_on_every_failure(tmp_path):
    monitor = {
        "name": "svc",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 2,
        "heal_cooldown_seconds": 60,
        "startup_grace_seconds": 0,
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: len(named(events, "check.failed", "svc")) >= 8, timeout=10)
    assert heal_count(tmp_path) == 1
    assert len(named(events, "heal.finished", "svc")) == 1
    suppressed = named(events, "heal.suppressed", "svc")
    assert len(suppressed) == 1, "the cooldown is announced once, not on every failure"


async def test_failures_during_the_startup_grace_after_a_heal_are_not_counted(tmp_path):
    stamps = tmp_path / "heal-times.txt"
    monitor = {
        "name": "svc",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "heal_cooldown_seconds": 0,
        "startup_grace_seconds": 0.8,
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        "heal": {"action": "run_script", "command": f"date +%s.%N >> {stamps}", "shell": True},
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: stamps.exists() and len(stamps.read_text().split()) >= 2, timeout=10)
    first, second = (float(t) for t in stamps.read_text().split()[:2])
    # The grace runs from the heal's start, a few ms before each script stamps its time.
    assert second - first >= 0.7, "no heal while the restarted service is inside its grace"
    assert len(named(events, "check.failed_in_grace", "svc")) >= 3, "looks inside the grace are reported, not counted"


async def test_the_startup_grace_starts_when_a_long_heal_has_finished(tmp_path):
    stamps = tmp_path / "heal-ends.txt"
    monitor = {
        "name": "svc",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "heal_cooldown_seconds": 0,
        "startup_grace_seconds": 1.0,
        "heal_timeout_seconds": 10,
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        # A heal that takes longer than the grace (a kill waiting out its SIGTERM grace, say).
        "heal": {"action": "run_script", "command": f"sleep 1.5; date +%s.%N >> {stamps}", "shell": True},
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: named(events, "heal.finished", "svc"), timeout=10)
        ended = time.monotonic()
        after = len(events)

        def counted_failure() -> bool:
            return any(e["event"] == "check.failed" for e in events[after:])

        await wait_until(counted_failure, timeout=10, interval=0.01)
        first_counted = time.monotonic() - ended
    in_grace = [e for e in events[after:] if e["event"] == "check.failed_in_grace"]
    assert len(in_grace) >= 3, "looks right after the heal are inside the grace"
    assert first_counted >= 0.9, f"a failure counted {first_counted:.2f} s after the heal ended, inside its 1 s grace"


async def test_a_wall_clock_jump_neither_triggers_nor_suppresses_a_heal(tmp_path):
    clock = ShiftedClock()
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    monitor = {
        "name": "bot",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "heal_cooldown_seconds": 3600,
        "startup_grace_seconds": 0,
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 1},
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor], clock=clock) as (daemon, events):
        await wait_until(lambda: "bot" in daemon.states and daemon.states["bot"].last_status is not None, timeout=5)
        clock.jump(7200)  # the wall clock leaps two hours: the fresh log must not look stale
        for _ in range(5):
            log.write_text("scan\n")
            await asyncio.sleep(0.1)
        assert heal_count(tmp_path) == 0
        await wait_until(lambda: heal_count(tmp_path) == 1, timeout=10)  # then it really goes stale
        clock.jump(7200)  # and a second leap must not end the one-hour cooldown
        await wait_until(lambda: len(named(events, "check.failed", "bot")) >= 5, timeout=10)
    assert heal_count(tmp_path) == 1


async def test_a_wall_clock_step_does_not_cut_a_heals_verification_short(tmp_path):
    clock = ShiftedClock()
    monitor = {
        "name": "svc",
        "interval_seconds": 0.2,
        "min_failures_to_heal": 1,
        "heal_cooldown_seconds": 3600,
        "startup_grace_seconds": 0,
        "verify_within_seconds": 2.5,
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor], clock=clock) as (_daemon, events):
        await wait_until(lambda: named(events, "heal.finished", "svc"), timeout=10)
        healed = time.monotonic()
        clock.jump(3600)  # an hour forward: the service still has its 2.5 s to come back
        await asyncio.sleep(1.5)
        assert not named(events, "monitor.not_recovered", "svc")
        await wait_until(lambda: named(events, "monitor.not_recovered", "svc"), timeout=10)
        assert time.monotonic() - healed >= 2.4


async def test_state_is_restored_on_restart_so_the_cooldown_still_holds(tmp_path):
    monitor = {
        "name": "svc",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "heal_cooldown_seconds": 600,
        "startup_grace_seconds": 0,
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: named(events, "heal.finished", "svc"), timeout=10)
    async with running(tmp_path, [monitor]) as (daemon, events):
        await wait_until(lambda: len(named(events, "check.failed", "svc")) >= 5, timeout=10)
        assert daemon.states["svc"].last_heal is not None
    assert heal_count(tmp_path) == 1
    assert named(events, "heal.suppressed", "svc")


async def test_a_disabled_monitor_is_not_checked(tmp_path):
    monitor = {"name": "off", "enabled": False, "check": {"type": "file_exists", "path": str(tmp_path / "x")}}
    on = {"name": "on", "interval_seconds": 0.1, "check": {"type": "file_exists", "path": str(tmp_path / "y")}}
    async with running(tmp_path, [monitor, on]) as (_, events):
        await wait_until(lambda: len(named(events, "check.failed", "on")) >= 2, timeout=10)
    assert not [e for e in events if e.get("monitor") == "off"]
    assert named(events, "horus.started")[0]["disabled"] == ["off"]


async def test_recovery_is_announced_once_the_failing_monitor_passes_again(tmp_path):
    target = tmp_path / "ready"
    monitor = {
        "name": "svc",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 5,
        "check": {"type": "file_exists", "path": str(target)},
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: named(events, "check.failed", "svc"), timeout=10)
        target.write_text("ok")
        await wait_until(lambda: named(events, "monitor.recovered", "svc"), timeout=10)
    [recovered] = named(events, "monitor.recovered", "svc")
    assert recovered["reason"].startswith("healthy for ") and "ready exists" in recovered["reason"]
    assert recovered["outcome"] == "recovered without a heal"


async def test_a_heal_names_where_the_service_was_stuck_when_it_left_a_crash_record(tmp_path):
    from horus_sdk.formats import FORMAT_CRASH, crash_record_path, write_json_atomic

    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    write_json_atomic(
        crash_record_path(crash_dir, 4121),
        {
            "format": FORMAT_CRASH,
            "pid": 4121,
            "wall_time": time.time(),
            "reason": "event loop blocked for 12.0 s",
            "stuck": {"file": "/srv/bot/bot.py", "line": 88, "function": "fetch_ohlcv", "code": "requests.get(...)"},
        },
    )
    monitor = {
        "name": "bot",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "check": {
            "type": "heartbeat",
            "path": str(tmp_path / "never-written.json"),
            "max_age_seconds": 5,
            "crash_dir": str(crash_dir),
        },
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: named(events, "heal.finished", "bot"), timeout=10)
    [started] = named(events, "heal.started", "bot")
    assert started["crash_summary"] == "event loop blocked for 12.0 s; stuck in fetch_ohlcv at bot.py:88"
    assert started["crash_record"].endswith("horus-crash-4121.json")


async def test_an_incident_database_that_stops_answering_delays_a_heal_only_by_its_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon_module, "DETECT_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(daemon_module, "INCIDENT_STEP_SECONDS", 0.5)
    tracker = IncidentTracker(tmp_path / "state", SentinelSettings(), clock=SystemClock())
    stuck = threading.Event()
    original_start = tracker.start

    async def start_then_hang() -> None:
        await original_start()
        tracker._thread.submit(stuck.wait, 30)  # the incident store's disk stops answering

    tracker.start = start_then_hang  # type: ignore[method-assign]
    monitor = {
        "name": "bot",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        "heal": counting_heal(tmp_path),
    }
    config = HorusConfig.model_validate({"defaults": {"start_jitter_seconds": 0}, "monitors": [monitor]})
    store = StateStore.open(tmp_path / "state")
    daemon = Daemon(config.monitor_settings(), store, incidents=tracker)
    stop = asyncio.Event()
    try:
        with structlog.testing.capture_logs() as events:
            task = asyncio.create_task(daemon.run(stop))
            await wait_until(lambda: heal_count(tmp_path) >= 1, timeout=10)
            assert named(events, "incident.timed_out", "bot"), "the heal went ahead without its incident"
            stuck.set()
            stop.set()
            await asyncio.wait_for(task, 20)
    finally:
        stuck.set()
        store.close()


async def test_a_state_database_that_stops_answering_delays_a_heal_only_by_its_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon_module, "BEGIN_HEAL_TIMEOUT_SECONDS", 0.5)
    missing = tmp_path / "output"
    missing.touch()
    stuck = threading.Event()
    monitor = {
        "name": "bot",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "check": {"type": "file_exists", "path": str(missing)},
        "heal": counting_heal(tmp_path),
    }
    try:
        async with running(tmp_path, [monitor]) as (daemon, events):
            await wait_until(lambda: "bot" in daemon.states and daemon.states["bot"].last_status is not None)
            daemon.db_nowait(stuck.wait, 30)  # the state database's disk stops answering
            missing.unlink()  # and then the service fails
            await wait_until(lambda: heal_count(tmp_path) >= 1, timeout=10)
            [error] = [e for e in named(events, "store.error", "bot") if "did not answer" in e["error"]]
            assert error["note"] == "healing anyway; cooldown kept in memory only"
            stuck.set()
    finally:
        stuck.set()


@pytest.mark.parametrize(
    ("interval", "max_age", "threshold", "recheck"),
    [(30, 3, 2, 1.0), (60, 1.5, 3, 0.5), (5, 2, 2, 5.0), (0.5, 1, 4, 5.0)],
)
async def test_the_heal_comes_within_the_deadline_plus_the_short_rechecks_whatever_the_interval(
    tmp_path, interval, max_age, threshold, recheck
):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    written = time.time()
    monitor = {
        "name": "bot",
        "interval_seconds": interval,
        "min_failures_to_heal": threshold,
        "recheck_failing_seconds": recheck,
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": max_age},
        "heal": counting_heal(tmp_path),
    }
    async with running(tmp_path, [monitor]) as (_, events):
        await wait_until(lambda: named(events, "heal.started", "bot"), timeout=max_age + threshold * recheck + 10)
        healed_at = time.time()
    bound = max_age + (threshold - 1) * min(interval, recheck)
    assert healed_at - written <= bound + 1.0, (
        f"healed {healed_at - written:.1f} s after the last write, bound {bound} s"
    )
    assert healed_at - written >= max_age, "never before the deadline"


async def test_a_runner_dir_whose_reads_hang_delays_a_heal_only_by_its_bound(tmp_path, monkeypatch):
    """After each look Horus reads the monitor's runner.json for news. A stat stuck on a dead network mount must
    not hold the monitor's heal (nor its next looks), and one stuck read holds one thread, not one per look."""
    from horus.engine import runner_watch

    monkeypatch.setattr(runner_watch, "FOLLOW_TIMEOUT_SECONDS", 0.3)
    stuck = threading.Event()
    reads: list[float] = []

    def hung_read(self, monitor: str) -> list:
        reads.append(time.monotonic())
        stuck.wait(30)
        return []

    monkeypatch.setattr(runner_watch.RunnerWatch, "read", hung_read)
    monitor = {
        "name": "bot",
        "interval_seconds": 0.1,
        "min_failures_to_heal": 2,
        "startup_grace_seconds": 0,
        "runner": str(tmp_path / "runner"),
        "check": {"type": "file_exists", "path": str(tmp_path / "missing")},
        "heal": counting_heal(tmp_path),
    }
    try:
        async with running(tmp_path, [monitor]) as (_, events):
            await wait_until(lambda: heal_count(tmp_path) >= 1, timeout=10)
            assert named(events, "runner.read_stuck", "bot"), "the read was not said to be stuck"
            assert len(reads) == 1, "a second read was started while the first one hung"
            stuck.set()
    finally:
        stuck.set()
