from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest
from pydantic import ValidationError

from horus.checks.base import Status
from horus.checks.process_alive import ProcessAliveCheck, ProcessAliveOptions
from tests.process_support import ProcessSpawner


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def make_check(pattern: str, **options: object) -> ProcessAliveCheck:
    return ProcessAliveCheck(
        ProcessAliveOptions.model_validate({"type": "process_alive", "process_pattern": pattern, **options})
    )


async def test_enough_matching_processes_are_healthy_and_the_reason_names_their_pids(spawner, probe_ctx):
    marker = spawner.marker()
    first, second = sorted([spawner.detached(marker).pid, spawner.detached(marker).pid])
    result = await make_check(marker, min_count=2).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == f"2 processes match '{marker}' (pids {first}, {second})"
    assert result.details["pids"] == [first, second]


async def test_no_matching_process_is_unhealthy(spawner, probe_ctx):
    marker = spawner.marker()
    result = await make_check(marker).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"no process matches '{marker}'"


async def test_fewer_matches_than_min_count_is_unhealthy_and_says_the_minimum(spawner, probe_ctx):
    marker = spawner.marker()
    only = spawner.detached(marker)
    result = await make_check(marker, min_count=2).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"1 process matches '{marker}' (pid {only.pid}), minimum 2"


async def test_a_subprocess_of_horus_mentioning_the_pattern_is_not_mistaken_for_the_service(spawner, probe_ctx):
    marker = spawner.marker()
    health_command = spawner.child(marker)  # like `pgrep -f <pattern>` run by a command check
    assert psutil.pid_exists(health_command.pid)
    result = await make_check(marker).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY


async def test_a_regex_pattern_is_searched_for_in_the_full_command_line(spawner, probe_ctx):
    marker = spawner.marker()
    target = spawner.detached(marker)
    result = await make_check(rf"time\.sleep\(\d+\) {marker}$", regex=True).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert f"(pid {target.pid})" in result.reason


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"process_pattern": ""}, "must not be empty"),
        ({"process_pattern": "main.py (", "regex": True}, "not a valid regular expression"),
        ({"process_pattern": "main.py|", "regex": True}, "matches every process"),
        ({"process_pattern": "main.py", "min_count": 0}, "greater than or equal to 1"),
        ({"process_pattern": "main.py", "name": "bot"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_rejected_at_config_time(options, message):
    with pytest.raises(ValidationError, match=message):
        ProcessAliveOptions.model_validate({"type": "process_alive", **options})


def test_the_check_type_is_process_alive_and_defaults_to_one_substring_match():
    options = ProcessAliveOptions.model_validate({"type": "process_alive", "process_pattern": "main.py ("})
    assert ProcessAliveCheck.type == "process_alive"
    assert (options.regex, options.min_count) == (False, 1)
