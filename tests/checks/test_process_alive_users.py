"""process_alive counts only processes of the service's user: another local user's process whose command
line holds the pattern must not keep a dead service looking alive."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from horus.checks.base import Status
from horus.checks.process_alive import ProcessAliveCheck, ProcessAliveOptions
from tests.other_user import other_user, process_of
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


async def test_a_process_of_another_user_does_not_make_a_dead_service_look_alive(spawner, probe_ctx):
    user = other_user()
    marker = spawner.marker()
    with process_of(user, marker) as foreign:
        result = await make_check(marker).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith(f"no process matches '{marker}'; not counting pid {foreign} of {user.name}")
    assert "set user:" in result.reason, "the reason says how to watch a service of another user"
    assert result.details["count"] == 0
    assert result.details["other_users_pids"] == [foreign]


async def test_a_process_of_another_user_is_not_counted_beside_the_service(spawner, probe_ctx):
    user = other_user()
    marker = spawner.marker()
    service = spawner.detached(marker)
    with process_of(user, marker) as foreign:
        result = await make_check(marker, min_count=2).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.details["pids"] == [service.pid]
    assert f"not counting pid {foreign} of {user.name}" in result.reason


async def test_with_user_set_only_that_users_processes_count(spawner, probe_ctx):
    user = other_user()
    marker = spawner.marker()
    ours = spawner.detached(marker)  # Horus's own user (root here) is now the other one
    with process_of(user, marker) as service:
        by_name = await make_check(marker, user=user.name).probe(probe_ctx)
        by_uid = await make_check(marker, user=user.uid).probe(probe_ctx)
    assert by_name.status is Status.HEALTHY
    assert by_name.details["pids"] == [service]
    assert by_name.details["user"] == user.name
    assert f"not counting pid {ours.pid} of root" in by_name.reason
    assert by_uid.details["pids"] == [service]


async def test_without_another_users_process_the_reason_is_unchanged(spawner, probe_ctx):
    marker = spawner.marker()
    result = await make_check(marker).probe(probe_ctx)
    assert result.reason == f"no process matches '{marker}'"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("no-such-user-horus", "no such user on this machine"),
        ("", "must be a user name or a numeric uid"),
        (-1, "a uid is 0..4294967294"),
        (True, "must be a user name or a numeric uid"),
        ([], "must be a user name or a numeric uid"),
    ],
)
def test_a_user_that_cannot_be_resolved_is_rejected_at_config_time(user, message):
    with pytest.raises(ValidationError, match=message):
        ProcessAliveOptions.model_validate({"type": "process_alive", "process_pattern": "main.py", "user": user})


def test_a_numeric_uid_without_a_name_is_accepted():
    # Containers run services as uids that have no passwd entry.
    options = ProcessAliveOptions.model_validate({"type": "process_alive", "process_pattern": "x", "user": 424242})
    assert options.user == 424242
