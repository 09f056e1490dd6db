"""kill_process signals only processes of the service's user: another local user's process whose command
line holds the pattern must neither be signalled nor make the heal refuse ("2 processes match")."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from horus.clock import SystemClock
from horus.errors import HealError, HealRefused
from horus.heals.base import HealContext
from horus.heals.kill_process import KillProcessHeal, KillProcessOptions, refusal_now
from tests.other_user import other_user, process_of
from tests.process_support import ProcessSpawner
from tests.support import wait_until

CTX = HealContext(clock=SystemClock(), monitor="polymarket-bot")


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def options(pattern: str, **extra: object) -> KillProcessOptions:
    return KillProcessOptions.model_validate({"action": "kill_process", "process_pattern": pattern, **extra})


async def test_a_process_of_another_user_neither_blocks_the_kill_nor_is_signalled(spawner):
    user = other_user()
    marker = spawner.marker()
    hung = spawner.detached(marker)
    with process_of(user, marker) as foreign:
        assert refusal_now(options(marker)) is None
        outcome = await KillProcessHeal(options(marker)).run(CTX)
        assert psutil.Process(foreign).is_running()
    assert outcome.ok
    assert [t["pid"] for t in outcome.details["targets"]] == [hung.pid]
    await wait_until(lambda: not hung.is_running())


async def test_only_a_process_of_another_user_matching_is_nothing_to_kill_and_says_why(spawner):
    user = other_user()
    marker = spawner.marker()
    with process_of(user, marker) as foreign:
        with pytest.raises(HealError) as failed:
            await KillProcessHeal(options(marker)).run(CTX)
        assert psutil.Process(foreign).is_running()
    assert not isinstance(failed.value, HealRefused)
    message = str(failed.value)
    assert message.startswith(
        f"no process matches '{marker}'; nothing to kill; not counting pid {foreign} of {user.name}"
    )
    assert "set user:" in message


async def test_with_user_set_the_service_of_that_user_is_killed_and_horuss_own_are_not(spawner):
    user = other_user()
    marker = spawner.marker()
    ours = spawner.detached(marker)
    with process_of(user, marker) as service:
        outcome = await KillProcessHeal(options(marker, user=user.name)).run(CTX)
        assert outcome.ok
        assert [t["pid"] for t in outcome.details["targets"]] == [service]
        await wait_until(lambda: not psutil.pid_exists(service) or psutil.Process(service).status() == "zombie")
    assert ours.is_running()
