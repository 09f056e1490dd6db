"""SIGHUP reloads the config without a restart; `horus status` shows what the running daemon knows."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = HORUS_RUN[:-1]  # python -m horus


def file_monitor(name: str, path, interval: float = 0.2) -> dict:
    return {"name": name, "interval_seconds": interval, "check": {"type": "file_exists", "path": str(path)}}


def write_config(path, monitors, **extra) -> None:
    path.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": monitors, **extra}))


def checked(log: EventLog, name: str) -> int:
    return sum(1 for e in log.events() if e.get("monitor") == name and e.get("event") in ("check.ok", "check.failed"))


@pytest.mark.slow
def test_sighup_adds_removes_and_changes_monitors_and_a_bad_config_keeps_the_old_one_running(tmp_path):
    present = tmp_path / "present"
    present.touch()
    config = tmp_path / "horus.json"
    write_config(config, [file_monitor("kept", present), file_monitor("dropped", present)])
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path, "--log-level", "debug")
    try:
        wait_until_sync(lambda: checked(log, "kept") and checked(log, "dropped"), timeout=15)

        write_config(
            config,
            [file_monitor("kept", tmp_path / "missing"), file_monitor("added", present)],
        )
        daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: log.named("config.reloaded"), timeout=15)
        [reloaded] = log.named("config.reloaded")
        assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["added"], ["dropped"], ["kept"])
        wait_until_sync(lambda: checked(log, "added") >= 2, timeout=15)
        # The changed monitor runs with its new check: the file it looks for now is missing.
        wait_until_sync(lambda: any(e.get("monitor") == "kept" for e in log.named("check.failed")), timeout=15)
        dropped_checks = checked(log, "dropped")
        wait_until_sync(lambda: checked(log, "added") >= 6, timeout=15)
        assert checked(log, "dropped") == dropped_checks, "a removed monitor is no longer checked"

        config.write_text('{"monitors": [{"name": "x", "check": {"type": "nope"}}]}')
        daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: log.named("config.reload_rejected"), timeout=15)
        [rejected] = log.named("config.reload_rejected")
        assert any("unknown check type 'nope'" in error for error in rejected["errors"])
        before = checked(log, "added")
        wait_until_sync(lambda: checked(log, "added") > before + 2, timeout=15)
        assert daemon.poll() is None
    finally:
        assert stop_daemon(daemon, timeout=15) == 0


@pytest.mark.slow
def test_status_shows_each_monitor_and_whether_the_daemon_runs(tmp_path):
    present = tmp_path / "present"
    present.touch()
    config = tmp_path / "horus.json"
    write_config(
        config,
        [
            file_monitor("fine", present),
            {**file_monitor("broken", tmp_path / "missing"), "min_failures_to_heal": 3},
        ],
    )
    state = tmp_path / "state"
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path)

    def status(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HORUS, "status", "-c", str(config), "--state-dir", str(state), *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        # The status is written from the daemon's first second; its monitors' first looks come in soon after.
        def failures_now() -> dict[str, int]:
            shown = json.loads(status("--json").stdout)
            return {m["name"]: m["consecutive_failures"] for m in shown.get("monitors", [])}

        wait_until_sync(lambda: failures_now().get("broken", 0) >= 3, timeout=30, interval=0.5)
        shown = status()
        assert shown.returncode == 1, "a monitor is failing"
        lines = shown.stdout.splitlines()
        assert lines[0].startswith(f"Horus: running (pid {daemon.pid}, started ")
        [fine] = [line for line in lines if line.startswith("fine ")]
        [broken] = [line for line in lines if line.startswith("broken ")]
        assert "healthy" in fine and "0/2" in fine
        # The count goes on rising between two reads: the line shows at least the threshold.
        shown_failures = re.search(r"\b(\d+)/3\b", broken)
        assert shown_failures is not None and int(shown_failures.group(1)) >= 3
        assert "unhealthy" in broken and "missing" in broken
        as_json = json.loads(status("--json").stdout)
        assert {m["name"]: m["status"] for m in as_json["monitors"]} == {"fine": "healthy", "broken": "unhealthy"}
    finally:
        assert stop_daemon(daemon, timeout=15) == 0
    stopped = status()
    assert stopped.stdout.startswith("Horus: not running (last status ")
    assert stopped.returncode == 1
