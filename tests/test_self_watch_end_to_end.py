"""Horus watched itself, from the user's side: a real `horus run` whose event loop is made to hang.

Under a shell restart loop (what launchd's KeepAlive does), the SDK's LoopWatchdog ends the hung Horus with a
crash record, the loop brings it back, the restarted Horus says why its previous run ended and does not heal
again inside the cooldown. Under systemd (a NOTIFY_SOCKET the test binds), READY=1 arrives once monitoring
started, WATCHDOG=1 keeps arriving while Horus is healthy and stops once its loop hangs, and STOPPING=1
arrives at a clean stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = [sys.executable, "-m", "horus"]
KILL_AFTER = 2.0
KILL_GRACE = 0.5
# Beyond kill_after and the grace: the watcher's own step (a quarter second), writing the record, a busy CI.
MARGIN = 6.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux's")


def write_config(tmp_path: Path, *, kill_after: float, heals: Path, healed: str = "healed") -> Path:
    """One monitor that fails for good (its file never appears) and is healed by a script, then held back by an
    hour's cooldown."""
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0, "startup_grace_seconds": 0},
                "self_watch": {
                    "warn_after_seconds": min(1.0, kill_after),
                    "kill_after_seconds": kill_after,
                    "kill_grace_seconds": KILL_GRACE,
                },
                "monitors": [
                    {
                        "name": "bot",
                        "interval_seconds": 0.2,
                        "min_failures_to_heal": 1,
                        "heal_cooldown_seconds": 3600,
                        "check": {"type": "file_exists", "path": str(tmp_path / "never-written")},
                        "heal": {"action": "run_script", "command": f'echo "{healed}" >> {heals}', "shell": True},
                    }
                ],
            }
        )
    )
    return config


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_a_hung_horus_is_ended_with_a_crash_record_and_restarted_without_a_second_heal(tmp_path):
    heals, state, events = tmp_path / "heals.txt", tmp_path / "state", tmp_path / "events.jsonl"
    config = write_config(tmp_path, kill_after=KILL_AFTER, heals=heals)
    horus = f"{' '.join(HORUS)} run -c {config} --state-dir {state} --log-format json"
    # Only the first run hangs: the loop clears the variable for every run after it.
    script = f"hang=2; while true; do HORUS_TEST_HANG_LOOP_AFTER=$hang {horus} >> {events} 2>&1; hang=; sleep 0.2; done"
    loop = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    log = EventLog(events)
    try:
        wait_until_sync(lambda: log.named("self_watch.test_hang"), timeout=60)
        hung_at = time.monotonic()
        [armed] = log.named("self_watch.test_hang_armed")
        first_pid = armed["pid"]
        assert lines(heals) == ["healed"], "the failing monitor was healed once before the hang"

        wait_until_sync(lambda: not psutil.pid_exists(first_pid), timeout=KILL_AFTER + KILL_GRACE + 30)
        took = time.monotonic() - hung_at
        assert took <= KILL_AFTER + KILL_GRACE + MARGIN, f"the hung Horus lived {took:.1f} s after its hang"
        record_path = state / "crashes" / f"horus-crash-{first_pid}.json"
        assert record_path.is_file()
        record = json.loads(record_path.read_text())
        assert record["kind"] == "loop_blocked"
        assert record["stuck"]["function"] == "_hang_the_loop_for_test"

        # The loop brings Horus back; it says why the previous run ended, and where it was stuck.
        wait_until_sync(lambda: log.named("horus.previous_run_ended_by_watchdog"), timeout=60)
        [told] = log.named("horus.previous_run_ended_by_watchdog")
        assert told["pid"] == first_pid
        assert told["record"] == str(record_path)
        assert "event loop blocked" in told["reason"]
        assert "_hang_the_loop_for_test" in told["reason"]

        # The restarted Horus sees the monitor failing again, and holds the heal back: the cooldown was persisted.
        def second_run() -> list[dict]:
            seen = log.events()
            return seen[seen.index(told) :]

        # Five failed looks (a second): each one a heal would follow, but for the cooldown.
        wait_until_sync(lambda: [e["event"] for e in second_run()].count("check.failed") >= 5, timeout=60)
        again = second_run()
        assert {e["why"] for e in again if e["event"] == "heal.suppressed"} <= {"cooldown"}
        assert [e["event"] for e in again].count("horus.started") == 1
        assert not [e for e in again if e["event"] == "heal.started"]
        assert lines(heals) == ["healed"]
        assert len(log.named("heal.started")) == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(timeout=10)


class FakeSystemd:
    """A NOTIFY_SOCKET in the abstract namespace, as systemd gives one: each datagram with when it arrived."""

    def __init__(self) -> None:
        self.name = f"@horus-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.received: list[tuple[float, list[str]]] = []

    def receive_until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not received within {timeout} s; got {self.received}")
            self.sock.settimeout(left)
            with contextlib.suppress(TimeoutError):
                data = self.sock.recv(4096)
                self.received.append((time.monotonic(), data.decode().split("\n")))

    def drain(self) -> None:
        """Take in what has arrived already, without waiting."""
        self.sock.setblocking(False)
        try:
            with contextlib.suppress(BlockingIOError):
                while True:
                    self.received.append((time.monotonic(), self.sock.recv(4096).decode().split("\n")))
        finally:
            self.sock.setblocking(True)

    def lines(self, since: float = 0.0) -> list[str]:
        return [line for at, datagram in self.received if at >= since for line in datagram]

    def count(self, line: str, since: float = 0.0) -> int:
        return self.lines(since).count(line)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd():
    fake = FakeSystemd()
    yield fake
    fake.close()


def spawn_under_systemd(tmp_path: Path, systemd: FakeSystemd, **env: str) -> tuple[subprocess.Popen[bytes], EventLog]:
    # The heal says whether systemd's variables reached it: they must not, or it could speak for Horus.
    # (Plain $NAME: Horus's config loader expands ${NAME} itself.)
    healed = "healed NOTIFY_SOCKET=[$NOTIFY_SOCKET] WATCHDOG_USEC=[$WATCHDOG_USEC]"
    config = write_config(tmp_path, kill_after=600, heals=tmp_path / "heals.txt", healed=healed)
    log = EventLog(tmp_path / "events.jsonl")
    # 0.4 s: WATCHDOG=1 every 0.2 s.
    overrides = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "400000", **env}
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        daemon = spawn_daemon(config, tmp_path / "state", log.path)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return daemon, log


@pytest.mark.slow
def test_systemd_hears_ready_then_watchdog_while_healthy_then_stopping(tmp_path, systemd):
    daemon, log = spawn_under_systemd(tmp_path, systemd)
    try:
        systemd.receive_until(lambda: "READY=1" in systemd.lines(), timeout=60)
        assert log.named("horus.started"), "READY=1 comes once monitoring has started"
        assert "STATUS=watching 1 monitor" in systemd.lines()
        ready_at = next(at for at, datagram in systemd.received if "READY=1" in datagram)
        systemd.receive_until(lambda: systemd.count("WATCHDOG=1", since=ready_at) >= 5, timeout=30)
        wait_until_sync(lambda: lines(tmp_path / "heals.txt"), timeout=30)
        assert lines(tmp_path / "heals.txt") == ["healed NOTIFY_SOCKET=[] WATCHDOG_USEC=[]"]
        assert stop_daemon(daemon) == 0
        systemd.receive_until(lambda: "STOPPING=1" in systemd.lines(), timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)


@pytest.mark.slow
def test_systemd_stops_hearing_watchdog_once_the_loop_hangs(tmp_path, systemd):
    daemon, log = spawn_under_systemd(tmp_path, systemd, HORUS_TEST_HANG_LOOP_AFTER="1.5")
    try:
        systemd.receive_until(lambda: systemd.count("WATCHDOG=1") >= 3, timeout=60)
        wait_until_sync(lambda: log.named("self_watch.test_hang"), timeout=30)
        # Horus logs the hang on its loop after its last send: whatever it sent before is in the socket now.
        systemd.drain()
        hung_at = time.monotonic()
        # Ten watchdog periods of silence.
        with contextlib.suppress(AssertionError):
            systemd.receive_until(lambda: False, timeout=2.0)
        assert systemd.count("WATCHDOG=1", since=hung_at) == 0
        assert daemon.poll() is None, "a kill_after longer than the test: the hung Horus is still there"
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
