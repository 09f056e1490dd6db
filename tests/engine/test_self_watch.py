"""horus.engine.self_watch piece by piece: sd_notify from the environment, the scheduler's progress feeding
systemd's watchdog, and the previous run's crash record told once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from horus.clock import SystemClock
from horus.config.loader import load_config
from horus.config.models import SelfWatchSettings
from horus.engine.self_watch import SchedulerProgress, SelfWatch, SystemdNotifier, crash_dir_of, previous_crash
from horus.errors import ConfigError
from horus_sdk.formats import FORMAT_CRASH
from tests.support import wait_until

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="sd_notify speaks unix datagrams")


def abstract_name() -> str:
    return f"@horus-test-{uuid.uuid4().hex}"


def bound(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:] if name.startswith("@") else name)
    return sock


# -- the environment -------------------------------------------------------------------------------------


def test_without_notify_socket_systemd_is_not_told():
    assert SystemdNotifier.from_environment({"WATCHDOG_USEC": "1000000"}) is None


def test_an_abstract_notify_socket_with_a_watchdog_is_fed_at_half_its_limit():
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@systemd/notify", "WATCHDOG_USEC": "30000000"})
    assert notifier is not None
    assert notifier.address == "\0systemd/notify"
    assert notifier.watchdog_period == 15.0


def test_a_watchdog_armed_for_another_process_is_not_fed():
    environ = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    notifier = SystemdNotifier.from_environment(environ)
    assert notifier is not None and notifier.watchdog_period is None


@pytest.mark.parametrize("usec", ["soon", "0", "-5"])
def test_an_invalid_watchdog_usec_feeds_nothing_but_still_notifies(usec):
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": usec})
    assert notifier is not None and notifier.watchdog_period is None


def test_a_notify_socket_horus_cannot_speak_to_is_left_alone():
    assert SystemdNotifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_a_datagram_reaches_an_abstract_socket_and_a_missing_one_is_a_false_not_a_raise():
    name = abstract_name()
    with bound(name) as systemd:
        notifier = SystemdNotifier(name, None)
        assert notifier.send("READY=1", "STATUS=watching 3 monitors")
        assert systemd.recv(4096) == b"READY=1\nSTATUS=watching 3 monitors"
        notifier.close()
    assert SystemdNotifier(abstract_name(), None).send("WATCHDOG=1") is False


# -- the config ----------------------------------------------------------------------------------------


def test_a_warning_after_the_kill_is_a_config_error_that_says_why(tmp_path):
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "self_watch": {"warn_after_seconds": 90, "kill_after_seconds": 60},
                "monitors": [{"name": "x", "check": {"type": "file_exists", "path": str(tmp_path)}}],
            }
        )
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert "warn_after_seconds (90 s) must not be longer than kill_after_seconds (60 s)" in str(raised.value)


def test_crash_records_go_under_the_state_dir_unless_configured(tmp_path):
    assert crash_dir_of(SelfWatchSettings(), tmp_path) == tmp_path / "crashes"
    assert crash_dir_of(SelfWatchSettings(crash_dir=str(tmp_path / "c")), tmp_path) == tmp_path / "c"


# -- the previous run ----------------------------------------------------------------------------------


def write_record(crash_dir: Path, pid: int, wall_time: float) -> Path:
    path = crash_dir / f"horus-crash-{pid}.json"
    record = {
        "format": FORMAT_CRASH,
        "pid": pid,
        "wall_time": wall_time,
        "reason": "event loop blocked for 60.0 s",
        "stuck": {"file": "/srv/horus/engine/x.py", "line": 7, "function": "stuck_here"},
    }
    path.write_text(json.dumps(record))
    return path


def test_the_previous_runs_crash_record_is_told_once_then_only_a_newer_one(tmp_path):
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    assert previous_crash(crashes, tmp_path) is None
    write_record(crashes, 100, 1000.0)
    newest = write_record(crashes, 101, 2000.0)
    told = previous_crash(crashes, tmp_path)
    assert told is not None
    assert (told.path, told.pid, told.ended_at) == (newest, 101, 2000.0)
    assert told.summary == "event loop blocked for 60.0 s; stuck in stuck_here at x.py:7"
    assert previous_crash(crashes, tmp_path) is None, "told once"
    write_record(crashes, 102, 3000.0)
    later = previous_crash(crashes, tmp_path)
    assert later is not None and later.pid == 102


def test_a_crash_dir_with_junk_and_a_named_pipe_is_read_without_blocking(tmp_path):
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    (crashes / "horus-crash-1.json").write_text("not json")
    os.mkfifo(crashes / "horus-crash-2.json")
    (crashes / "notes.txt").write_text("ignored")
    assert previous_crash(crashes, tmp_path) is None
    assert previous_crash(tmp_path / "missing", tmp_path) is None


# -- progress and systemd's watchdog -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def fake_daemon(clock: object) -> SimpleNamespace:
    """What SelfWatch reads of a daemon: how late its scheduler is, its clock, monitors, notifier, `watching`.
    ``due`` holds the monotonic times the scheduler's checks are due."""
    due: list[float] = []
    return SimpleNamespace(
        due=due,
        overdue_seconds=lambda now: max(0.0, now - min(due)) if due else 0.0,
        clock=clock,
        monitors={"a": object(), "b": object()},
        notifier=None,
        watching=asyncio.Event(),
    )


async def test_the_scheduler_is_behind_by_its_earliest_overdue_check_and_only_once_watching():
    clock = Clock()
    daemon = fake_daemon(clock)
    progress = SchedulerProgress(daemon)  # type: ignore[arg-type]
    assert progress.behind_seconds() == 0.0
    daemon.due.append(clock.now - 12.5)
    assert progress.behind_seconds() == 12.5
    assert progress.channel_ages(clock.now) == {}, "not a stall before monitoring has started"
    daemon.watching.set()
    assert progress.channel_ages(clock.now + 1) == {"scheduler": 13.5}
    daemon.due.clear()
    assert progress.behind_seconds() == 0.0


class Listener:
    def __init__(self) -> None:
        self.name = abstract_name()
        self.sock = bound(self.name)
        self.sock.setblocking(False)
        self.lines: list[str] = []

    async def until(self, wanted: str, *, count: int = 1, prefix: bool = False, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while sum(line == wanted or (prefix and line.startswith(wanted)) for line in self.lines) < count:
                data = await loop.sock_recv(self.sock, 4096)
                self.lines.extend(data.decode().split("\n"))

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.lines.extend(self.sock.recv(4096).decode().split("\n"))


async def test_systemds_watchdog_is_fed_only_while_the_scheduler_keeps_up(tmp_path):
    systemd = Listener()
    daemon = fake_daemon(SystemClock())
    settings = SelfWatchSettings(enabled=False, max_behind_seconds=0.5)
    environ = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "100000"}  # fed every 50 ms
    watch = SelfWatch(settings, tmp_path, daemon, environ=environ)  # type: ignore[arg-type]
    stop = asyncio.Event()
    try:
        async with watch.watching(stop):
            await asyncio.sleep(0.2)
            assert systemd.lines == [], "READY=1 waits until monitoring has started"
            daemon.watching.set()
            await systemd.until("READY=1")
            assert "STATUS=watching 2 monitors" in systemd.lines
            await systemd.until("WATCHDOG=1", count=3)

            daemon.due.append(time.monotonic() - 5.0)  # a check 5 s overdue
            await systemd.until("STATUS=watching 2 monitors; the scheduler is 5.", prefix=True)
            systemd.lines.clear()
            await asyncio.sleep(0.3)  # six periods
            systemd.drain()
            assert "WATCHDOG=1" not in systemd.lines

            daemon.due.clear()
            await systemd.until("WATCHDOG=1")
            assert "STATUS=watching 2 monitors" in systemd.lines
            stop.set()
            await systemd.until("STOPPING=1")
    finally:
        systemd.sock.close()


class Phone:
    host = "mini"

    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event, *, immediately: bool = False) -> None:
        self.events.append(event)


async def test_a_restart_after_the_watchdog_ended_horus_is_told_to_the_operator_once_monitoring_runs(tmp_path):
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    record = write_record(crashes, 4121, time.time() - 30)
    daemon = fake_daemon(SystemClock())
    daemon.notifier = phone = Phone()
    watch = SelfWatch(SelfWatchSettings(enabled=False), tmp_path, daemon, environ={})  # type: ignore[arg-type]
    async with watch.watching(asyncio.Event()):
        assert watch.previous is not None and watch.previous.pid == 4121
        assert phone.events == [], "told once the notifier runs, with monitoring"
        daemon.watching.set()
        await wait_until(lambda: bool(phone.events), timeout=10)
    [event] = phone.events
    assert event.title == "Horus on mini was hung and was restarted"
    assert event.kind == "horus_failed", "a channel that filters for Horus's own failures must get it"
    assert "pid 4121" in event.message
    assert "event loop blocked for 60.0 s; stuck in stuck_here at x.py:7" in event.message
    assert str(record) in event.message
