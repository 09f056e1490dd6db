from __future__ import annotations

import asyncio
import re
import sys
import time

import psutil
import pydantic
import pytest

from horus.checks.base import Status
from horus.checks.command import CommandCheck, CommandOptions
from horus.errors import ExecError, ProbeError
from tests.support import wait_until


def make_check(command, **options) -> CommandCheck:
    return CommandCheck(CommandOptions.model_validate({"type": "command", "command": command, **options}))


def is_running(pid: int) -> bool:
    # A killed child whose parent is gone may linger as a zombie until init reaps it; it runs nothing.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_exit_zero_is_healthy_with_the_last_line_of_output(probe_ctx):
    result = await make_check(["sh", "-c", "echo checking; echo all good"]).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "exit 0: all good"
    assert result.details["exit_code"] == 0
    assert result.details["output_tail"] == "checking\nall good\n"


async def test_exit_zero_without_output_says_just_the_exit_code(probe_ctx):
    result = await make_check(["true"]).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "exit 0"


async def test_a_non_zero_exit_is_unhealthy_with_the_last_line_including_stderr(probe_ctx):
    command = ["sh", "-c", "echo checking disk; echo 'disk full' >&2; exit 3"]
    result = await make_check(command).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "exit 3: disk full"
    assert result.details["exit_code"] == 3


async def test_a_command_killed_by_a_signal_is_unhealthy_and_names_the_signal(probe_ctx):
    result = await make_check(["sh", "-c", "kill -TERM $$"]).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "killed by SIGTERM"


async def test_a_very_long_last_line_is_clipped_in_the_reason(probe_ctx):
    result = await make_check([sys.executable, "-c", "print('x' * 500); raise SystemExit(1)"]).probe(probe_ctx)
    assert result.reason == "exit 1: " + "x" * 199 + "…"


async def test_a_shell_string_runs_with_shell_true(probe_ctx):
    result = await make_check("echo healthy | tr a-z A-Z", shell=True).probe(probe_ctx)
    assert result.reason == "exit 0: HEALTHY"


async def test_env_adds_to_the_environment_rather_than_replacing_it(probe_ctx, monkeypatch):
    monkeypatch.setenv("HORUS_INHERITED", "from-horus")
    command = ["sh", "-c", 'echo "$HORUS_INHERITED $HORUS_GIVEN"']
    result = await make_check(command, env={"HORUS_GIVEN": "from-config"}).probe(probe_ctx)
    assert result.reason == "exit 0: from-horus from-config"


async def test_cwd_is_the_working_directory(tmp_path, probe_ctx):
    result = await make_check(["pwd", "-P"], cwd=str(tmp_path)).probe(probe_ctx)
    assert result.reason == f"exit 0: {tmp_path.resolve()}"


async def test_a_missing_cwd_is_a_probe_error_that_names_the_directory(tmp_path, probe_ctx):
    expected = f"working directory {tmp_path / 'gone'} does not exist"
    with pytest.raises(ProbeError, match=re.escape(expected)):
        await make_check(["true"], cwd=str(tmp_path / "gone")).probe(probe_ctx)


async def test_a_missing_program_is_a_probe_error_not_unhealthy(probe_ctx):
    with pytest.raises(ProbeError, match="/nonexistent/healthcheck: not found") as caught:
        await make_check(["/nonexistent/healthcheck"]).probe(probe_ctx)
    assert isinstance(caught.value.__cause__, ExecError)


async def test_a_program_that_is_not_executable_is_a_probe_error(tmp_path, probe_ctx):
    script = tmp_path / "healthcheck"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(ProbeError, match="healthcheck: permission denied"):
        await make_check([str(script)]).probe(probe_ctx)


async def test_cancelling_the_probe_kills_the_command_and_every_process_it_started(tmp_path, probe_ctx):
    pids_file = tmp_path / "pids"
    # A hung health script: the shell starts a sleeping child (detached from the output pipe, so only
    # killing the whole group can stop it), records both pids, then waits.
    script = f'sleep 30 >/dev/null 2>&1 & echo "$$ $!" > {pids_file}.tmp; mv {pids_file}.tmp {pids_file}; wait'
    command = ["sh", "-c", script]
    probe = asyncio.ensure_future(make_check(command).probe(probe_ctx))
    await wait_until(pids_file.exists, timeout=5)
    shell_pid, child_pid = (int(pid) for pid in pids_file.read_text().split())
    assert is_running(child_pid)

    # This is how the runner's timeout ends a probe.
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(probe, timeout=0.1)
    assert time.monotonic() - started < 1.5, "cancellation must not wait for the command"

    await wait_until(lambda: not is_running(child_pid) and not is_running(shell_pid), timeout=2)


def test_no_answer_in_time_counts_as_unhealthy():
    assert CommandCheck.timeout_means_unhealthy is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": "curl -f localhost:8080"}, "give an argv list .* or set shell: true"),
        ({"command": ["sh", "-c", "true"], "shell": True}, "command must be a string, not a list"),
        ({"command": []}, "argv must not be empty"),
        ({"command": "  ", "shell": True}, "command must not be empty"),
        ({"command": ["true", 1]}, "every argv element must be a string"),
        ({"command": ["true"], "timeout_seconds": 0}, "greater than 0"),
        ({"command": ["true"], "env": {"PORT": 8080}}, "Input should be a valid string"),
        ({"command": ["true"], "args": ["-x"]}, "Extra inputs are not permitted"),
        ({"command": ["true"], "cwd": "scripts"}, r"must be an absolute path \(or start with ~\)"),
        # Under launchd or systemd Horus runs in "/": a relative program path would name another file.
        ({"command": ["scripts/health.sh"]}, "a relative program path 'scripts/health.sh': give an absolute path"),
        ({"command": ["./health.sh", "--quick"]}, "relative program path './health.sh'"),
        ({"command": ["~/bin/health.sh"]}, "'~/bin/health.sh': ~ is not expanded in a program path"),
    ],
)
def test_invalid_options_are_rejected_at_config_time(options, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        CommandOptions.model_validate({"type": "command", **options})


async def test_a_relative_program_path_runs_from_cwd_when_cwd_is_set(tmp_path, probe_ctx):
    script = tmp_path / "health.sh"
    script.write_text("#!/bin/sh\necho fine from $(basename $(pwd -P))\n")
    script.chmod(0o755)
    result = await make_check(["./health.sh"], cwd=str(tmp_path)).probe(probe_ctx)
    assert result.reason == f"exit 0: fine from {tmp_path.resolve().name}"


def test_a_program_found_on_path_needs_no_slash():
    assert CommandOptions.model_validate({"type": "command", "command": ["true"]}).command == ["true"]
