"""The runner check's verdicts, from runner.json files written as the runner writes them, about real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from horus.checks.base import ProbeContext, Status
from horus.checks.runner import RunnerCheck, RunnerOptions
from horus.clock import SystemClock
from horus_sdk.formats import write_json_atomic
from horus_sdk.runner_files import FORMAT_RUNNER, RunnerPaths, process_start_token


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def instance(proc: subprocess.Popen[bytes] | int, *, version: str = "3f2a1b0c9d8e7f", epoch: int = 12, **fields: Any):
    pid = proc if isinstance(proc, int) else proc.pid
    now = time.time()
    return {
        "pid": pid,
        "process_start": process_start_token(pid) or "gone",
        "version": version,
        "epoch": epoch,
        "started_at": now - 30,
        "trading_since": now - 20,
        **fields,
    }


def write_runner(state_dir: Path, *, runner_pid: int, **fields: Any) -> dict[str, Any]:
    """runner.json as the runner writes it: atomically, in a 0o700 dir."""
    state_dir.mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    data = {
        "format": FORMAT_RUNNER,
        "name": "bot",
        "pid": runner_pid,
        "process_start": process_start_token(runner_pid),
        "started_at": now - 60,
        "updated_at": now,
        "state": "running",
        "state_reason": "",
        "active": None,
        "standby": None,
        "previous_version": None,
        "restarts": 0,
        "last_exit": None,
        "reloads": [],
        **fields,
    }
    write_json_atomic(RunnerPaths.of(state_dir).state, data)
    return data


def probe(state_dir: Path, **options: Any):
    check = RunnerCheck(RunnerOptions(type="runner", dir=state_dir, **options))
    return check.probe_inline(ProbeContext(clock=SystemClock(), http=None))  # type: ignore[arg-type]


def test_a_live_runner_with_a_trading_active_instance_is_healthy_and_says_who(tmp_path, procs):
    active, standby = sleeper(), sleeper()
    procs += [active, standby]
    reload = {"id": "r1", "outcome": "done", "from_version": "aaa", "to_version": "3f2a1b0c9d8e7f"}
    write_runner(
        tmp_path / "run",
        runner_pid=os.getpid(),
        active=instance(active),
        standby=instance(standby, version="bbbb", epoch=None, trading_since=None),
        previous_version="aaa",
        reloads=[reload],
    )
    result = probe(tmp_path / "run")
    assert result.status is Status.HEALTHY, result.reason
    assert f"pid {active.pid}, version 3f2a1b0c9d8e, epoch 12 is trading" in result.reason
    assert f"standby pid {standby.pid}" in result.reason
    assert result.details["runner_pid"] == os.getpid()
    assert result.details["active"]["pid"] == active.pid
    assert result.details["standby"]["pid"] == standby.pid
    assert result.details["epoch"] == 12
    assert result.details["previous_version"] == "aaa"
    assert result.details["last_reload"]["id"] == "r1"
    assert "pids" not in result.details, "a reload's new pid is not a restart Horus should count"


def test_an_active_instance_that_died_makes_the_check_unhealthy(tmp_path, procs):
    active = sleeper()
    procs.append(active)
    write_runner(tmp_path / "run", runner_pid=os.getpid(), active=instance(active))
    assert probe(tmp_path / "run").is_healthy
    active.kill()
    active.wait(timeout=10)
    result = probe(tmp_path / "run")
    assert result.status is Status.UNHEALTHY
    assert f"the active instance (pid {active.pid}, version 3f2a1b0c9d8e, epoch 12) is gone" in result.reason


def test_a_pid_that_now_belongs_to_another_process_is_not_the_runner(tmp_path, procs):
    active = sleeper()
    procs.append(active)
    # Our own pid, with another process's start time: what a reused pid looks like.
    data = write_runner(tmp_path / "run", runner_pid=os.getpid(), active=instance(active))
    data["process_start"] = str(int(data["process_start"]) + 1)
    write_json_atomic(RunnerPaths.of(tmp_path / "run").state, data)
    result = probe(tmp_path / "run")
    assert result.status is Status.UNHEALTHY
    assert f"the runner (pid {os.getpid()}) is gone" in result.reason


def test_a_runner_that_gave_up_says_why_and_how_the_last_instance_ended(tmp_path):
    write_runner(
        tmp_path / "run",
        runner_pid=os.getpid(),
        state="gave_up",
        state_reason="5 crashes within 60 s",
        last_exit={"pid": 4121, "code": 3},
    )
    result = probe(tmp_path / "run")
    assert result.status is Status.UNHEALTHY
    assert "has no active instance: state gave_up (5 crashes within 60 s)" in result.reason
    assert "(pid 4121) exited with code 3" in result.reason


def test_missing_or_untrusted_runner_json_is_unhealthy_with_the_reason(tmp_path):
    result = probe(tmp_path / "run")
    assert result.status is Status.UNHEALTHY
    assert "no runner.json" in result.reason
    write_runner(tmp_path / "run", runner_pid=os.getpid())
    os.chmod(RunnerPaths.of(tmp_path / "run").state, 0o666)
    result = probe(tmp_path / "run")
    assert result.status is Status.UNHEALTHY
    assert "others may write it" in result.reason


def test_an_instance_not_trading_yet_is_unknown_until_its_limit_then_unhealthy(tmp_path, procs):
    active = sleeper()
    procs.append(active)
    write_runner(tmp_path / "run", runner_pid=os.getpid(), active=instance(active, trading_since=None))
    assert probe(tmp_path / "run").status is Status.UNKNOWN
    result = probe(tmp_path / "run", trading_within_seconds=10)
    assert result.status is Status.UNHEALTHY
    assert "has not traded yet" in result.reason


def test_a_runner_json_that_is_a_symbolic_link_is_refused_as_a_link(tmp_path, procs):
    """Whoever can write the runner dir can point runner.json anywhere: a link is not believed, and the reason
    says it is a link (a link's own mode, 777, read as 'others may write it' sent the operator to chmod)."""
    active = sleeper()
    procs.append(active)
    elsewhere = tmp_path / "elsewhere"
    write_runner(elsewhere, runner_pid=os.getpid(), active=instance(active))
    runner_dir = tmp_path / "run"
    runner_dir.mkdir(mode=0o700)
    RunnerPaths.of(runner_dir).state.symlink_to(RunnerPaths.of(elsewhere).state)
    result = probe(runner_dir)
    assert result.status is Status.UNHEALTHY, result
    assert "a symbolic link, not the runner's own file" in result.reason, result.reason
