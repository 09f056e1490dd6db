"""Processes Horus starts are Horus's to end: on a timeout, after a probe, and after Horus itself was killed;
and a command is judged by its exit status, not by when its output closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from horus import children
from horus.checks.base import Status
from horus.checks.command import CommandCheck, CommandOptions
from horus.execution import run_command
from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until, wait_until_sync


def is_running(pid: int) -> bool:
    # A killed process whose parent is gone may linger as a zombie until init reaps it; it runs nothing.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def command_check(command: str) -> CommandCheck:
    return CommandCheck(CommandOptions.model_validate({"type": "command", "command": command, "shell": True}))


def kill_if_running(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def test_a_command_that_exits_0_leaving_a_child_on_its_output_is_healthy_at_once(probe_ctx, tmp_path):
    pid_file = tmp_path / "child.pid"
    check = command_check(f"sleep 30 & echo $! > {pid_file}; echo ok")
    started = time.monotonic()
    result = await asyncio.wait_for(check.probe(probe_ctx), timeout=10)
    assert time.monotonic() - started < 2
    assert result.status is Status.HEALTHY
    assert result.reason == "exit 0: ok"
    # What the probe left behind is ended with it.
    await wait_until(lambda: not is_running(int(pid_file.read_text())), timeout=5)


async def test_a_command_checks_child_in_a_new_session_is_ended_when_the_check_exits(probe_ctx, tmp_path):
    pid_file = tmp_path / "child.pid"
    check = command_check(f"setsid sleep 60 >/dev/null 2>&1 & echo $! > {pid_file}; exit 3")
    result = await asyncio.wait_for(check.probe(probe_ctx), timeout=10)
    assert result.status is Status.UNHEALTHY
    child = int(pid_file.read_text())
    try:
        await wait_until(lambda: not is_running(child), timeout=5)
    finally:
        kill_if_running(child)


async def test_a_command_checks_child_in_a_new_session_is_ended_when_the_check_is_cut_off(probe_ctx, tmp_path):
    pid_file = tmp_path / "child.pid"
    check = command_check(f"setsid sleep 60 >/dev/null 2>&1 & echo $! > {pid_file}; sleep 60")
    probe = asyncio.ensure_future(check.probe(probe_ctx))
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=5)
    child = int(pid_file.read_text())
    # This is how the runner's timeout ends a probe.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(probe, timeout=0.1)
    try:
        await wait_until(lambda: not is_running(child), timeout=5)
    finally:
        kill_if_running(child)


async def test_a_scripts_child_in_a_new_session_is_killed_at_the_timeout(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"setsid sh -c 'sleep 60' >/dev/null 2>&1 & echo $! > {pid_file}; sleep 60"
    with pytest.raises(Exception, match="did not finish within"):
        await run_command(script, shell=True, timeout=0.5)
    child = int(pid_file.read_text())
    try:
        await wait_until(lambda: not is_running(child), timeout=5)
    finally:
        kill_if_running(child)


async def test_a_service_a_script_started_and_left_running_is_left_alone(tmp_path):
    pid_file = tmp_path / "service.pid"
    result = await run_command(f"setsid sleep 60 >/dev/null 2>&1 & echo $! > {pid_file}", shell=True, timeout=10)
    service = int(pid_file.read_text())
    try:
        assert result.ok
        assert is_running(service)
    finally:
        kill_if_running(service)


async def test_the_output_a_program_prints_just_before_it_exits_is_kept(tmp_path):
    result = await run_command([sys.executable, "-c", "print('x' * 100_000); print('last')"], timeout=10)
    assert result.last_line() == "last"


def test_a_damaged_record_is_moved_aside_and_said(tmp_path, capsys):
    (tmp_path / children.FILE_NAME).write_text("{not json")
    assert children.reap_earlier(tmp_path) == 0
    assert (tmp_path / f"{children.FILE_NAME}.damaged").read_text() == "{not json"


def test_a_recorded_pid_that_now_belongs_to_another_process_is_never_signalled(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        record = {
            "token": "0" * 32,
            "pid": bystander.pid,
            # Started long before the process that has this pid now.
            "create_time": psutil.Process(bystander.pid).create_time() - 1000,
            "monitor": "bot",
            "what": "run_script heal",
            "program": "sleep",
            "started_at": time.time() - 1000,
            "horus_pid": 999_999_999,
            "horus_create_time": 1.0,
        }
        (tmp_path / children.FILE_NAME).write_text(json.dumps({"version": 1, "runs": [record]}))
        assert children.reap_earlier(tmp_path, grace=0.1) == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def write_record(state: Path, pid: int, create_time: float, *, horus_pid: int, horus_create_time: float) -> None:
    record = {
        "token": "ab" * 16,
        "pid": pid,
        "create_time": create_time,
        "monitor": "bot",
        "what": "run_script heal",
        "program": "sleep",
        "started_at": time.time(),
        "horus_pid": horus_pid,
        "horus_create_time": horus_create_time,
    }
    (state / children.FILE_NAME).write_text(json.dumps({"version": 1, "runs": [record]}))


def test_a_recorded_program_without_its_marker_is_ended_by_its_pid_and_start_time(tmp_path):
    # env -i: the program cleared its environment, so only the record of its pid and start time finds it.
    program = subprocess.Popen(["env", "-i", "sleep", "60"])
    try:
        wait_until_sync(lambda: psutil.Process(program.pid).name() == "sleep", timeout=5)
        started = psutil.Process(program.pid).create_time()
        write_record(tmp_path, program.pid, started, horus_pid=999_999_999, horus_create_time=1.0)
        assert children.reap_earlier(tmp_path, grace=5) == 1
        # (psutil reaps it, being its parent here, so its exit status is not ours to see.)
        program.wait(timeout=5)
        assert json.loads((tmp_path / children.FILE_NAME).read_text())["runs"] == []
    finally:
        program.kill()
        program.wait()


def test_the_programs_of_a_horus_still_running_are_never_reaped(tmp_path):
    program = subprocess.Popen(["sleep", "60"])
    try:
        started = psutil.Process(program.pid).create_time()
        me = psutil.Process()
        write_record(tmp_path, program.pid, started, horus_pid=me.pid, horus_create_time=me.create_time())
        assert children.reap_earlier(tmp_path, grace=0.1) == 0
        assert program.poll() is None
    finally:
        program.kill()
        program.wait()


def heal_config(tmp_path: Path) -> Path:
    pid_file = tmp_path / "heal.pid"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    {
                        "name": "bot",
                        "interval_seconds": 0.2,
                        "min_failures_to_heal": 1,
                        "check": {"type": "file_exists", "path": str(tmp_path / "never-there")},
                        "heal": {
                            "action": "run_script",
                            # Written only the first time: the pid of the heal the killed Horus left.
                            "command": f"[ -e {pid_file} ] || echo $$ > {pid_file}; exec sleep 30",
                            "shell": True,
                            "timeout_seconds": 60,
                        },
                    }
                ],
            }
        )
    )
    return config


@pytest.mark.slow
def test_a_heal_left_running_by_a_horus_killed_with_sigkill_is_ended_by_the_next_one(tmp_path):
    config = heal_config(tmp_path)
    pid_file = tmp_path / "heal.pid"
    state = tmp_path / "state"
    log = EventLog(tmp_path / "events.jsonl")
    first = spawn_daemon(config, state, log.path)
    heal_pid = None
    second = None
    try:
        wait_until_sync(lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=30)
        heal_pid = int(pid_file.read_text())
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        time.sleep(0.2)
        assert is_running(heal_pid), "the heal outlives a Horus killed with SIGKILL"

        second = spawn_daemon(config, state, log.path)
        wait_until_sync(lambda: not is_running(heal_pid), timeout=20)
        wait_until_sync(lambda: log.named("execution.reaped"), timeout=10)
        [reaped] = log.named("execution.reaped")
        # Found by pid and start time, or by its marker when Horus died before it could note the pid.
        assert heal_pid in reaped["pids"]
        assert reaped["monitor"] == "bot"
        assert reaped["what"] == "run_script heal"
        assert reaped["signal"] == "SIGTERM"
    finally:
        if second is not None:
            assert stop_daemon(second) == 0
        if first.poll() is None:
            first.kill()
            first.wait()
        if heal_pid is not None:
            kill_if_running(heal_pid)
