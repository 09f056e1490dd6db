"""process_alive beside a real shell restart loop whose command line holds the pattern too."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.process_alive import ProcessAliveCheck, ProcessAliveOptions
from horus.clock import SystemClock
from tests.restart_loop import RestartLoop
from tests.support import wait_until


@pytest.fixture
def restart_loop() -> Iterator[RestartLoop]:
    loop = RestartLoop()
    yield loop
    loop.close()


def make_check(pattern: str, **options: object) -> ProcessAliveCheck:
    return ProcessAliveCheck(
        ProcessAliveOptions.model_validate({"type": "process_alive", "process_pattern": pattern, **options})
    )


CTX = ProbeContext(clock=SystemClock(), http=None)  # type: ignore[arg-type]  # process_alive makes no HTTP calls


async def test_by_default_the_loop_alone_keeps_the_check_healthy_while_its_service_is_down(restart_loop):
    check = make_check(restart_loop.pattern)
    assert (await check.probe(CTX)).reason.startswith("2 processes match")
    os.kill(restart_loop.first_service.pid, signal.SIGKILL)
    await wait_until(lambda: restart_loop.service() is None)
    down = await check.probe(CTX)
    assert down.status is Status.HEALTHY, "documented: the wrapper is counted; ignore_wrappers is the opt-in"


async def test_with_ignore_wrappers_a_loop_whose_service_is_down_is_not_counted(restart_loop):
    check = make_check(restart_loop.pattern, ignore_wrappers=True)
    up = await check.probe(CTX)
    assert up.status is Status.HEALTHY
    assert up.reason.startswith("1 process matches")
    assert f"not counting pid {restart_loop.shell.pid}, a wrapper" in up.reason
    os.kill(restart_loop.first_service.pid, signal.SIGKILL)
    await wait_until(lambda: restart_loop.service() is None)
    down = await check.probe(CTX)
    assert down.status is Status.UNHEALTHY, down.reason
    assert down.reason.startswith(f"no process matches '{restart_loop.pattern}'")
    assert f"not counting pid {restart_loop.shell.pid}, a wrapper" in down.reason
    restart_loop.wait_for_service(other_than=restart_loop.first_service.pid)
    assert (await check.probe(CTX)).status is Status.HEALTHY
