"""What the service said about itself (its crash records, its own watchdog's log lines) outranks guesses.

Every service here is a real process running the real horus-sdk: its LoopWatchdog writes the crash
record and the ``horus_sdk`` warnings, and Horus reads them as it would in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from horus.checks.heartbeat import HeartbeatCheck, HeartbeatOptions
from horus.config.models import HorusConfig, MonitorSettings
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.postmortem import render_postmortem
from horus.sentinel.rootcause import analyse
from horus.sentinel.snapshot import take_snapshot
from horus_sdk.formats import FORMAT_CRASH, write_json_atomic
from tests.process_support import ProcessSpawner
from tests.sentinel.support import open_incident

# A bot whose fetch_ohlcv makes a synchronous call with no timeout inside async code (seed 004). Its
# LoopWatchdog warns after 0.3 s of a blocked loop and ends the process after ``kill_after``.
BOT = """
import asyncio, logging, sys, time
from pathlib import Path
from horus_sdk import Heartbeat, LoopWatchdog

STATE = Path(sys.argv[2])
KILL_AFTER = float(sys.argv[3])
logging.basicConfig(
    filename=STATE / "bot.log", level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
)
log = logging.getLogger("bot")


def fetch_ohlcv(market):
    time.sleep(3600)  # the exchange never answers and this call has no timeout
    return []


async def main():
    hb = Heartbeat(STATE / "heartbeat.json", interval=0.1)
    async with hb, LoopWatchdog(warn_after=0.3, kill_after=KILL_AFTER, crash_dir=STATE, heartbeat=hb, kill_grace=0.5):
        for _ in range(3):
            hb.progress("scan")
            log.info("scanning ETH/USD")
            await asyncio.sleep(0.2)
        fetch_ohlcv("ETH/USD")


asyncio.run(main())
"""
BLOCKING_LINE = (
    BOT.splitlines().index("    time.sleep(3600)  # the exchange never answers and this call has no timeout") + 1
)


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


@pytest.fixture
def bot(tmp_path) -> Path:
    path = tmp_path / "bot.py"
    path.write_text(BOT)
    return path


def start_hung_bot(spawner: ProcessSpawner, bot: Path, state: Path) -> str:
    """The bot, blocked in fetch_ohlcv, whose watchdog would end it only in an hour: Horus acts first."""
    marker = spawner.marker()
    code = (
        f"import runpy, sys; sys.argv = [{str(bot)!r}, sys.argv[1], {str(state)!r}, '3600']; "
        f"runpy.run_path({str(bot)!r}, run_name='__main__')"
    )
    before = warnings(state)
    spawner.detached(marker, code)
    wait_for(lambda: len(warnings(state)) > len(before), "warning from the watchdog of the bot just started")
    return marker


def warnings(state: Path) -> list[str]:
    """The LoopWatchdog's warnings in the bot's log: each says where the loop is blocked."""
    return [line for line in read(state / "bot.log").splitlines() if "watchdog.loop_blocked" in line]


def wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def monitor(check: dict[str, Any], marker: str) -> MonitorSettings:
    return watching(check, heal={"action": "kill_process", "process_pattern": marker})


def watching(check: dict[str, Any], **more: Any) -> MonitorSettings:
    [settings] = HorusConfig.model_validate({"monitors": [{"name": "bot", "check": check, **more}]}).monitor_settings()
    return settings


def analysed(snapshot: dict[str, Any], *, reason: str, check_type: str, **given: Any) -> list[Hypothesis]:
    evidence: dict[str, Any] = {
        "crash_record": None,
        "log_tail": [],
        "upstreams": {},
        "commits": [],
        "config_changed": False,
        "last_healthy_at": None,
        **given,
    }
    return analyse(snapshot=snapshot, reason=reason, check_type=check_type, **evidence)


def postmortem(store, snapshot: dict[str, Any], hypotheses: list[Hypothesis], reason: str) -> str:
    incident = open_incident(store, "bot", at=time.time(), fingerprint="bot-stale", reason=reason)
    store.add_snapshot(incident.id, snapshot, at=incident.opened_at)
    return render_postmortem(
        store.get(incident.id),
        store.timeline(incident.id),
        store.snapshots(incident.id),
        [],
        prior_matching=0,
        hypotheses=hypotheses,
    )


def test_the_watchdogs_own_warning_in_the_log_is_the_root_cause_when_horus_heals_first(tmp_path, spawner, bot, store):
    state = tmp_path / "state"
    state.mkdir()
    marker = start_hung_bot(spawner, bot, state)
    [warning] = warnings(state)
    assert f"{bot}:{BLOCKING_LINE} function=fetch_ohlcv" in warning  # what the real SDK wrote
    settings = monitor({"type": "log_staleness", "log_file": str(state / "bot.log"), "max_age_seconds": 30}, marker)
    reason = "bot.log last written 31 s ago, limit 30 s"

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)
    hypotheses = analysed(snapshot, reason=reason, check_type="log_staleness")
    first = hypotheses[0]

    assert first.title == f"probable: event loop blocked in fetch_ohlcv at bot.py:{BLOCKING_LINE}"
    assert first.evidence[0] == f"log: {warning}"
    assert first.confidence > 0.75  # above py-spy's sample, the best of the guesses
    assert all(h.confidence < first.confidence for h in hypotheses[1:])
    assert not any(h.title.startswith("possible: hung") for h in hypotheses)
    assert "horus_sdk.deadline" in (first.recommendation or "")
    assert "fetch_ohlcv" in (first.recommendation or "")
    assert "LoopWatchdog" not in (first.recommendation or "")

    markdown = postmortem(store, snapshot, hypotheses, reason)
    assert (
        f"**Root cause (probable):** probable: event loop blocked in fetch_ohlcv at bot.py:{BLOCKING_LINE} "
        f"(confidence {first.confidence:.0%})"
    ) in markdown
    assert "hung" not in markdown
    assert "LoopWatchdog" not in markdown


def test_the_newest_crash_record_is_the_root_cause_even_when_it_is_older_than_this_failure(
    tmp_path, spawner, bot, store
):
    state = tmp_path / "state"
    state.mkdir()
    # Yesterday's instance: its watchdog ended it and left a crash record naming where it was stuck.
    ended = subprocess.run(
        [sys.executable, str(bot), "earlier-instance", str(state), "0.6"], capture_output=True, timeout=30
    )
    assert ended.returncode != 0, ended.stderr
    [record] = state.glob("horus-crash-*.json")
    healthy_since = time.time()
    # Today's instance blocks in the same place; Horus acts before its watchdog does.
    marker = start_hung_bot(spawner, bot, state)
    options = {"type": "heartbeat", "path": str(state / "heartbeat.json"), "max_age_seconds": 2}
    settings = monitor({**options, "crash_dir": str(state)}, marker)
    # The engine asks the check for crash records since this episode began: there are none.
    check = HeartbeatCheck(HeartbeatOptions.model_validate({**options, "crash_dir": str(state)}))
    assert check.evidence(healthy_since) == {}
    reason = "heartbeat 2.4 s old, limit 2 s"

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)
    hypotheses = analysed(snapshot, reason=reason, check_type="heartbeat", last_healthy_at=healthy_since)
    first = hypotheses[0]

    assert snapshot["crash"]["crash_record"] == str(record)
    assert snapshot["crash"]["stuck"]["function"] == "fetch_ohlcv"
    assert first.title.startswith(f"probable: event loop blocked in fetch_ohlcv at bot.py:{BLOCKING_LINE}")
    assert "before this failure" in first.title
    assert first.evidence[0].startswith("crash record: event loop blocked for ")
    assert f"crash record: stuck in fetch_ohlcv at bot.py:{BLOCKING_LINE}: time.sleep(3600)" in first.evidence[1]
    assert first.confidence > 0.75
    assert not any(h.title.startswith("possible: hung") for h in hypotheses)
    assert "horus_sdk.deadline" in (first.recommendation or "")
    assert "LoopWatchdog" not in (first.recommendation or "")

    markdown = postmortem(store, snapshot, hypotheses, reason)
    assert "**Root cause (probable):** probable: event loop blocked in fetch_ohlcv at bot.py:" in markdown
    assert "LoopWatchdog" not in markdown


def test_a_service_running_the_sdk_is_never_told_to_add_it(tmp_path, spawner, bot):
    state = tmp_path / "state"
    state.mkdir()
    marker = start_hung_bot(spawner, bot, state)
    # Horus is not told where the crash records go, nor reads the log: only the SDK's heartbeat file.
    settings = monitor({"type": "heartbeat", "path": str(state / "heartbeat.json"), "max_age_seconds": 2}, marker)

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)
    hypotheses = analysed(snapshot, reason="heartbeat 2.4 s old, limit 2 s", check_type="heartbeat")

    assert snapshot["heartbeats"][0]["channels"]  # an SDK heartbeat, with its channels
    for hypothesis in hypotheses:
        advice = hypothesis.recommendation or ""
        assert "add horus-sdk" not in advice.lower() and "instrument the service" not in advice.lower()
        assert "add horus-sdk's LoopWatchdog" not in advice


def test_an_older_crash_record_and_the_watchdogs_warning_now_at_the_same_line_are_one_current_cause(
    tmp_path, spawner, bot
):
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run([sys.executable, str(bot), "earlier-instance", str(state), "0.6"], capture_output=True, timeout=30)
    healthy_since = time.time()
    marker = start_hung_bot(spawner, bot, state)
    now = warnings(state)[-1]  # today's instance, still blocked: its watchdog has not ended it
    check = {"type": "heartbeat", "path": str(state / "heartbeat.json"), "max_age_seconds": 2, "crash_dir": str(state)}
    log = {"type": "log_staleness", "log_file": str(state / "bot.log"), "max_age_seconds": 30}
    settings = watching(check, verify=log, heal={"action": "kill_process", "process_pattern": marker})

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)
    [first, *others] = analysed(
        snapshot, reason="heartbeat 2.4 s old, limit 2 s", check_type="heartbeat", last_healthy_at=healthy_since
    )

    assert first.title == f"probable: event loop blocked in fetch_ohlcv at bot.py:{BLOCKING_LINE}"
    assert first.confidence >= 0.9  # the crash record and the log agree
    assert f"log: {now}" in first.evidence
    assert any(e.startswith("crash record: stuck in fetch_ohlcv") for e in first.evidence)
    assert not any("fetch_ohlcv" in h.title for h in others)  # one cause, not the same one twice


def test_the_line_the_watchdog_logs_as_it_ends_the_process_names_where_it_was_stuck(tmp_path, bot):
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run([sys.executable, str(bot), "earlier-instance", str(state), "0.6"], capture_output=True, timeout=30)
    [ending] = [line for line in read(state / "bot.log").splitlines() if "watchdog.stalled action=ending" in line]
    # Horus reads the log but was not told where the crash records go.
    settings = watching({"type": "log_staleness", "log_file": str(state / "bot.log"), "max_age_seconds": 30})

    snapshot = take_snapshot(settings, crash_evidence=None)
    [first, *_] = analysed(snapshot, reason="bot.log last written 31 s ago, limit 30 s", check_type="log_staleness")

    assert "crash" not in snapshot
    blocked = f"probable: event loop blocked in fetch_ohlcv at bot.py:{BLOCKING_LINE}"
    assert first.title == f"{blocked} (its watchdog ended it)"
    assert first.evidence[0] == f"log: {ending}"
    assert first.confidence > 0.75
    assert "LoopWatchdog" not in (first.recommendation or "")


def test_blocking_detectors_report_in_the_log_names_the_call_that_blocked_the_loop(tmp_path):
    from horus_sdk import BlockingDetector

    log = tmp_path / "bot.log"
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    sdk_logger = logging.getLogger("horus_sdk")
    sdk_logger.addHandler(handler)

    def fetch_ohlcv() -> None:
        time.sleep(0.3)  # a synchronous call in async code

    async def service() -> None:
        async with BlockingDetector(threshold=0.1) as detector:
            await asyncio.sleep(0.05)
            fetch_ohlcv()
            await asyncio.sleep(0.05)
            assert detector.reports

    try:
        asyncio.run(service())
    finally:
        sdk_logger.removeHandler(handler)
        handler.close()
    [report] = [line for line in log.read_text().splitlines() if "blocking.detected" in line]
    settings = watching({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 30})

    [first, *_] = analysed(
        take_snapshot(settings, crash_evidence=None), reason="bot.log last written 31 s ago", check_type="log_staleness"
    )

    assert first.title.startswith("probable: event loop blocked for 0.")
    assert first.title.endswith(f" s in fetch_ohlcv at test_service_said.py:{fetch_ohlcv.__code__.co_firstlineno + 1}")
    assert first.evidence == [f"log: {report}"]
    assert "time.sleep(0.3)" in (first.recommendation or "")


def test_a_crash_dir_record_that_is_not_the_services_own_is_not_used(tmp_path):
    crash_dir = tmp_path / "shared"
    crash_dir.mkdir()
    record = {
        "format": FORMAT_CRASH,
        "pid": 4121,
        "wall_time": time.time(),
        "reason": "event loop blocked for 12.0 s",
        "kind": "loop_blocked",
        "stuck": {"file": "/srv/bot.py", "line": 42, "function": "fetch_ohlcv", "code": "requests.get(url)"},
    }
    write_json_atomic(crash_dir / "horus-crash-999.json", record)  # named for another pid than it holds
    elsewhere = tmp_path / "horus-crash-4121.json"
    write_json_atomic(elsewhere, record)
    (crash_dir / "horus-crash-4121.json").symlink_to(elsewhere)  # not a regular file in the crash_dir
    check = {"type": "heartbeat", "path": str(tmp_path / "hb.json"), "max_age_seconds": 2, "crash_dir": str(crash_dir)}
    settings = watching(check)

    assert "crash" not in take_snapshot(settings, crash_evidence=None)

    write_json_atomic(crash_dir / "horus-crash-4122.json", {**record, "pid": 4122})
    assert take_snapshot(settings, crash_evidence=None)["crash"]["pid"] == 4122
    if os.geteuid() == 0:  # only root can give a file to another user
        os.chown(crash_dir / "horus-crash-4122.json", 65534, 65534)
        assert "crash" not in take_snapshot(settings, crash_evidence=None)


@pytest.mark.parametrize(
    ("said", "title"),
    [
        # The forms of the SDK's lines that no test above makes it write: no frame seen, a channel stall.
        ("watchdog.loop_blocked seconds=5.0 at=unknown", "probable: event loop blocked for 5.0 s, said its own"),
        (
            "watchdog.stalled action=ending record=/srv/bot/horus-crash-4121.json reason=channel 'orders' made no "
            "progress for 3.0 s; stuck in place_maker_order at bot.py:42; in flight: place_maker_order (31 s)",
            "probable: stuck in place_maker_order at bot.py:42 (channel 'orders' made no progress) (its watchdog",
        ),
        (
            "watchdog.stalled action=ending record=/srv/bot/horus-crash-4121.json reason=channel 'orders' made no "
            "progress for 3.0 s",
            "probable: an await that never returned (channel 'orders' made no progress, said its own watchdog)",
        ),
    ],
)
def test_every_form_of_the_watchdogs_lines_outranks_a_guess_and_never_advises_adding_it(said, title):
    line = f"2026-11-21 02:23:01,874 WARNING horus_sdk {said}"

    [first, *_] = analysed({}, reason="bot.log last written 31 s ago", check_type="log_staleness", log_tail=[line])

    assert first.title.startswith(title)
    assert first.evidence[0] == f"log: {line}"
    assert first.confidence > 0.75
    assert "LoopWatchdog" not in (first.recommendation or "")
