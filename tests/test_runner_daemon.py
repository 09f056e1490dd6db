"""The daemon follows a service's runner: a real `horus run` with a monitor whose runner state dir this test writes
runner.json into (atomically, as the runner does) about real processes, and answers requests as the runner would."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from horus.config.loader import parse_config
from horus.engine.runner_watch import RunnerWatch
from horus.notify.events import Severity
from horus.sentinel.snapshot import describe_process_state, take_snapshot
from horus_sdk.formats import write_json_atomic
from horus_sdk.runner_files import FORMAT_RESULT, RunnerPaths, read_request
from tests.checks.test_runner_check import instance, sleeper, write_runner
from tests.support import (
    EventLog,
    config_with_a_phone,
    notifications_sent,
    spawn_daemon,
    stop_daemon,
    wait_until_sync,
)

pytestmark = pytest.mark.slow


def reload_entry(reload_id: str, outcome: str, *, finished_ago: float = 0.0, **fields: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "id": reload_id,
        "trigger": "watch",
        "requested_by": "watch",
        "from_version": "aaaaaaaaaaaaaaaa",
        "to_version": "bbbbbbbbbbbbbbbb",
        "from_epoch": 11,
        "to_epoch": 12 if outcome == "done" else None,
        "started_at": now - finished_ago - 1,
        "finished_at": now - finished_ago,
        "outcome": outcome,
        "stage": "preflight" if outcome == "failed" else "probation",
        "reason": "",
        **fields,
    }


def write_config(tmp_path: Path, runner_dir: Path, **monitor: Any) -> Path:
    bot = {"name": "bot", "interval_seconds": 0.3, "runner": str(runner_dir), "check": {"type": "runner"}}
    return config_with_a_phone(tmp_path, [{**bot, **monitor}], group_seconds=0.2)


def test_a_failed_reload_is_notified_once_across_a_horus_restart_and_a_dead_active_instance_fails_the_check(
    tmp_path, procs
):
    runner_dir = tmp_path / "runner"
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    old = reload_entry("old1", "failed", finished_ago=3600, reason="old news from yesterday")
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[old])
    config = write_config(tmp_path, runner_dir)
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("horus.started"), timeout=20)
        failed = reload_entry("new1", "failed", reason="SyntaxError in bot.py line 3")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[old, failed])
        wait_until_sync(lambda: "SyntaxError in bot.py line 3" in notifications_sent(tmp_path), timeout=20)
        assert "reload to version bbbbbbbbbbbb failed at preflight" in notifications_sent(tmp_path)
        # What the runner did, not a fact of the bot's trading: a channel can take or leave each on its own.
        sent = notifications_sent(tmp_path)
        assert '"runner_alert"' in sent and '"trading_alert"' not in sent, sent

        # Horus restarts: what runner.json held when it started is not news, the next reload is.
        assert stop_daemon(daemon) == 0
        daemon = spawn_daemon(config, tmp_path / "state", log.path)
        wait_until_sync(lambda: len(log.named("horus.started")) == 2, timeout=20)
        rolled_back = reload_entry("new2", "rolled_back", reason="it tripped within its probation")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[old, failed, rolled_back])
        wait_until_sync(lambda: "it tripped within its probation" in notifications_sent(tmp_path), timeout=20)
        assert notifications_sent(tmp_path).count("SyntaxError in bot.py line 3") == 1
        assert "old news from yesterday" not in notifications_sent(tmp_path)
        assert [e["alert"] for e in log.named("monitor.alert")] == ["reload_failed", "reload_rolled_back"]

        # The active instance dies: the check names it, by its exact pid.
        active.kill()
        active.wait(timeout=10)
        gone = f"the active instance (pid {active.pid}, version 3f2a1b0c9d8e, epoch 12) is gone"
        wait_until_sync(lambda: [e for e in log.named("check.failed") if gone in e["reason"]], timeout=20)
    finally:
        stop_daemon(daemon)


class AnsweringRunner(threading.Thread):
    """Answers a restart request as the runner would: a new instance becomes active, then the result is written."""

    def __init__(self, runner_dir: Path, runner_pid: int, procs: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.paths = RunnerPaths.of(runner_dir)
        self.runner_pid, self.procs = runner_pid, procs
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            for path in sorted(self.paths.requests.glob("*.json")) if self.paths.requests.is_dir() else []:
                request = read_request(path)
                path.unlink()
                self.requests.append(request)
                fresh = sleeper()
                self.procs.append(fresh)
                # A reload tried meanwhile, which failed: news for the open incident's timeline.
                failed = reload_entry("during", "failed", reason="the config check found no api key")
                write_runner(
                    self.paths.root, runner_pid=self.runner_pid, active=instance(fresh, epoch=13), reloads=[failed]
                )
                self.paths.results.mkdir(mode=0o700, exist_ok=True)
                result = {"format": FORMAT_RESULT, "id": request["id"], "op": "restart", "outcome": "done"}
                write_json_atomic(self.paths.result(request["id"]), result)


def test_the_runner_restart_heal_asks_the_runner_and_succeeds_on_its_answer(tmp_path, procs):
    runner_dir = tmp_path / "runner"
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active))
    active.kill()
    active.wait(timeout=10)
    answering = AnsweringRunner(runner_dir, runner.pid, procs)
    answering.start()
    config = write_config(
        tmp_path,
        runner_dir,
        min_failures_to_heal=1,
        startup_grace_seconds=0,
        confirm_recovery_seconds=0.5,
        heal={"action": "runner_restart", "timeout_seconds": 20},
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("heal.finished"), timeout=30)
        [finished] = log.named("heal.finished")
        assert finished["action"] == "runner_restart"
        assert finished["outcome"] == "ok", finished
        assert f"the runner (pid {runner.pid}) restarted the instance" in finished["summary"]
        [request] = answering.requests
        assert request["op"] == "restart" and request["requested_by"] == "horus heal bot"
        assert "is gone" in request["reason"]
        wait_until_sync(lambda: log.named("monitor.recovered"), timeout=30)
        wait_until_sync(lambda: log.named("monitor.alert"), timeout=20)
        incident = subprocess.run(
            [sys.executable, "-m", "horus", "incident", "1", "-c", str(config), "--state-dir", str(tmp_path / "state")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            "reload to version bbbbbbbbbbbb failed at preflight: the config check found no api key" in incident.stdout
        )
    finally:
        stop_daemon(daemon)
        answering.stopping.set()
        answering.join(timeout=10)


# -- what the daemon compares, one runner.json after another ------------------------------------------------


def state(**fields: Any) -> dict[str, Any]:
    return {"state": "running", "restarts": 0, "reloads": [], **fields}


def test_what_was_there_before_the_daemon_started_is_not_news_but_a_later_outcome_is():
    watch = RunnerWatch(Path("/nowhere"), since_wall=time.time())
    pending = reload_entry("r2", "failed", finished_ago=-1)
    pending["outcome"] = None
    assert watch.compare(state(reloads=[reload_entry("r1", "failed", finished_ago=60), pending])) == []
    [news] = watch.compare(
        state(reloads=[reload_entry("r1", "failed", finished_ago=60), {**pending, "outcome": "done", "to_epoch": 12}])
    )
    assert (news.kind, news.severity) == ("reload_done", Severity.INFO)
    assert news.message.startswith("reloaded version aaaaaaaaaaaa → version bbbbbbbbbbbb, epoch 11 → 12")
    assert watch.compare(state(reloads=[{**pending, "outcome": "done", "to_epoch": 12}])) == []


def test_a_crash_restart_is_a_warning_and_giving_up_is_critical():
    watch = RunnerWatch(Path("/nowhere"), since_wall=time.time())
    assert watch.compare(state(restarts=2)) == []  # the first look only learns the count
    [restart] = watch.compare(state(restarts=3, last_exit={"pid": 4121, "code": 1}))
    assert (restart.kind, restart.severity) == ("runner_restart", Severity.WARNING)
    assert "(pid 4121) exited with code 1" in restart.message
    [gave_up] = watch.compare(state(restarts=3, state="gave_up", state_reason="5 crashes within 60 s"))
    assert (gave_up.kind, gave_up.severity) == ("runner_gave_up", Severity.CRITICAL)
    assert "gave up restarting the instance: 5 crashes within 60 s" in gave_up.message
    assert watch.compare(state(restarts=3, state="gave_up")) == []
    assert watch.compare(state(restarts=0)) == [], "a new runner counts from zero"


def test_an_unreadable_runner_json_is_logged_once_and_never_raised(tmp_path):
    watch = RunnerWatch(tmp_path / "missing", since_wall=time.time())
    with structlog.testing.capture_logs() as logs:
        assert watch.read("bot") == [] and watch.read("bot") == []
    assert [e["event"] for e in logs] == ["runner.unreadable"]
    assert "runner.json" in logs[0]["error"]


# -- the snapshot -----------------------------------------------------------------------------------------


def test_the_snapshot_of_a_runner_monitor_holds_the_runner_and_describes_its_active_instance_by_its_exact_pid(
    tmp_path, procs
):
    runner_dir = tmp_path / "runner"
    runner, active, standby = sleeper(), sleeper(), sleeper()
    procs += [runner, active, standby]
    reloads = [reload_entry(f"r{i}", "done", finished_ago=100 - i) for i in range(7)]
    write_runner(
        runner_dir,
        runner_pid=runner.pid,
        active=instance(active),
        standby=instance(standby, version="cccccccccccc", epoch=None, trading_since=None),
        previous_version="aaaaaaaaaaaaaaaa",
        reloads=reloads,
    )
    config = parse_config(
        json.dumps(
            {
                "monitors": [
                    {
                        "name": "bot",
                        "runner": str(runner_dir),
                        "check": {"type": "trading", "control_dir": str(tmp_path)},
                    }
                ]
            }
        ),
        suffix=".json",
    )
    [settings] = config.monitor_settings()
    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)
    [entry] = snapshot["runner"]
    assert entry["pid"] == runner.pid and entry["running"] is True and entry["state"] == "running"
    assert entry["active"]["pid"] == active.pid and entry["active"]["alive"] is True
    assert (entry["active"]["version"], entry["active"]["epoch"]) == ("3f2a1b0c9d8e7f", 12)
    assert entry["standby"]["pid"] == standby.pid
    assert entry["previous_version"] == "aaaaaaaaaaaaaaaa"
    assert [r["id"] for r in entry["reloads"]] == ["r2", "r3", "r4", "r5", "r6"]
    first, second = snapshot["processes"][:2]
    assert (first["runner"], first["pid"], first["running"]) == ("active", active.pid, True)
    assert first["matches"][0]["pid"] == active.pid and "time.sleep(600)" in first["matches"][0]["cmdline"]
    assert (second["runner"], second["pid"]) == ("standby", standby.pid)
    assert describe_process_state(snapshot).startswith(f"Running (pid {active.pid}")

    active.kill()
    active.wait(timeout=10)
    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)
    assert snapshot["runner"][0]["active"]["alive"] is False
    assert snapshot["processes"][0] == {
        "runner": "active",
        "runner_dir": str(runner_dir),
        "pid": active.pid,
        "running": False,
        "count": 0,
        "matches": [],
    }
