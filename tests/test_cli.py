"""The command line, run as a user runs it: a real `horus` process, real files, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync


def horus(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60, **kwargs)


def write_config(tmp_path: Path, monitors: list[dict]) -> Path:
    path = tmp_path / "horus.json"
    path.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": monitors}))
    return path


def test_check_prints_a_table_and_exits_1_when_a_monitor_is_unhealthy(tmp_path):
    (tmp_path / "present").write_text("x")
    config = write_config(
        tmp_path,
        [
            {"name": "here", "check": {"type": "file_exists", "path": str(tmp_path / "present")}},
            {"name": "gone", "check": {"type": "file_exists", "path": str(tmp_path / "absent")}},
        ],
    )
    proc = horus("check", "-c", str(config))
    assert proc.returncode == 1
    header, here, gone = proc.stdout.splitlines()
    assert header.split() == ["MONITOR", "CHECK", "STATUS", "LATENCY", "REASON"]
    assert here.split()[:3] == ["here", "file_exists", "HEALTHY"]
    assert gone.split()[:3] == ["gone", "file_exists", "UNHEALTHY"]
    assert "absent does not exist" in gone


def test_check_exits_0_when_everything_is_healthy_and_json_lists_every_monitor(tmp_path):
    (tmp_path / "present").write_text("x")
    config = write_config(
        tmp_path,
        [
            {"name": "here", "check": {"type": "file_exists", "path": str(tmp_path / "present")}},
            {"name": "off", "enabled": False, "check": {"type": "file_exists", "path": str(tmp_path / "absent")}},
        ],
    )
    proc = horus("check", "-c", str(config), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {row["monitor"]: row for row in json.loads(proc.stdout)}
    assert rows["here"]["status"] == "healthy"
    assert rows["off"]["status"] == "disabled"


def test_check_never_writes_state(tmp_path):
    config = write_config(
        tmp_path, [{"name": "gone", "check": {"type": "file_exists", "path": str(tmp_path / "absent")}}]
    )
    horus("check", "-c", str(config), env={**os.environ, "HORUS_STATE_DIR": str(tmp_path / "state")})
    assert not (tmp_path / "state").exists()


def test_run_refuses_an_invalid_config_with_exit_2_and_starts_nothing(tmp_path):
    config = write_config(tmp_path, [{"name": "x", "check": {"type": "port_open", "port": 70000}}])
    proc = horus("run", "-c", str(config), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2
    assert "monitors[0] (x).check.port" in proc.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_sigterm_and_sigint(tmp_path, signum):
    config = write_config(tmp_path, [{"name": "x", "check": {"type": "file_exists", "path": str(tmp_path)}}])
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: events.named("horus.started"), timeout=20)
        daemon.send_signal(signum)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    assert events.named("horus.stopped")
    assert all("timestamp" in e and "level" in e for e in events.events()), "every line is a JSON event"


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(tmp_path):
    config = write_config(tmp_path, [{"name": "x", "check": {"type": "file_exists", "path": str(tmp_path)}}])
    events = EventLog(tmp_path / "events.jsonl")
    first = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: events.named("horus.started"), timeout=20)
        second = horus("run", "-c", str(config), "--state-dir", str(tmp_path / "state"))
        assert second.returncode == 1
        assert f"in use by Horus pid {first.pid}" in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=10)


def test_after_kill_9_a_restarted_daemon_never_heals_again_inside_the_cooldown(tmp_path):
    heals = tmp_path / "heals.txt"
    config = write_config(
        tmp_path,
        [
            {
                "name": "svc",
                "interval_seconds": 0.1,
                "min_failures_to_heal": 1,
                "heal_cooldown_seconds": 600,
                "startup_grace_seconds": 0,
                "check": {"type": "file_exists", "path": str(tmp_path / "never")},
                "heal": {"action": "run_script", "command": f"echo healed >> {heals}", "shell": True},
            }
        ],
    )
    events = EventLog(tmp_path / "events.jsonl")
    first = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: heals.exists(), timeout=20)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    events_again = EventLog(tmp_path / "events-2.jsonl")
    second = spawn_daemon(config, tmp_path / "state", events_again.path)
    try:
        wait_until_sync(lambda: len(events_again.named("check.failed")) >= 10, timeout=20)
    finally:
        second.terminate()
        second.wait(timeout=10)
    assert heals.read_text().splitlines() == ["healed"]
    assert events_again.named("heal.suppressed"), "the restarted daemon says why it is not healing"
    assert not events_again.named("heal.started")


def test_version_and_help_work():
    assert horus("--version").stdout.startswith("horus, version")
    help_text = horus("--help").stdout
    for command in ("run", "check", "validate", "schema"):
        assert command in help_text


def test_the_cli_prints_no_python_traceback_for_a_missing_config(tmp_path):
    proc = horus("validate", "-c", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_types_lists_every_registered_check_and_heal_and_explains_one():
    from horus.checks.registry import CHECK_TYPES
    from horus.heals.registry import HEAL_ACTIONS

    listing = horus("types").stdout
    for name in [*CHECK_TYPES, *HEAL_ACTIONS]:
        assert f"  {name} " in listing
    explained = horus("types", "kill_process").stdout
    assert "What it never does" in explained
    assert "max_matches: integer (default 1)" in explained
    assert "process_pattern: string (required)" in explained
    unknown = horus("types", "teleport")
    assert unknown.returncode == 2
    assert "unknown type or action 'teleport'" in unknown.stderr


def test_run_writes_its_engine_statistics_when_asked_and_stopped(tmp_path):
    (tmp_path / "present").write_text("x")
    config = write_config(
        tmp_path,
        [{"name": "x", "interval_seconds": 0.1, "check": {"type": "file_exists", "path": str(tmp_path / "present")}}],
    )
    stats_file = tmp_path / "stats.json"
    daemon = spawn_daemon(
        config, tmp_path / "state", tmp_path / "events.jsonl", "--stats-file", str(stats_file), "--log-level", "debug"
    )
    events = EventLog(tmp_path / "events.jsonl")
    try:
        wait_until_sync(lambda: len(events.named("check.ok")) >= 5, timeout=20)
        assert stop_daemon(daemon, timeout=10) == 0
    finally:
        daemon.kill()
    stats = json.loads(stats_file.read_text())
    assert stats["checks"] >= 5
    assert stats["statuses"]["healthy"] == stats["checks"]
    assert stats["lateness_seconds"]["samples"] == stats["checks"] - 1, "the first check has no schedule to miss"
    assert 0 <= stats["lateness_seconds"]["p99"] < 1
