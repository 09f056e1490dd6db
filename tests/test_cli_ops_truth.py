"""`horus resume` and `horus digest` tell the operator the truth about the daemon's state."""

from __future__ import annotations

import re
import subprocess

from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync
from tests.test_cli import write_config

HORUS = HORUS_RUN[:-1]  # python -m horus


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HORUS, *args], capture_output=True, text=True, timeout=60)


def test_resume_of_a_monitor_that_is_not_quarantined_says_so_and_an_unknown_name_exits_2(tmp_path):
    config = write_config(tmp_path, [{"name": "svc", "check": {"type": "file_exists", "path": str(tmp_path)}}])
    state = tmp_path / "state"
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, events.path)
    try:
        wait_until_sync(lambda: events.named("horus.started"), timeout=20)
        resumed = horus("resume", "-c", str(config), "--state-dir", str(state), "svc")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "svc is not quarantined; nothing to resume"
        assert "lifted" not in resumed.stdout
        unknown = horus("resume", "-c", str(config), "--state-dir", str(state), "nope")
        assert unknown.returncode == 2
        assert "no monitor named 'nope'" in unknown.stderr
        assert "Traceback" not in unknown.stderr
    finally:
        stop_daemon(daemon)
    assert not events.named("monitor.resumed"), "nothing was asked of the daemon"


def test_resume_without_any_state_says_nothing_is_quarantined_and_writes_nothing(tmp_path):
    config = write_config(tmp_path, [{"name": "svc", "check": {"type": "file_exists", "path": str(tmp_path)}}])
    resumed = horus("resume", "-c", str(config), "--state-dir", str(tmp_path / "state"), "svc")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "svc is not quarantined; nothing to resume"
    assert not (tmp_path / "state").exists()


def test_digest_says_first_that_the_daemon_is_not_running_and_since_when_the_state_is(tmp_path):
    config = write_config(tmp_path, [{"name": "svc", "check": {"type": "file_exists", "path": str(tmp_path)}}])
    state = tmp_path / "state"
    never = horus("digest", "-c", str(config), "--state-dir", str(state))
    assert never.stdout.splitlines()[0] == "Horus has never run with this state dir; nothing below is observed."

    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, events.path)
    try:
        wait_until_sync(lambda: (state / "status.json").exists() and events.named("horus.started"), timeout=20)
        running = horus("digest", "-c", str(config), "--state-dir", str(state))
        assert running.returncode == 0, running.stderr
        assert running.stdout.startswith("Horus digest for "), "a live daemon's digest has no warning line"
    finally:
        assert stop_daemon(daemon) == 0

    stale = horus("digest", "-c", str(config), "--state-dir", str(state))
    assert stale.returncode == 0, stale.stderr
    first, *rest = stale.stdout.splitlines()
    assert re.fullmatch(
        r"Horus is not running: this is the state as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(.+ ago\)\.", first
    ), first
    assert any(line.startswith("Horus digest for ") for line in rest)
