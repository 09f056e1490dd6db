"""`horus reload NAME` and the runner's line in `horus status`, as an operator runs them: the real horus command
against a config file, and a thread of the test playing the runner through its state dir (runner.json, the
request files it answers, the result files it writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.formats import write_json_atomic
from horus_sdk.runner_files import (
    FORMAT_RESULT,
    FORMAT_RUNNER,
    RunnerPaths,
    describe_reload,
    process_start_token,
    read_request,
)

HORUS = Path(sys.executable).with_name("horus")
OLD, NEW = "9c1e0a7b5d3f4e21", "3f2a6b8c0d1e9f47"

Answer = Callable[[dict[str, Any]], dict[str, Any] | None]


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HORUS), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process to stand for the runner's active instance."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A config with a monitor `bot` that names its runner's state dir, and `web` that has none."""
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir(mode=0o700)
    config = tmp_path / "horus.json"
    monitors = [
        {"name": "bot", "check": {"type": "port_open", "port": 9}, "runner": str(runner_dir)},
        {"name": "web", "check": {"type": "port_open", "port": 9}},
    ]
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": monitors}))
    return config, runner_dir


def write_runner_state(runner_dir: Path, *, pid: int, process_start: str | None, **fields: Any) -> None:
    now = time.time()
    state = {
        "format": FORMAT_RUNNER,
        "name": "bot",
        "pid": pid,
        "process_start": process_start,
        "started_at": now - 3600,
        # Ages far from a unit's edge, so that the seconds a test takes do not change how they read.
        "updated_at": now - 610,
        "state": "running",
        "state_reason": "",
        "active": None,
        "standby": None,
        "previous_version": OLD,
        "restarts": 0,
        "last_exit": None,
        "reloads": [],
        **fields,
    }
    write_json_atomic(RunnerPaths.of(runner_dir).state, state)


def this_process_as_runner(runner_dir: Path, **fields: Any) -> None:
    """runner.json naming the test's own process as the runner: a live pid with its true start time."""
    write_runner_state(runner_dir, pid=os.getpid(), process_start=process_start_token(os.getpid()), **fields)


def reload_entry(outcome: str, **fields: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "id": "r1",
        "trigger": "request",
        "requested_by": "alice (horus reload)",
        "from_version": OLD,
        "to_version": NEW,
        "from_epoch": 11,
        "to_epoch": 12 if outcome == "done" else None,
        "started_at": now - 2,
        "finished_at": now - 1,
        "outcome": outcome,
        "stage": "probation" if outcome == "done" else "ready",
        "reason": "",
        **fields,
    }


class PlayedRunner:
    """Answers the requests in a runner state dir the way the runner does: it reads each request (checked with
    read_request), removes it and writes ``answer(request)`` as the result; None takes it and never answers."""

    def __init__(self, runner_dir: Path, answer: Answer) -> None:
        self.paths = RunnerPaths.of(runner_dir)
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> PlayedRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.wait(0.02):
            for path in sorted(self.paths.requests.glob("*.json")) if self.paths.requests.is_dir() else []:
                request = read_request(path)
                path.unlink()
                self.requests.append(request)
                result = self.answer(request)
                if result is not None:
                    self.paths.results.mkdir(mode=0o700, exist_ok=True)
                    base = {"format": FORMAT_RESULT, "id": request["id"], "op": request["op"], "reason": ""}
                    write_json_atomic(self.paths.result(request["id"]), {**base, **result})


def done(request: dict[str, Any]) -> dict[str, Any]:
    entry = reload_entry("done", gap_ms=41.6, probation_until=time.time() + 60)
    return {"outcome": "done", "reason": describe_reload(entry), "reload": entry}


def test_a_done_reload_exits_0_with_the_versions_epochs_gap_and_probation_end(setup):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)
    with PlayedRunner(runner_dir, done) as runner:
        reloaded = horus("reload", "-c", str(config), "bot")
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.startswith(f"bot: reloaded version {OLD[:12]} → version {NEW[:12]}")
    assert ", epoch 11 → 12, gap 42 ms; on probation until " in reloaded.stdout
    assert "the runner brings the previous version back" in reloaded.stdout
    assert "asked the runner" in reloaded.stderr and "Traceback" not in reloaded.stderr
    [request] = runner.requests
    assert request["op"] == "reload" and request["requested_by"].endswith(" (horus reload)")


def test_json_prints_the_runners_answer(setup):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)
    with PlayedRunner(runner_dir, done) as runner:
        reloaded = horus("reload", "-c", str(config), "bot", "--json")
    assert reloaded.returncode == 0, reloaded.stderr
    result = json.loads(reloaded.stdout)
    assert result["id"] == runner.requests[0]["id"]
    assert result["outcome"] == "done" and result["reload"]["gap_ms"] == 41.6


def test_nothing_to_reload_is_success(setup):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)
    with PlayedRunner(runner_dir, lambda request: {"outcome": "unchanged", "reload": reload_entry("unchanged")}):
        reloaded = horus("reload", "-c", str(config), "bot")
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout == f"bot: nothing to reload: version {NEW[:12]} is already running\n"


@pytest.mark.parametrize(
    ("outcome", "reason", "expected"),
    [
        (
            "failed",
            "never reported ready within 60 s; a timeout is never taken as ready",
            f"reload to version {NEW[:12]} failed at ready: never reported ready within 60 s; a timeout is never "
            f"taken as ready; version {OLD[:12]} is still trading",
        ),
        (
            "rolled_back",
            "it crashed 4 s after it took over (exit code 1)",
            f"version {NEW[:12]} failed its probation and was rolled back to version {OLD[:12]}: it crashed 4 s",
        ),
    ],
)
def test_a_failed_or_rolled_back_reload_exits_1_with_the_reason(setup, outcome, reason, expected):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        return {"outcome": outcome, "reason": reason, "reload": reload_entry(outcome, reason=reason)}

    with PlayedRunner(runner_dir, answer):
        reloaded = horus("reload", "-c", str(config), "bot")
    assert reloaded.returncode == 1
    assert f"bot: {expected}" in reloaded.stderr
    assert reloaded.stdout == "" and "Traceback" not in reloaded.stderr


def test_a_runner_that_is_not_running_is_refused_and_nothing_is_asked(setup):
    config, runner_dir = setup
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_token(gone.pid) or "0"
    gone.wait()
    write_runner_state(runner_dir, pid=gone.pid, process_start=start)
    # A short timeout: were the refusal missing, the test fails in seconds, not after three minutes.
    reloaded = horus("reload", "-c", str(config), "bot", "--timeout", "2")
    assert reloaded.returncode == 1
    assert f"bot: cannot reload: the runner is not running (its pid {gone.pid} has exited)" in reloaded.stderr
    assert not RunnerPaths.of(runner_dir).requests.exists()


def test_a_reused_runner_pid_is_not_taken_for_the_runner(setup):
    config, runner_dir = setup
    # The pid lives (it is this test's), but it started at another time than the runner runner.json names.
    write_runner_state(runner_dir, pid=os.getpid(), process_start="1")
    # A short timeout: were the refusal missing, the test fails in seconds, not after three minutes.
    reloaded = horus("reload", "-c", str(config), "bot", "--timeout", "2")
    assert reloaded.returncode == 1
    assert f"the runner is not running (pid {os.getpid()} is now another process" in reloaded.stderr
    assert not RunnerPaths.of(runner_dir).requests.exists()


def test_no_runner_json_and_an_untrusted_one_are_sentences_not_tracebacks(setup):
    config, runner_dir = setup
    missing = horus("reload", "-c", str(config), "bot")
    assert missing.returncode == 1
    assert f"bot: cannot reload: no runner.json in {runner_dir}" in missing.stderr

    this_process_as_runner(runner_dir)
    RunnerPaths.of(runner_dir).state.chmod(0o666)
    untrusted = horus("reload", "-c", str(config), "bot")
    assert untrusted.returncode == 1
    assert "runner.json cannot be read or believed" in untrusted.stderr and "not believed" in untrusted.stderr

    RunnerPaths.of(runner_dir).state.write_text("{not json")
    RunnerPaths.of(runner_dir).state.chmod(0o600)
    garbage = horus("reload", "-c", str(config), "bot")
    assert garbage.returncode == 1 and "not a horus-runner/1 file" in garbage.stderr
    for run in (missing, untrusted, garbage):
        assert "Traceback" not in run.stderr


def test_an_unknown_monitor_or_one_without_a_runner_is_a_usage_error(setup):
    config, _runner_dir = setup
    unknown = horus("reload", "-c", str(config), "nope")
    assert unknown.returncode == 2
    assert f"{config}: no monitor named 'nope'" in unknown.stderr
    no_runner = horus("reload", "-c", str(config), "web")
    assert no_runner.returncode == 2
    assert f"{config}: monitor 'web' has no runner: set `runner:`" in no_runner.stderr


def test_no_answer_in_time_exits_1_and_says_the_request_is_still_queued(setup):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)
    reloaded = horus("reload", "-c", str(config), "bot", "--timeout", "0.5")
    assert reloaded.returncode == 1
    assert "bot: the runner did not answer within 500 ms. The request is still queued" in reloaded.stderr
    assert "the runner will still act on it" in reloaded.stderr
    [queued] = RunnerPaths.of(runner_dir).requests.glob("*.json")
    assert read_request(queued)["op"] == "reload"


def test_a_request_taken_but_not_answered_in_time_says_the_runner_is_still_acting_on_it(setup):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)
    with PlayedRunner(runner_dir, lambda request: None) as runner:
        reloaded = horus("reload", "-c", str(config), "bot", "--timeout", "2")
    assert reloaded.returncode == 1
    assert runner.requests, "the played runner never saw the request"
    assert "The runner has taken the request and is still acting on it" in reloaded.stderr


def test_status_shows_each_runner_from_its_runner_json_read_now(setup, tmp_path, sleeper):
    config, runner_dir = setup
    broken_dir = tmp_path / "broken-runner"
    broken_dir.mkdir(mode=0o700)
    (broken_dir / "runner.json").write_text("[]")
    data = json.loads(config.read_text())
    data["monitors"].append({"name": "other", "check": {"type": "port_open", "port": 9}, "runner": str(broken_dir)})
    config.write_text(json.dumps(data))
    now = time.time()
    active = {
        "pid": sleeper.pid,
        "process_start": process_start_token(sleeper.pid),
        "version": NEW,
        "epoch": 12,
        "started_at": now - 3 * 3600 - 100,
        "trading_since": now - 3 * 3600 - 30,
    }
    standby = {**active, "pid": os.getpid(), "process_start": "1", "version": OLD, "epoch": None}
    last_reload = reload_entry("done", gap_ms=41.6, finished_at=now - 3 * 3600 - 40)
    asked_again = reload_entry("unchanged", finished_at=now - 60)
    this_process_as_runner(runner_dir, active=active, standby=standby, reloads=[last_reload, asked_again])

    status = horus("status", "-c", str(config))
    # No daemon runs: status says so (exit 1), and still shows the runners.
    assert status.returncode == 1 and "Traceback" not in status.stderr
    lines = status.stdout.splitlines()
    assert "Runners:" in lines
    [bot] = [line for line in lines if line.startswith("  bot: ")]
    assert bot.startswith(f"  bot: running (runner pid {os.getpid()}); active pid {sleeper.pid} version {NEW[:12]} ")
    assert f"version {NEW[:12]} epoch 12, trading for 3 h;" in bot
    assert f"; standby pid {os.getpid()} version {OLD[:12]} (exited)" in bot
    assert f"; last reload 3 h ago: reloaded version {OLD[:12]} → version {NEW[:12]}, epoch 11 → 12, gap 42 ms" in bot
    [other] = [line for line in lines if line.startswith("  other: ")]
    assert other == f"  other: runner.json cannot be read or believed: {broken_dir / 'runner.json'}: not a " + (
        "horus-runner/1 file (format 'list')"
    )

    as_json = horus("status", "-c", str(config), "--json")
    runners = json.loads(as_json.stdout)["runners"]
    assert set(runners) == {"bot", "other"}
    assert runners["bot"]["running"] is True and runners["bot"]["state"] == "running"
    assert runners["bot"]["active"] == {**{k: v for k, v in active.items() if k != "process_start"}, "alive": True}
    assert runners["bot"]["standby"]["alive"] is False
    assert runners["bot"]["last_reload"]["summary"].startswith(f"reloaded version {OLD[:12]}")
    assert runners["other"]["readable"] is False and "format 'list'" in runners["other"]["problem"]


def test_a_refused_request_is_a_failure_with_the_runners_reason(setup):
    config, runner_dir = setup
    this_process_as_runner(runner_dir)
    refused = {"outcome": "refused", "reason": "the request was refused: others may write it"}
    with PlayedRunner(runner_dir, lambda request: refused):
        reloaded = horus("reload", "-c", str(config), "bot")
    assert reloaded.returncode == 1
    assert "bot: the runner answered the reload request with refused: the request was refused: others may write it" in (
        reloaded.stderr
    )


def test_status_says_when_the_runner_named_in_runner_json_is_gone(setup):
    config, runner_dir = setup
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_token(gone.pid) or "0"
    gone.wait()
    write_runner_state(runner_dir, pid=gone.pid, process_start=start, state="gave_up", state_reason="crashed 6 times")
    status = horus("status", "-c", str(config))
    [bot] = [line for line in status.stdout.splitlines() if line.startswith("  bot: ")]
    assert bot == (
        f"  bot: the runner is not running (its pid {gone.pid} has exited); runner.json last said gave_up "
        "(crashed 6 times), 10 min ago; no reload yet"
    )
