"""The heartbeat check listening for the SDK's datagrams: real sockets, the real SDK Heartbeat."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from horus.checks import heartbeat as heartbeat_check
from horus.checks.base import Status
from horus.checks.heartbeat import HeartbeatCheck, HeartbeatOptions
from horus.checks.heartbeat_listener import CannotListen
from horus.config.loader import parse_config
from horus.errors import ConfigError
from horus_sdk import Heartbeat
from horus_sdk.formats import FORMAT_HEARTBEAT
from tests.support import free_port, wait_until

KEY = b"a-key-for-these-tests-0123456789"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "hb.key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    return path


def listening_check(listen: str, **options) -> HeartbeatCheck:
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    return HeartbeatCheck(HeartbeatOptions.model_validate({"type": "heartbeat", "listen": listen, **options}))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(address: str | tuple[str, int], payload: object) -> None:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.sendto(payload if isinstance(payload, bytes) else json.dumps(payload).encode(), address)


STARTED = time.monotonic() - 100  # each run's start, as the SDK sends it with every beat


def raw_beat(pid: int, channels: dict[str, float], *, sequence: int = 1) -> dict:
    """A beat as the SDK sends it; ``channels`` maps a name to how many seconds ago it progressed."""
    now = time.monotonic()
    return {
        "format": FORMAT_HEARTBEAT,
        "pid": pid,
        "sequence": sequence,
        "wall_time": time.time(),
        "monotonic": now,
        "started_monotonic": STARTED,
        "channels": {
            name: {"count": 1, "wall_time": time.time() - ago, "monotonic": now - ago} for name, ago in channels.items()
        },
    }


async def test_udp_beats_from_the_sdk_keep_the_service_healthy_and_their_end_makes_it_stale(probe_ctx, key_file):
    port = free_udp_port()
    check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=0.6, key_file=key_file)
    assert not check.inline, "datagrams arrive on the event loop"
    await check.open()
    try:
        hb = Heartbeat(udp=("127.0.0.1", port), interval=0.1, key_file=key_file)
        async with hb:
            result = await check.probe(probe_ctx)
            assert result.status is Status.HEALTHY, result.reason
            assert f"pid {os.getpid()}" in result.reason
        # The service stopped beating: stale once max_age has passed since the last datagram arrived.
        stale_at = time.monotonic() + 0.6
        result = await check.probe(probe_ctx)
        assert result.status is Status.HEALTHY
        assert result.recheck_in is not None and result.recheck_in <= 0.7
        await wait_until(lambda: time.monotonic() >= stale_at + 0.05, timeout=2)
        result = await check.probe(probe_ctx)
        assert result.status is Status.UNHEALTHY
        assert result.reason.startswith("heartbeat ") and "old, limit 600 ms" in result.reason
    finally:
        await check.aclose()


async def test_a_unix_socket_listener_sees_a_channel_that_stopped_and_removes_its_socket_on_close(
    probe_ctx, short_dir: Path
):
    path = short_dir / "hb.sock"
    check = listening_check(f"unix:{path}", max_age_seconds=5, channels={"ticks": 0.4})
    await check.open()
    assert path.is_socket()
    try:
        hb = Heartbeat(unix_socket=path, interval=0.05)
        async with hb:
            hb.progress("ticks")
            result = await check.probe(probe_ctx)
            assert result.status is Status.HEALTHY, result.reason
            # The loop keeps beating, but the feed went quiet.
            await wait_until(lambda: hb.channel_ages()["ticks"] > 0.5, timeout=3)
            result = await check.probe(probe_ctx)
            assert result.status is Status.UNHEALTHY
            assert result.reason.startswith("channel ticks: last progress ")
            assert result.reason.endswith("limit 400 ms")
    finally:
        await check.aclose()
    assert not path.exists(), "the socket file is removed when Horus stops listening"


async def test_a_channel_left_out_of_a_datagram_keeps_its_last_progress_until_the_process_changes(
    probe_ctx, short_dir: Path
):
    path = short_dir / "hb.sock"
    check = listening_check(f"unix:{path}", max_age_seconds=5, channels={"orders": 30})
    await check.open()
    try:
        send(str(path), raw_beat(4121, {"orders": 1.0}))
        send(str(path), raw_beat(4121, {}, sequence=2))  # too many channels to fit: orders left out
        await wait_until(lambda: check._listener.latest is not None and check._listener.latest.beat["sequence"] == 2)
        assert (await check.probe(probe_ctx)).status is Status.HEALTHY
        # A restarted service (new pid) must not inherit its predecessor's progress.
        send(str(path), raw_beat(5000, {}))
        await wait_until(lambda: check._listener.latest.beat["pid"] == 5000)
        result = await check.probe(probe_ctx)
        # Beating for 100 s by its own clock without progress on orders, whose limit is 30 s.
        assert result.status is Status.UNHEALTHY
        assert result.reason == "channel orders: no progress recorded"
    finally:
        await check.aclose()


async def test_no_datagram_at_all_is_unhealthy_after_max_age_and_names_what_was_ignored(probe_ctx, key_file):
    port = free_udp_port()
    check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=0.3, key_file=key_file)
    await check.open()
    try:
        send(("127.0.0.1", port), b"not json")
        send(("127.0.0.1", port), {"format": "something-else"})
        result = await check.probe(probe_ctx)  # waits up to max_age for a first beat
        assert result.status is Status.UNHEALTHY
        assert result.reason.startswith(f"no heartbeat received on udp://127.0.0.1:{port} in ")
        assert result.reason.endswith("; 2 datagrams ignored: not signed")
    finally:
        await check.aclose()


async def test_right_after_horus_starts_a_missing_first_beat_is_not_yet_a_failure(probe_ctx, monkeypatch, key_file):
    monkeypatch.setattr(heartbeat_check, "FIRST_BEAT_WAIT_SECONDS", 0.1)
    check = listening_check(f"udp://127.0.0.1:{free_udp_port()}", max_age_seconds=30, key_file=key_file)
    await check.open()
    try:
        result = await check.probe(probe_ctx)
        assert result.status is Status.UNKNOWN, "Horus has not listened long enough to know"
        assert "yet (listening for" in result.reason
    finally:
        await check.aclose()


async def test_a_file_and_datagrams_together_the_fresher_beat_counts(probe_ctx, tmp_path, short_dir):
    path = short_dir / "hb.sock"
    check = HeartbeatCheck(
        HeartbeatOptions.model_validate(
            {
                "type": "heartbeat",
                "path": str(tmp_path / "missing.json"),
                "listen": f"unix:{path}",
                "max_age_seconds": 5,
            }
        )
    )
    await check.open()
    try:
        send(str(path), raw_beat(4121, {}))
        await wait_until(lambda: check._listener.latest is not None)
        result = await check.probe(probe_ctx)
        assert result.status is Status.HEALTHY, "a full disk stops the file, not the datagrams"
    finally:
        await check.aclose()


async def test_an_address_in_use_cannot_be_opened_and_is_a_probe_error_not_a_failure(probe_ctx, key_file):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=1, key_file=key_file)
        with pytest.raises(CannotListen):
            await check.open()
        result = await check.probe(probe_ctx)
        await check.aclose()
    assert result.status is Status.ERROR
    assert result.reason.startswith(f"cannot listen on udp://127.0.0.1:{port}: ")


async def test_a_stale_socket_file_is_replaced_but_a_regular_file_is_never_removed(probe_ctx, short_dir):
    stale = short_dir / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    leftover.bind(str(stale))
    leftover.close()  # a killed Horus leaves its socket file behind
    check = listening_check(f"unix:{stale}", max_age_seconds=1)
    await check.open()
    send(str(stale), raw_beat(1, {}))
    await wait_until(lambda: check._listener.latest is not None)
    await check.aclose()

    precious = short_dir / "notes.txt"
    precious.write_text("keep me")
    check = listening_check(f"unix:{precious}", max_age_seconds=1)
    with pytest.raises(CannotListen):
        await check.open()
    result = await check.probe(probe_ctx)
    await check.aclose()
    assert result.status is Status.ERROR and "cannot listen" in result.reason
    assert precious.read_text() == "keep me"


@pytest.mark.parametrize(
    ("check_options", "message"),
    [
        ({"max_age_seconds": 5}, "set path (the heartbeat file), listen (where datagrams arrive), or both"),
        ({"listen": "udp://localhost:9000", "max_age_seconds": 5}, "the host must be an IP address"),
        ({"listen": "udp://127.0.0.1:0", "max_age_seconds": 5}, "the port must be 1..65535"),
        ({"listen": "unix:relative.sock", "max_age_seconds": 5}, "a unix socket path must be absolute"),
        ({"listen": "tcp://127.0.0.1:80", "max_age_seconds": 5}, "use udp://IP:PORT"),
    ],
)
def test_listen_and_path_are_validated_with_located_messages(check_options, message):
    config = {"monitors": [{"name": "bot", "check": {"type": "heartbeat", **check_options}}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(config), suffix=".json")
    assert message in str(caught.value)
    assert "monitors[0] (bot).check" in str(caught.value)


def test_two_monitors_cannot_listen_on_one_address(key_file):
    listen = f"udp://127.0.0.1:{free_port()}"
    check = {"type": "heartbeat", "listen": listen, "key_file": str(key_file), "max_age_seconds": 5}
    config = {"monitors": [{"name": f"bot{i}", "check": check} for i in range(2)]}
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(config), suffix=".json")
    assert f"monitors[1] (bot1).check.listen: duplicate listen address '{listen}' (first used by monitors[0])" in str(
        caught.value
    )
