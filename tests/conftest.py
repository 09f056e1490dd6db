from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from horus.checks.base import ProbeContext, new_probe_http_client
from horus.clock import SystemClock
from horus.testing import StubCommands
from tests.support import LoopbackHTTPServer, SilentServer

# What the suite's own supervisor may hand it: a CI runner under systemd (its notify socket and watchdog), or
# a horus-runner (its channel, lease and state dir). Every daemon, bot and runner a test starts inherits the
# environment, and must neither feed nor stop that supervisor, nor join its lease; a test that wants one
# sets its own.
for _inherited in (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "HORUS_RUNNER_FD",
    "HORUS_RUNNER_LEASE",
    "HORUS_RUNNER_VERSION",
    "HORUS_RUNNER_HANDOVER_TIMEOUT",
    "HORUS_STATE_DIR",
):
    os.environ.pop(_inherited, None)


@pytest.fixture
def stubs(tmp_path, monkeypatch) -> StubCommands:
    """Recording stand-ins for launchctl/systemctl/docker, first on PATH for this test."""
    stub_commands = StubCommands(tmp_path / "stub-bin")
    monkeypatch.setenv("PATH", stub_commands.prepend_to_path())
    return stub_commands


@pytest.fixture
async def probe_ctx() -> AsyncIterator[ProbeContext]:
    async with new_probe_http_client() as http:
        yield ProbeContext(clock=SystemClock(), http=http)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket addresses are limited to 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="horus-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def http_server() -> Iterator[LoopbackHTTPServer]:
    with LoopbackHTTPServer() as server:
        yield server


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (append them): each is killed and reaped at the test's end, pass or fail."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)
