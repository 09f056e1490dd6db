"""horus_sdk.runner against real processes: a fake instance that speaks the protocol (runner_fake_instance.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.runner_files import new_request, read_result, read_runner_state

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "src"
FAKE = Path(__file__).with_name("runner_fake_instance.py")
FAST = ["--watch-interval", "0.1", "--debounce", "0.3", "--ready-timeout", "2", "--handover-timeout", "1.5",
        "--probation", "2", "--stop-timeout", "2", "--restart-window", "60"]  # fmt: skip


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :].split()[:1] != [b"Z"]


class Service:
    """A source dir, a state dir and a runner process over them."""

    def __init__(self, tmp: Path) -> None:
        self.source = tmp / "src"
        self.state_dir = tmp / "state"
        self.lines = tmp / "lines.txt"
        self.source.mkdir()
        shutil.copy(FAKE, self.source / "bot.py")
        self.write_version(mode="normal")
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = tmp / "runner.err"

    def write_version(self, mode: str = "normal", **extra: Any) -> None:
        data = {"mode": mode, "lines": str(self.lines), **extra}
        (self.source / "behaviour.json").write_text(json.dumps(data))

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "horus_sdk.runner", "--name", "fake", "--state-dir", str(self.state_dir),
                "--source", str(self.source), *FAST, *extra, "--", sys.executable, "bot.py"]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(SDK_SRC)}

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(self.argv(*extra), env=self.env(), stderr=self.stderr_path.open("ab"))

    def state(self) -> dict[str, Any]:
        try:
            return read_runner_state(self.state_dir)
        except (OSError, ValueError):
            return {}

    def trading(self, version_not: str | None = None) -> dict[str, Any] | None:
        state = self.state()
        active = state.get("active") or {}
        if state.get("state") == "running" and active.get("trading_since") and active.get("version") != version_not:
            return active
        return None

    def request(self, op: str) -> dict[str, Any]:
        request_id = new_request(self.state_dir, op, requested_by="test")
        return wait_until(lambda: read_result(self.state_dir, request_id), 20, f"the result of {op}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def epochs_never_overlap(lines: Path) -> dict[int, tuple[float, float]]:
    spans: dict[int, tuple[float, float]] = {}
    for line in lines.read_text().splitlines():
        epoch_text, _pid, at_text = line.split()
        epoch, at = int(epoch_text), float(at_text)
        first, last = spans.get(epoch, (at, at))
        spans[epoch] = (min(first, at), max(last, at))
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    for (e1, (_, end1)), (e2, (start2, _)) in itertools.pairwise(ordered):
        assert start2 > end1, f"epoch {e2} traded at {start2} before epoch {e1} stopped at {end1}"
    return spans


def test_first_start_then_a_debounced_source_change_reloads_with_a_small_gap_and_no_overlap(service: Service) -> None:
    service.start()
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode="normal", v=2)
    second = wait_until(lambda: service.trading(version_not=first["version"]), what="the reload")
    reload = service.state()["reloads"][-1]
    assert reload["outcome"] == "done" and reload["trigger"] == "watch", reload
    assert reload["gap_ms"] < 500 and reload["to_epoch"] > reload["from_epoch"], reload
    assert not alive(first["pid"]) and alive(second["pid"])
    assert service.state()["previous_version"] == first["version"]
    wait_until(lambda: service.lines.read_text().count(f" {second['pid']} ") > 3, what="the new one's cycles")
    epochs_never_overlap(service.lines)
    result = service.request("reload")
    assert result["outcome"] == "unchanged", result
    assert (service.state_dir / "versions" / second["version"] / "bot.py").is_file()
    assert (service.state_dir / "logs" / "service.log").read_text().count("started in mode normal") >= 2
    assert service.stop() == 0
    state = service.state()
    assert state["state"] == "stopped" and state["active"] is None
    assert not alive(second["pid"])


@pytest.mark.slow
def test_each_failed_reload_leaves_the_old_version_trading_and_says_where_and_why(service: Service) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    cases = [
        ("syntax", "preflight", "broken.py line 1"),
        ("crash_at_start", "start", "exited with code 3"),
        ("never_ready", "ready", "never reported ready within 2 s"),
        ("silent", "ready", "it never spoke to the runner at all"),
        ("hang_after_promote", "handover", "did not start trading"),
    ]
    for mode, stage, words in cases:
        if mode == "syntax":
            (service.source / "broken.py").write_text("def oops(:\n")
        else:
            (service.source / "broken.py").unlink(missing_ok=True)
            service.write_version(mode=mode)
        result = service.request("reload")
        assert result["outcome"] == "failed" and result["reload"]["stage"] == stage, (mode, result)
        assert words in result["reload"]["reason"], (mode, result["reload"]["reason"])
        state = service.state()
        assert state["reloads"][-1]["outcome"] == "failed" and state["reloads"][-1]["stage"] == stage
        assert state["active"]["pid"] == first["pid"] and alive(first["pid"]), (mode, state)
        assert state["standby"] is None and state["state"] == "running", (mode, state)
    assert "boom: the fake instance crashed at start" in result_reason_of(service, "start")
    again = service.request("reload")
    assert again["outcome"] == "failed" and "not retried" in again["reason"], again
    before = service.lines.read_text().count(f" {first['pid']} ")
    wait_until(lambda: service.lines.read_text().count(f" {first['pid']} ") > before + 3, what="the old one trading")
    epochs_never_overlap(service.lines)


def result_reason_of(service: Service, stage: str) -> str:
    return next(r["reason"] for r in service.state()["reloads"] if r["stage"] == stage)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["crash_after", "trip_after"])
def test_a_new_version_that_fails_its_probation_is_rolled_back(service: Service, mode: str) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode=mode, after=0.3)
    result = service.request("reload")
    assert result["outcome"] == "done" and result["reload"]["probation_until"], result
    back = wait_until(lambda: (service.trading() or {}).get("version") == first["version"] and service.trading(),
                      what="the rollback")  # fmt: skip
    entry = service.state()["reloads"][-1]
    assert entry["outcome"] == "rolled_back" and entry["stage"] == "probation", entry
    assert ("crashed" in service.stderr() or "exited with code 5" in entry["reason"]) if mode == "crash_after" else (
        "tripped" in entry["reason"])  # fmt: skip
    rewritten = read_result(service.state_dir, result["id"])
    assert rewritten is not None and rewritten["outcome"] == "rolled_back", rewritten
    assert back["pid"] != first["pid"] and alive(back["pid"])
    epochs_never_overlap(service.lines)


@pytest.mark.slow
def test_crashes_restart_with_backoff_then_give_up_and_a_new_version_starts_again(service: Service) -> None:
    service.write_version(mode="crash_after", after=0.1)
    service.start("--no-watch", "--max-restarts", "2")
    gave_up = wait_until(lambda: service.state().get("state") == "gave_up" and service.state(), 20, "gave_up")
    assert gave_up["restarts"] == 3 and gave_up["active"] is None, gave_up
    assert "exited with code 5" in gave_up["state_reason"] and "boom" in gave_up["state_reason"], gave_up
    assert gave_up["last_exit"]["code"] == 5
    assert "restarting in 1 s" in service.stderr() and "restarting in 2 s" in service.stderr()
    service.write_version(mode="normal")
    result = service.request("reload")
    assert result["outcome"] == "done", result
    wait_until(service.trading, what="the new version trading")


def test_a_restart_request_replaces_the_instance_with_the_same_version(service: Service) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    result = service.request("restart")
    assert result["outcome"] == "done", result
    now = wait_until(service.trading, what="the restarted instance trading")
    assert now and now["pid"] != first["pid"] and now["version"] == first["version"]
    assert not alive(first["pid"])


def test_a_request_another_user_could_have_written_is_refused(service: Service) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    request_id = new_request(service.state_dir, "restart", requested_by="test")
    os.chmod(service.state_dir / "requests" / f"{request_id}.json", 0o666)
    result = wait_until(lambda: read_result(service.state_dir, request_id), what="the refusal")
    assert result["outcome"] == "refused" and "others may write it" in result["reason"], result
    assert service.trading()["pid"] == first["pid"]


@pytest.mark.slow
def test_kill_9_of_the_runner_during_a_handover_leaves_exactly_one_instance(service: Service, tmp_path: Path) -> None:
    loop = subprocess.Popen(
        ["bash", "-c", 'while true; do "$@"; sleep 0.2; done', "loop", *service.argv("--no-watch")],
        env=service.env(),
        stderr=service.stderr_path.open("ab"),
        start_new_session=True,
    )
    try:
        first = wait_until(service.trading, what="the first start")
        first_runner = service.state()["pid"]
        service.write_version(mode="slow_ready", after=1.0)
        new_request(service.state_dir, "reload", requested_by="test")
        standby = wait_until(lambda: service.state().get("standby"), what="the standby")
        os.kill(first_runner, signal.SIGKILL)
        after = wait_until(
            lambda: service.state().get("pid") != first_runner and service.trading(), 30, "the restarted runner trading"
        )
        for pid in (first["pid"], standby["pid"]):
            wait_until(lambda pid=pid: not alive(pid), 10, f"instance {pid} gone")
        assert alive(after["pid"])
        count = service.lines.read_text().count(f" {after['pid']} ")
        wait_until(lambda: service.lines.read_text().count(f" {after['pid']} ") > count + 3, what="cycles")
        recent = service.lines.read_text().splitlines()[-5:]
        assert {line.split()[1] for line in recent} == {str(after["pid"])}, recent
        epochs_never_overlap(service.lines)
    finally:
        if loop.poll() is None:
            os.kill(loop.pid, signal.SIGKILL)  # the shell only: the runner is stopped below, as by systemd
        loop.wait()
        runner = service.state().get("pid")
        if runner and alive(runner):
            os.kill(runner, signal.SIGTERM)
            wait_until(lambda: not alive(runner), 20, "the runner's exit")
    assert service.state()["state"] == "stopped"
    assert not alive(after["pid"])


def test_bad_arguments_are_one_sentence_and_exit_2(service: Service) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "horus_sdk.runner",
            "--name",
            "x",
            "--state-dir",
            str(service.state_dir),
            "--source",
            str(service.source),
        ],
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "after --" in done.stderr and "Traceback" not in done.stderr
    service.state_dir.mkdir(mode=0o777)
    os.chmod(service.state_dir, 0o777)
    done = subprocess.run(service.argv(), env=service.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "may be written by another user" in done.stderr, done.stderr


@pytest.mark.slow
def test_a_running_version_that_never_reaches_a_cycle_boundary_keeps_trading(service: Service) -> None:
    service.write_version(mode="ignore_handover")
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode="normal")
    result = service.request("reload")
    assert result["outcome"] == "failed" and result["reload"]["stage"] == "handover", result
    assert "did not reach a cycle boundary within 1.5 s" in result["reload"]["reason"], result
    assert service.trading()["pid"] == first["pid"] and service.state()["standby"] is None
    epochs_never_overlap(service.lines)


def test_sighup_asks_for_a_reload(service: Service) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode="normal", v=3)
    assert service.proc is not None
    service.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: service.trading(version_not=first["version"]), what="the reload")
    assert service.state()["reloads"][-1]["trigger"] == "signal"


def test_the_service_log_is_rotated_by_size(tmp_path: Path) -> None:
    from horus_sdk._runner_instance import ServiceLog

    log = ServiceLog(tmp_path / "service.log", max_bytes=100, keep=2)
    for index in range(30):
        log.append(f"line {index:02d} of the service's output\n")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["service.log", "service.log.1", "service.log.2"], names
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert "line 29" in (tmp_path / "service.log").read_text()


@pytest.mark.slow
def test_the_watcher_never_deploys_again_a_version_that_failed_its_probation(service: Service) -> None:
    """A revert to contents that just crashed on probation (or a change made before the crash) is not deployed
    by the file watcher again, or a crash on probation could loop; an explicit request still may."""
    service.start()
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode="crash_after", after=0.5)
    failing = wait_until(lambda: service.trading(version_not=first["version"]), what="the new version trading")
    wait_until(
        lambda: (service.trading() or {}).get("version") == first["version"] and service.trading(), what="the rollback"
    )
    # The same failing contents written again (a new mtime: the watcher sees a change).
    before = {entry.get("id") for entry in service.state()["reloads"]}
    service.write_version(mode="crash_after", after=0.5)
    refused = wait_until(
        lambda: next((e for e in service.state()["reloads"] if e.get("id") not in before), None), what="the refusal"
    )
    assert refused["outcome"] == "failed" and "does not deploy it again" in refused["reason"], refused
    assert refused["to_version"] == failing["version"]
    assert service.trading()["version"] == first["version"]


def test_a_second_runner_on_the_same_state_dir_refuses_and_touches_nothing(service: Service) -> None:
    """Started twice (systemd and a shell loop, say), the second runner would take the first one's instances
    for orphans and end them: it refuses to start instead."""
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    second = subprocess.run(service.argv("--no-watch"), env=service.env(), capture_output=True, text=True, timeout=30)
    assert second.returncode == 1, second.stderr
    assert "another runner" in second.stderr and f"pid {service.state()['pid']}" in second.stderr, second.stderr
    assert alive(first["pid"]) and service.trading()["pid"] == first["pid"]
