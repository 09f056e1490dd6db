"""The runner_restart heal against a runner's state dir, answered by a thread that plays the runner."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from horus.clock import SystemClock
from horus.engine.runner import run_heal
from horus.heals.base import HealContext
from horus.heals.runner_restart import RunnerRestartHeal, RunnerRestartOptions
from horus_sdk.formats import write_json_atomic
from horus_sdk.runner_files import FORMAT_RESULT, RunnerPaths, read_request
from tests.checks.test_runner_check import write_runner


class FakeRunner(threading.Thread):
    """Answers each request in the state dir's requests/ as a runner would: reads it, removes it, writes a result."""

    def __init__(self, state_dir: Path, outcome: str = "done", reason: str = "") -> None:
        super().__init__(daemon=True)
        self.paths = RunnerPaths.of(state_dir)
        self.outcome, self.reason = outcome, reason
        self.requests: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            if not self.paths.requests.is_dir():
                continue
            for path in sorted(self.paths.requests.glob("*.json")):
                request = read_request(path)
                path.unlink()
                self.requests.append(request)
                self.paths.results.mkdir(mode=0o700, exist_ok=True)
                result = {
                    "format": FORMAT_RESULT,
                    "id": request["id"],
                    "op": request["op"],
                    "outcome": self.outcome,
                    "reason": self.reason,
                    "finished_at": time.time(),
                }
                write_json_atomic(self.paths.result(request["id"]), result)


@pytest.fixture
def runner(tmp_path):
    write_runner(tmp_path / "run", runner_pid=os.getpid())
    fake = FakeRunner(tmp_path / "run")
    yield fake
    fake.stopping.set()
    if fake.is_alive():
        fake.join(timeout=10)


def heal(state_dir: Path, **options) -> RunnerRestartHeal:
    return RunnerRestartHeal(RunnerRestartOptions(action="runner_restart", dir=state_dir, **options))


def run(h: RunnerRestartHeal):
    ctx = HealContext(clock=SystemClock(), monitor="bot", reason="the active instance is gone")
    return asyncio.run(run_heal(h, ctx, timeout=h.timeout_seconds(60)))


def test_a_restart_request_is_written_and_the_heal_succeeds_on_the_runners_answer(tmp_path, runner):
    runner.start()
    outcome = run(heal(tmp_path / "run", timeout_seconds=20))
    assert outcome.ok, outcome.summary
    assert f"the runner (pid {os.getpid()}) restarted the instance" in outcome.summary
    [request] = runner.requests
    assert request["op"] == "restart"
    assert request["requested_by"] == "horus heal bot"
    assert request["reason"] == "the active instance is gone"
    assert outcome.details["request"] == request["id"]


def test_a_restart_the_runner_could_not_do_fails_with_its_reason(tmp_path, runner):
    runner.outcome, runner.reason = "failed", "the new instance never reported ready"
    runner.start()
    outcome = run(heal(tmp_path / "run", timeout_seconds=20))
    assert not outcome.ok and not outcome.refused
    assert "did not restart the instance: failed: the new instance never reported ready" in outcome.summary


def test_an_unanswered_request_fails_in_time_and_is_withdrawn(tmp_path, runner):
    started = time.monotonic()
    outcome = run(heal(tmp_path / "run", timeout_seconds=0.5))
    assert not outcome.ok
    assert "did not answer restart request" in outcome.summary and "withdrawn" in outcome.summary
    assert time.monotonic() - started < 5
    assert not list(RunnerPaths.of(tmp_path / "run").requests.glob("*.json")), "no late restart"


def test_no_request_is_written_when_the_runner_is_not_running(tmp_path):
    dead = write_runner(tmp_path / "run", runner_pid=os.getpid())
    dead["process_start"] = "0"
    write_json_atomic(RunnerPaths.of(tmp_path / "run").state, dead)
    outcome = run(heal(tmp_path / "run"))
    assert outcome.refused
    assert f"the runner (pid {os.getpid()}) is not running: nobody would answer" in outcome.summary
    assert not RunnerPaths.of(tmp_path / "run").requests.exists()
    outcome = run(heal(tmp_path / "elsewhere"))
    assert outcome.refused and "no runner.json" in outcome.summary
