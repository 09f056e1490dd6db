"""No file can block the daemon: a named pipe, a huge file or a hung file blinds no other monitor, delays no
heal and never keeps Horus from stopping. Run against the real daemon, with real FIFOs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil

from horus_sdk.formats import FORMAT_HEARTBEAT, write_json_atomic
from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

MAX_AGE = 1.5


def write_config(tmp_path: Path, monitors: list[dict]) -> Path:
    config = tmp_path / "horus.json"
    defaults = {
        "start_jitter_seconds": 0,
        "startup_grace_seconds": 0,
        "min_failures_to_heal": 1,
        "interval_seconds": 0.5,
        "check_timeout_seconds": 2,
    }
    config.write_text(json.dumps({"defaults": defaults, "monitors": monitors}))
    return config


def stale_log_monitor(log: Path, marker: Path) -> dict:
    return {
        "name": "bot-log",
        "interval_seconds": 30,  # only the deadline watch can catch it in time
        "heal_cooldown_seconds": 600,
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": MAX_AGE},
        "heal": {"action": "run_script", "command": ["touch", str(marker)]},
    }


def reasons_of(events: EventLog, monitor: str) -> list[str]:
    return [e.get("reason", "") for e in events.events() if e.get("monitor") == monitor and "reason" in e]


def assert_stops_within_seconds(daemon: subprocess.Popen[bytes], seconds: float = 5.0) -> None:
    started = time.monotonic()
    assert stop_daemon(daemon, timeout=seconds) == 0
    assert time.monotonic() - started < seconds


def test_fifos_for_a_heartbeat_file_a_log_and_a_crash_record_block_nothing_and_the_stale_log_beside_them_is_healed(
    tmp_path,
):
    # Every file monitor shares the filesystem thread: one blocked open would blind them all.
    os.mkfifo(tmp_path / "heartbeat.json")
    os.mkfifo(tmp_path / "other.log")
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    os.mkfifo(crash_dir / "horus-crash-4242.json")
    stale = tmp_path / "stale.json"
    write_json_atomic(stale, {"format": FORMAT_HEARTBEAT, "pid": 4242, "wall_time": time.time() - 60, "monotonic": 0})
    log, marker = tmp_path / "bot.log", tmp_path / "healed"
    log.write_text("working\n")
    written_at = time.time()
    config = write_config(
        tmp_path,
        [
            {
                # A heartbeat file that is a pipe is not the SDK's: a probe error, never a reason to heal.
                "name": "hb-fifo",
                "check": {"type": "heartbeat", "path": str(tmp_path / "heartbeat.json"), "max_age_seconds": 5},
                "heal": {"action": "run_script", "command": ["true"]},
            },
            {
                # A stale heartbeat is healed, and its heal reads the FIFO crash record as evidence.
                "name": "hb-stale",
                "check": {"type": "heartbeat", "path": str(stale), "max_age_seconds": 5, "crash_dir": str(crash_dir)},
                "heal": {"action": "run_script", "command": ["true"]},
            },
            {
                "name": "log-fifo",
                "check": {"type": "log_staleness", "log_file": str(tmp_path / "other.log"), "max_age_seconds": 5},
            },
            stale_log_monitor(log, marker),
        ],
    )
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(marker.exists, timeout=15)
        healed_after = time.time() - written_at
        # The stale heartbeat's heal reads the FIFO crash record as evidence: it must finish, not hang.
        wait_until_sync(lambda: any(e.get("monitor") == "hb-stale" for e in events.named("heal.finished")), timeout=10)
        wait_until_sync(lambda: any("named pipe" in r for r in reasons_of(events, "log-fifo")), timeout=10)
    finally:
        assert_stops_within_seconds(daemon)
    assert healed_after < MAX_AGE + 1.5, f"healed {healed_after:.2f} s after the last write"
    everything = " ".join(r for name in ("hb-fifo", "log-fifo", "bot-log") for r in reasons_of(events, name))
    assert "not answering" not in everything
    hb = reasons_of(events, "hb-fifo")
    assert any(f"{tmp_path / 'heartbeat.json'}: a named pipe, not a regular file" in r for r in hb), hb
    assert not events.named("check.crashed")
    assert not any(e.get("monitor") == "hb-fifo" for e in events.named("heal.started")), "a pipe is no reason to heal"


def test_sigterm_ends_the_daemon_within_seconds_while_a_heartbeat_file_and_a_crash_record_are_fifos(tmp_path):
    os.mkfifo(tmp_path / "heartbeat.json")
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    os.mkfifo(crash_dir / "horus-crash-4242.json")
    stale = tmp_path / "stale.json"
    write_json_atomic(stale, {"format": FORMAT_HEARTBEAT, "pid": 4242, "wall_time": time.time() - 60, "monotonic": 0})
    config = write_config(
        tmp_path,
        [
            {
                "name": "hb",
                "check": {"type": "heartbeat", "path": str(tmp_path / "heartbeat.json"), "max_age_seconds": 5},
            },
            {
                "name": "hb-crashed",
                # A heal gathers the crash record as evidence, off the event loop: the pipe must not hold it.
                "check": {"type": "heartbeat", "path": str(stale), "max_age_seconds": 5, "crash_dir": str(crash_dir)},
                "heal": {"action": "run_script", "command": ["true"]},
            },
        ],
    )
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: any(e.get("monitor") == "hb" for e in events.events()), timeout=15)
        wait_until_sync(lambda: any(e.get("monitor") == "hb-crashed" for e in events.named("heal.started")), timeout=15)
        time.sleep(0.5)  # a look or two more at the pipes
    finally:
        assert_stops_within_seconds(daemon)
    assert events.named("horus.stopped")


def test_a_huge_heartbeat_file_is_refused_unread_and_costs_horus_no_memory(tmp_path):
    huge = tmp_path / "heartbeat.json"
    with open(huge, "wb") as f:
        f.write(b'{"format": "' + FORMAT_HEARTBEAT.encode() + b'", "pad": "')
        f.truncate(256 * 1024 * 1024)  # sparse: costs the disk nothing, but a reader would hold all of it
    config = write_config(
        tmp_path,
        [
            {
                "name": "huge",
                "interval_seconds": 0.2,
                "check": {"type": "heartbeat", "path": str(huge), "max_age_seconds": 5},
            },
        ],
    )
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: len(reasons_of(events, "huge")) >= 1, timeout=15)
        time.sleep(1.0)  # several looks: the file must not be read on any of them
        rss = psutil.Process(daemon.pid).memory_info().rss
    finally:
        assert_stops_within_seconds(daemon)
    assert rss < 200 * 1024 * 1024, f"resident {rss / 2**20:.0f} MiB"
    reasons = reasons_of(events, "huge")
    assert any("256 MiB" in r and "larger than" in r for r in reasons), reasons
