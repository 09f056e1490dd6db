"""Restarts Horus did not cause are seen: a bot its own SDK watchdog keeps ending under a shell restart loop,
and a service crash-looping twice a second. Both become a restart storm: an incident, a notification-worthy
event and a line in ``horus status``, and no heal (the loop restarts it already)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

BOT = Path(__file__).parents[1] / "examples" / "sdk" / "bot.py"
HORUS = [sys.executable, "-m", "horus"]


def restart_loop(command: str, log: Path) -> subprocess.Popen[bytes]:
    """``while true; do COMMAND; done`` in its own session, as a user's supervisor would run it."""
    return subprocess.Popen(
        ["sh", "-c", f"while true; do {command} >> {log} 2>&1; sleep 0.1; done"],
        start_new_session=True,
    )


def end(loop: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(loop.pid, signal.SIGKILL)
    loop.wait(timeout=10)


def status_json(config: Path, state: Path) -> dict:
    shown = subprocess.run(
        [*HORUS, "status", "-c", str(config), "--state-dir", str(state), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(shown.stdout)


@pytest.mark.slow
def test_a_bot_its_own_watchdog_keeps_ending_is_a_restart_storm_with_its_crash_records(tmp_path):
    state = tmp_path / "bot"
    heals = tmp_path / "heals.txt"
    loop = restart_loop(f"{sys.executable} {BOT} --state {state} --hang-orders --kill-after 0.5", tmp_path / "bot.log")
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    {
                        "name": "bot",
                        "interval_seconds": 0.5,
                        "restart_limit": {"count": 4, "within_seconds": 120},
                        # A heartbeat this lenient never goes stale between two restarts: only the restarts
                        # tell that the bot is not working.
                        "check": {
                            "type": "heartbeat",
                            "path": str(state / "heartbeat.json"),
                            "max_age_seconds": 60,
                            "crash_dir": str(state),
                        },
                        "heal": {"action": "run_script", "command": f"echo healed >> {heals}", "shell": True},
                    }
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "horus", log.path)
    try:
        wait_until_sync(lambda: log.named("monitor.restart_storm"), timeout=60)
        [storm] = log.named("monitor.restart_storm")
        assert storm["reason"].startswith("restart storm: restarted ")
        assert log.named("monitor.restarted"), "each restart is logged on its own"
        wait_until_sync(lambda: log.named("incident.opened"), timeout=30)
        wait_until_sync(
            lambda: (
                (row := status_json(config, tmp_path / "horus")["monitors"][0])["restart_storm"]
                and row["status"] == "unhealthy"
            ),
            timeout=20,
        )
        row = status_json(config, tmp_path / "horus")["monitors"][0]
        assert row["reason"].startswith("restart storm")
        shown = subprocess.run(
            [*HORUS, "status", "-c", str(config), "--state-dir", str(tmp_path / "horus")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 1, "a restart storm is a failing monitor"
        assert "unhealthy (restart storm)" in shown.stdout
        assert not heals.exists(), "Horus does not restart a service its own loop keeps restarting"
        incident = subprocess.run(
            [*HORUS, "incident", "-c", str(config), "--state-dir", str(tmp_path / "horus"), "1", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert incident.returncode == 0, incident.stderr
        assert "horus-crash-" in incident.stdout, "the crash records are the incident's evidence"
    finally:
        end(loop)
        assert stop_daemon(daemon) == 0


@pytest.mark.slow
def test_a_service_crash_looping_twice_a_second_under_a_shell_loop_is_seen(tmp_path):
    marker = f"crashy-{os.getpid()}"
    loop = restart_loop(
        f"{sys.executable} -c 'import time, sys; time.sleep(0.4); sys.exit(3)' {marker}", tmp_path / "svc.log"
    )
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    {
                        "name": "svc",
                        "interval_seconds": 0.5,
                        "restart_limit": {"count": 5, "within_seconds": 60},
                        "check": {"type": "process_alive", "process_pattern": marker},
                    }
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "horus", log.path)
    try:
        wait_until_sync(lambda: log.named("monitor.restart_storm"), timeout=60)
        wait_until_sync(lambda: log.named("check.failed"), timeout=20)
    finally:
        end(loop)
        assert stop_daemon(daemon) == 0
