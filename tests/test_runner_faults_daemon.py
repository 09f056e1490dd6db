"""Horus's side of a runner, attacked from the user's side: runner.json files no runner writes (junk values where
times belong), and a Horus daemon that stops and starts again while the runner reloads."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.runner import RunnerCheck, RunnerOptions
from horus.clock import SystemClock
from horus.engine.runner_watch import RunnerWatch
from tests.checks.test_runner_check import instance, sleeper, write_runner

HORUS = Path(sys.executable).with_name("horus")


@pytest.fixture
def procs():
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def probe(state_dir: Path) -> Any:
    check = RunnerCheck(RunnerOptions(type="runner", dir=state_dir))
    return check.probe_inline(ProbeContext(clock=SystemClock(), http=None))  # type: ignore[arg-type]


# Python's json reads NaN, Infinity and -Infinity: a hand-edited or damaged runner.json can hold them anywhere.
NOT_A_TIME = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("junk", NOT_A_TIME, ids=repr)
def test_a_time_that_is_not_a_number_in_runner_json_is_unknown_time_in_status_not_a_traceback(tmp_path, procs, junk):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    reload_entry = {"id": "r1", "outcome": "done", "started_at": junk, "finished_at": junk, "probation_until": junk}
    write_runner(
        runner_dir,
        runner_pid=runner.pid,
        updated_at=junk,
        active=instance(active, trading_since=junk, started_at=junk),
        reloads=[reload_entry],
    )
    config = tmp_path / "horus.json"
    bot = {"name": "bot", "check": {"type": "runner"}, "runner": str(runner_dir)}
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": [bot]}))
    done = subprocess.run([str(HORUS), "status", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("bot: running"))
    assert "last reload at an unknown time" in line, line
    assert f"active pid {active.pid}" in line and "trading for" not in line, line


@pytest.mark.parametrize("junk", NOT_A_TIME, ids=repr)
def test_a_time_that_is_not_a_number_never_crashes_the_check_or_the_runner_news(tmp_path, procs, junk):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active, trading_since=None, started_at=junk))
    result = probe(runner_dir)
    assert result.status is Status.UNKNOWN, result
    assert "has not started trading yet" in result.reason

    watch = RunnerWatch(runner_dir, since_wall=time.time() - 60)
    assert watch.read("bot") == []
    died = {"pid": 4121, "signal": 9, "at": junk}
    write_runner(runner_dir, runner_pid=runner.pid, state="gave_up", restarts=1, last_exit=died)
    news = watch.read("bot")
    assert [item.kind for item in news] == ["runner_restart", "runner_gave_up"], news
    assert "(pid 4121) was killed by signal 9" in news[0].message
    assert "inf" not in news[0].message and "nan" not in news[0].message
    result = probe(runner_dir)
    assert result.status is Status.UNHEALTHY and "was killed by signal 9" in result.reason, result
