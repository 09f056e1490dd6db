from __future__ import annotations

import time
from pathlib import Path

import psutil
import pydantic
import pytest

from horus.clock import SystemClock
from horus.engine.runner import run_heal
from horus.errors import HealError
from horus.heals.base import HealContext
from horus.heals.run_script import RunScriptHeal, RunScriptOptions
from tests.support import wait_until

CTX = HealContext(clock=SystemClock(), monitor="polymarket-bot")


def make_heal(command: object, **options: object) -> RunScriptHeal:
    return RunScriptHeal(RunScriptOptions.model_validate({"action": "run_script", "command": command, **options}))


def write_script(directory: Path, body: str, name: str = "repair.sh") -> Path:
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_script_that_exits_0_succeeds_and_records_its_exit_code_duration_and_output(tmp_path):
    script = write_script(tmp_path, 'echo "clearing lock for $1"\necho done\n')
    outcome = await make_heal([str(script), "bot"]).run(CTX)
    assert outcome.ok
    assert outcome.summary.startswith("script exited 0 in ")
    assert outcome.details["exit_code"] == 0
    assert 0 <= outcome.details["duration_seconds"] < 2
    assert outcome.details["output_tail"] == "clearing lock for bot\ndone"


async def test_only_the_last_twenty_lines_of_output_are_kept(tmp_path):
    script = write_script(tmp_path, 'i=1; while [ $i -le 100 ]; do echo "line $i"; i=$((i+1)); done\n')
    outcome = await make_heal([str(script)]).run(CTX)
    lines = outcome.details["output_tail"].splitlines()
    assert lines == [f"line {i}" for i in range(81, 101)]


async def test_a_script_that_exits_non_zero_is_a_retryable_heal_error_with_its_last_line(tmp_path):
    script = write_script(tmp_path, 'echo "restarting gateway"\necho "ERROR: port 8080 still in use" >&2\nexit 3\n')
    with pytest.raises(HealError, match=r"script exited 3 after .*: ERROR: port 8080 still in use") as caught:
        await make_heal([str(script)]).run(CTX)
    assert caught.value.permanent is False


async def test_a_script_that_does_not_exist_is_a_permanent_heal_error(tmp_path):
    with pytest.raises(HealError, match="not found") as caught:
        await make_heal([str(tmp_path / "missing.sh")]).run(CTX)
    assert caught.value.permanent is True


async def test_a_script_that_is_not_executable_is_a_permanent_heal_error(tmp_path):
    script = write_script(tmp_path, "exit 0\n")
    script.chmod(0o644)
    with pytest.raises(HealError, match="permission denied") as caught:
        await make_heal([str(script)]).run(CTX)
    assert caught.value.permanent is True


async def test_a_shell_command_runs_with_the_given_environment_and_working_directory(tmp_path):
    workdir = tmp_path / "bot"
    workdir.mkdir()
    outcome = await make_heal(
        'echo "$GREETING from $(pwd)"', shell=True, cwd=str(workdir), env={"GREETING": "hello"}
    ).run(CTX)
    assert outcome.details["output_tail"] == f"hello from {workdir}"


async def test_a_shell_command_that_is_not_found_is_a_permanent_heal_error(tmp_path):
    with pytest.raises(HealError, match="exited 127") as caught:
        await make_heal("definitely-not-a-command-horus-knows --now", shell=True).run(CTX)
    assert caught.value.permanent is True


async def test_a_missing_working_directory_is_a_permanent_heal_error_that_names_it(tmp_path):
    script = write_script(tmp_path, "exit 0\n")
    with pytest.raises(HealError, match=r"working directory .*nowhere does not exist") as caught:
        await make_heal([str(script)], cwd=str(tmp_path / "nowhere")).run(CTX)
    assert caught.value.permanent is True


async def test_a_script_past_its_timeout_is_killed_together_with_the_processes_it_started(tmp_path):
    script = write_script(
        tmp_path,
        f'sleep 30 &\necho $! > "{tmp_path}/child.pid"\necho $$ > "{tmp_path}/script.pid"\nwait\n',
    )
    started = time.monotonic()
    with pytest.raises(HealError, match="did not finish within 500 ms and was killed") as caught:
        await make_heal([str(script)], timeout_seconds=0.5).run(CTX)
    assert time.monotonic() - started < 1.5
    assert caught.value.permanent is False

    script_pid = int((tmp_path / "script.pid").read_text())
    child_pid = int((tmp_path / "child.pid").read_text())
    await wait_until(lambda: is_gone(script_pid) and is_gone(child_pid), timeout=1.0)


def test_the_runner_allows_the_script_its_own_timeout_and_a_little_more():
    heal = make_heal(["/bin/true"], timeout_seconds=120)
    allowed = heal.timeout_seconds(default=30)
    assert 120 < allowed <= 130


def test_the_timeout_defaults_to_60_seconds():
    options = RunScriptOptions.model_validate({"action": "run_script", "command": ["/bin/true"]})
    assert options.timeout_seconds == 60
    assert options.shell is False


def test_a_command_string_without_shell_is_rejected_with_both_ways_to_fix_it():
    with pytest.raises(pydantic.ValidationError, match=r"give an argv list .* or set shell: true"):
        RunScriptOptions.model_validate({"action": "run_script", "command": "systemctl restart bot"})


def test_shell_true_with_an_argv_list_is_rejected():
    with pytest.raises(pydantic.ValidationError, match="command must be a string, not a list"):
        RunScriptOptions.model_validate(
            {"action": "run_script", "command": ["/usr/local/bin/repair.sh"], "shell": True}
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": []}, "argv must not be empty"),
        ({"command": ["/bin/true"], "timeout_seconds": 0}, "greater than 0"),
        ({"command": ["/bin/true"], "env": {"PORT": 8080}}, "env.PORT"),
    ],
)
def test_an_empty_command_a_zero_timeout_and_a_non_string_env_value_are_rejected(options, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        RunScriptOptions.model_validate({"action": "run_script", **options})


async def test_a_failed_script_keeps_its_exit_code_and_output_in_the_heal_record(tmp_path):
    script = tmp_path / "repair.sh"
    script.write_text("#!/bin/sh\necho trying\necho disk full >&2\nexit 3\n")
    script.chmod(0o755)
    heal = RunScriptHeal(RunScriptOptions.model_validate({"action": "run_script", "command": [str(script)]}))
    outcome = await run_heal(heal, HealContext(clock=SystemClock(), monitor="svc"), timeout=10)
    assert outcome.ok is False
    assert outcome.details["exit_code"] == 3
    assert outcome.details["output_tail"].splitlines() == ["trying", "disk full"]


async def test_a_working_directory_that_is_a_file_is_said_in_words(tmp_path):
    regular = tmp_path / "notes.txt"
    regular.write_text("x")
    heal = RunScriptHeal(
        RunScriptOptions.model_validate({"action": "run_script", "command": ["true"], "cwd": str(regular)})
    )
    with pytest.raises(HealError, match=r"working directory .*notes\.txt is not a directory"):
        await heal.run(HealContext(clock=SystemClock(), monitor="bot"))
