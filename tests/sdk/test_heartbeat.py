"""Heartbeat: beats come from the event loop, reach every sink, and never raise into the service."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from horus_sdk.formats import FORMAT_HEARTBEAT, read_json
from horus_sdk.heartbeat import DATING_PERIOD, MAX_DATAGRAM_BYTES, Heartbeat
from tests.support import wait_until


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that run under systemd must not notify the real manager."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def bound_datagram_socket(family: socket.AddressFamily, address: object) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    sock = bound_datagram_socket(socket.AF_INET, ("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def unix_receiver(short_dir: Path) -> Iterator[socket.socket]:
    sock = bound_datagram_socket(socket.AF_UNIX, str(short_dir / "hb.sock"))
    yield sock
    sock.close()


async def receive(sock: socket.socket, timeout: float = 2.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await asyncio.get_running_loop().sock_recv(sock, 65536)


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued (a unix datagram is queued by the time sendto returns)."""
    messages = []
    while True:
        try:
            messages.append(sock.recv(65536))
        except BlockingIOError:
            return messages


@pytest.fixture
async def quiet_heartbeat(tmp_path: Path) -> AsyncIterator[Heartbeat]:
    async with Heartbeat(tmp_path / "heartbeat.json", interval=0.05) as hb:
        yield hb


async def test_heartbeat_file_is_valid_and_sequence_increases(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    async with Heartbeat(path, interval=0.05) as hb:
        first = read_json(path, FORMAT_HEARTBEAT)
        await wait_until(lambda: hb.sequence >= first["sequence"] + 2)
        later = read_json(path, FORMAT_HEARTBEAT)

    assert set(first) == {
        "format",
        "pid",
        "sequence",
        "boot_id",
        "wall_time",
        "monotonic",
        "interval",
        "started_monotonic",
        "channels",
    }
    assert first["pid"] == os.getpid()
    assert first["interval"] == 0.05
    assert later["sequence"] > first["sequence"]
    assert later["started_monotonic"] == first["started_monotonic"] <= first["monotonic"]
    assert later["monotonic"] > first["monotonic"]
    assert abs(later["wall_time"] - time.time()) < 60
    # CLOCK_MONOTONIC is system-wide, so the daemon can compare it with its own clock.
    assert later["monotonic"] <= time.monotonic()


async def test_channels_record_progress_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    async with Heartbeat(path, interval=0.05) as hb:
        before = time.monotonic()
        for _ in range(3):
            hb.progress("scan")
        hb.progress("orders")
        start = hb.sequence
        await wait_until(lambda: hb.sequence > start)
        channels = read_json(path, FORMAT_HEARTBEAT)["channels"]

    assert channels["scan"]["count"] == 3
    assert channels["orders"]["count"] == 1
    assert channels["scan"]["monotonic"] >= before
    assert abs(channels["scan"]["wall_time"] - time.time()) < 60


async def test_leaving_the_block_stops_the_task_and_writes_a_last_beat(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    hb = Heartbeat(path, interval=60)
    async with hb:
        assert hb.running
        hb.progress("scan")

    assert not hb.running
    final = read_json(path, FORMAT_HEARTBEAT)
    assert final["sequence"] == hb.sequence == 2  # the beat on entry and the last one on exit
    assert final["channels"]["scan"]["count"] == 1


async def test_a_blocked_loop_writes_no_heartbeats(tmp_path: Path) -> None:
    """The 7-hour hang: a thread would keep beating; a loop-driven heartbeat goes silent."""
    path = tmp_path / "heartbeat.json"
    interval = 0.1
    async with Heartbeat(path, interval=interval) as hb:
        await wait_until(lambda: hb.sequence >= 2)
        before = read_json(path, FORMAT_HEARTBEAT)["sequence"]
        seen: set[int] = set()
        stop = threading.Event()

        def watch_file() -> None:
            while not stop.is_set():
                seen.add(read_json(path, FORMAT_HEARTBEAT)["sequence"])
                stop.wait(0.005)

        watcher = threading.Thread(target=watch_file)
        watcher.start()
        try:
            time.sleep(3 * interval)  # the service blocks its own loop
        finally:
            stop.set()
            watcher.join()

        assert seen == {before}
        assert hb.sequence == before
        await wait_until(lambda: hb.sequence > before)  # and beats resume with the loop


@pytest.mark.timeout(20)  # the bug this guards against hangs the loop, so bound it from outside
async def test_a_beat_slower_than_its_interval_does_not_starve_the_loop(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "heartbeat.json", interval=0.001)
    for i in range(3_000):  # encoding thousands of channels takes far longer than 1 ms
        hb.progress(f"channel-{i}")
    async with hb:
        for _ in range(5):
            await asyncio.sleep(0.001)  # other coroutines still get their turn
        await wait_until(lambda: hb.sequence >= 3, timeout=5)


async def test_heartbeat_starts_no_thread(tmp_path: Path) -> None:
    threads = threading.active_count()
    async with Heartbeat(tmp_path / "heartbeat.json", interval=0.02) as hb:
        await wait_until(lambda: hb.sequence >= 3)
        assert threading.active_count() == threads


async def test_an_unwritable_path_never_raises_and_sets_last_error(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "heartbeat.json"
    async with Heartbeat(path, interval=0.02) as hb:
        assert hb.last_error is not None
        assert "missing-dir" in hb.last_error
        await wait_until(lambda: hb.sequence >= 3)  # the beat carries on
        hb.progress("scan")

    assert not path.exists()
    assert not list(tmp_path.iterdir())  # no temp file left behind either


async def test_channel_ages_and_snapshot(quiet_heartbeat: Heartbeat) -> None:
    hb = quiet_heartbeat
    hb.progress("scan")
    seen = time.monotonic()
    ages = hb.channel_ages(seen + 5)
    assert set(ages) == {"scan"}
    assert 5 - DATING_PERIOD <= ages["scan"] <= 5  # dated when seen: late, never early

    snapshot = hb.channels
    snapshot["scan"]["count"] = 99
    snapshot["other"] = {}
    assert hb.channels["scan"]["count"] == 1
    assert set(hb.channels) == {"scan"}


async def test_progress_is_dated_by_the_running_loop_within_the_dating_period(tmp_path: Path) -> None:
    # No beat within the test (interval 10 s) and no reader: only the loop's own looks date the progress.
    async with Heartbeat(tmp_path / "heartbeat.json", interval=10) as hb:
        made = time.monotonic()
        hb.progress("scan")
        await asyncio.sleep(1.0)
        looked = time.monotonic()
        age = hb.channel_ages(looked)["scan"]
    assert looked - made - DATING_PERIOD - 0.2 <= age <= looked - made


async def test_channel_ages_can_be_read_from_another_thread_while_channels_grow(
    quiet_heartbeat: Heartbeat,
) -> None:
    hb = quiet_heartbeat
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_ages() -> None:
        try:
            while not stop.is_set():
                hb.channel_ages(time.monotonic())
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read_ages)
    reader.start()
    try:
        for i in range(5_000):
            hb.progress(f"channel-{i}")
    finally:
        stop.set()
        reader.join()
    assert errors == []


async def test_udp_sink_carries_the_heartbeat_json(udp_receiver: socket.socket) -> None:
    host, port = udp_receiver.getsockname()
    async with Heartbeat(interval=0.05, udp=(host, port)) as hb:
        hb.progress("scan")
        data = await receive(udp_receiver)
        data = await receive(udp_receiver)  # the second carries the progress made after entry

    beat = json.loads(data)
    assert beat["format"] == FORMAT_HEARTBEAT
    assert beat["pid"] == os.getpid()
    assert beat["channels"]["scan"]["count"] == 1
    assert hb.last_error is None


async def test_unix_socket_sink_carries_the_heartbeat_json(unix_receiver: socket.socket) -> None:
    async with Heartbeat(interval=60, unix_socket=unix_receiver.getsockname()) as hb:
        hb.progress("scan")
    beats = [json.loads(m) for m in drain(unix_receiver)]

    assert [b["sequence"] for b in beats] == [1, 2]
    assert beats[1]["channels"]["scan"]["count"] == 1
    assert hb.last_error is None


async def test_unix_socket_in_the_abstract_namespace() -> None:
    name = f"horus-test-{uuid.uuid4().hex}"
    receiver = bound_datagram_socket(socket.AF_UNIX, "\0" + name)
    try:
        async with Heartbeat(interval=60, unix_socket="@" + name):
            pass
        assert len(drain(receiver)) == 2
    finally:
        receiver.close()


async def test_a_datagram_drops_channels_that_do_not_fit(tmp_path: Path, unix_receiver: socket.socket) -> None:
    path = tmp_path / "heartbeat.json"
    async with Heartbeat(path, interval=60, unix_socket=unix_receiver.getsockname()) as hb:
        for i in range(300):
            hb.progress(f"market-{i:03d}-" + "x" * 40)
    datagrams = drain(unix_receiver)

    last = datagrams[-1]
    assert len(last) <= MAX_DATAGRAM_BYTES
    beat = json.loads(last)
    assert 0 < len(beat["channels"]) < 300
    kept = len(beat["channels"])
    assert list(beat["channels"]) == [f"market-{i:03d}-" + "x" * 40 for i in range(kept)]  # the first ones
    assert len(read_json(path, FORMAT_HEARTBEAT)["channels"]) == 300  # the file keeps them all


async def test_sinks_without_a_listener_record_last_error(short_dir: Path) -> None:
    async with Heartbeat(interval=0.02, unix_socket=short_dir / "nobody.sock", sd_notify=False) as hb:
        await wait_until(lambda: hb.sequence >= 3)
    assert hb.last_error is not None
    assert "nobody.sock" in hb.last_error


async def test_sd_notify_sends_ready_once_and_watchdog_at_half_the_limit(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    notify = bound_datagram_socket(socket.AF_UNIX, str(short_dir / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: WATCHDOG=1 every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    messages: list[bytes] = []
    watchdog_times: list[float] = []
    try:
        # The beat interval is long: the watchdog keeps its own rhythm, set by systemd.
        async with Heartbeat(interval=60) as hb:
            while len(watchdog_times) < 4:
                messages.append(await receive(notify))
                if messages[-1] == b"WATCHDOG=1":
                    watchdog_times.append(time.monotonic())
            assert hb.sequence == 1
    finally:
        notify.close()

    assert messages[0] == b"READY=1"
    assert watchdog_times[-1] - watchdog_times[0] >= 0.25  # three periods of 0.1 s, never early
    assert messages.count(b"READY=1") == 1
    assert hb.last_error is None


async def test_sd_notify_without_watchdog_usec_sends_watchdog_each_beat(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    notify = bound_datagram_socket(socket.AF_UNIX, str(short_dir / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "notify.sock"))
    try:
        async with Heartbeat(interval=0.02, sd_notify=True) as hb:
            await wait_until(lambda: hb.sequence >= 3)
            beats = hb.sequence
            messages = drain(notify)
    finally:
        notify.close()

    assert messages[0] == b"READY=1"
    assert messages.count(b"READY=1") == 1
    assert messages.count(b"WATCHDOG=1") == beats


async def test_sd_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"horus-notify-{uuid.uuid4().hex}"
    notify = bound_datagram_socket(socket.AF_UNIX, "\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        async with Heartbeat(interval=60):
            assert drain(notify) == [b"READY=1", b"WATCHDOG=1"]
    finally:
        notify.close()


async def test_sd_notify_leaves_the_watchdog_of_another_process_alone(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    notify = bound_datagram_socket(socket.AF_UNIX, str(short_dir / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    try:
        async with Heartbeat(interval=0.02) as hb:
            await wait_until(lambda: hb.sequence >= 3)
            assert drain(notify) == [b"READY=1"]
    finally:
        notify.close()


async def test_sd_notify_is_off_by_default_and_when_disabled(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    notify = bound_datagram_socket(socket.AF_UNIX, str(short_dir / "notify.sock"))
    try:
        async with Heartbeat(interval=60):  # no $NOTIFY_SOCKET
            pass
        monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "notify.sock"))
        async with Heartbeat(interval=60, sd_notify=False):
            pass
        assert drain(notify) == []
    finally:
        notify.close()


async def test_sd_notify_without_a_manager_records_last_error(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "gone.sock"))
    async with Heartbeat(interval=0.02) as hb:
        await wait_until(lambda: hb.sequence >= 2)
    assert hb.last_error is not None
    assert "sd_notify" in hb.last_error


async def test_a_heartbeat_can_be_entered_again_after_it_ended(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "heartbeat.json", interval=60)
    async with hb:
        pass
    async with hb:
        pass
    assert read_json(tmp_path / "heartbeat.json", FORMAT_HEARTBEAT)["sequence"] == 4


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        Heartbeat(interval=0)
