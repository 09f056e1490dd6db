"""Heartbeat(key_file=...): every datagram is signed with the key, and a key that cannot be read never raises
into the service."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from horus_sdk.formats import FORMAT_HEARTBEAT, read_json
from horus_sdk.heartbeat import MAX_DATAGRAM_BYTES, SIGNATURE_PREFIX, Heartbeat, read_key_file
from tests.support import wait_until

KEY = b"0123456789abcdef-a-test-key"


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "hb.key"
    path.write_bytes(KEY + b"\n")  # a trailing newline, as `echo` and editors leave one
    path.chmod(0o600)
    return path


@pytest.fixture
def receiver(short_dir: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_dir / "hb.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(65536))
        except BlockingIOError:
            return messages


def verified(datagram: bytes, key: bytes) -> dict:
    """The beat in a signed datagram, after checking its HMAC-SHA256 as Horus does."""
    head, newline, body = datagram.partition(b"\n")
    assert newline and head.startswith(SIGNATURE_PREFIX), datagram[:40]
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    assert hmac.compare_digest(head[len(SIGNATURE_PREFIX) :], expected)
    return json.loads(body)


async def test_every_datagram_carries_the_hmac_of_its_json_under_the_key(key_file, receiver):
    async with Heartbeat(interval=60, unix_socket=receiver.getsockname(), key_file=key_file) as hb:
        hb.progress("scan")
    beats = [verified(d, KEY) for d in drain(receiver)]
    assert [b["sequence"] for b in beats] == [1, 2]
    assert beats[0]["format"] == FORMAT_HEARTBEAT and beats[1]["channels"]["scan"]["count"] == 1
    assert hb.last_error is None


async def test_a_signed_datagram_with_many_channels_still_fits_the_limit(key_file, receiver):
    async with Heartbeat(interval=60, unix_socket=receiver.getsockname(), key_file=key_file) as hb:
        for i in range(300):
            hb.progress(f"market-{i:03d}-" + "x" * 40)
    last = drain(receiver)[-1]
    assert len(last) <= MAX_DATAGRAM_BYTES
    assert 0 < len(verified(last, KEY)["channels"]) < 300


async def test_a_missing_key_sends_nothing_says_why_and_is_read_again_later(tmp_path, receiver, monkeypatch):
    from horus_sdk import heartbeat as module

    monkeypatch.setattr(module, "_KEY_RETRY_SECONDS", 0.05)
    key_file = tmp_path / "later.key"
    path = tmp_path / "hb.json"
    async with Heartbeat(path, interval=0.02, unix_socket=receiver.getsockname(), key_file=key_file) as hb:
        await wait_until(lambda: hb.sequence >= 3)
        assert drain(receiver) == [], "an unsigned beat would be ignored by Horus: none is sent"
        assert hb.last_error is not None and hb.last_error.startswith(f"key_file {key_file}: ")
        assert read_json(path, FORMAT_HEARTBEAT)["sequence"] >= 3, "the file sink goes on"
        key_file.write_bytes(KEY)
        key_file.chmod(0o600)
        await wait_until(lambda: len(drain(receiver)) > 0, timeout=3)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"short\n", "the key is 5 bytes, at least 16"), (b"x" * 5000, "longer than 4096 bytes")],
)
def test_a_key_file_that_holds_no_key_is_refused(tmp_path, content, message):
    path = tmp_path / "hb.key"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_key_file(path)


def test_a_fifo_in_place_of_the_key_file_does_not_block(tmp_path):
    path = tmp_path / "hb.key"
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(ValueError, match="not a regular file"):
        read_key_file(path)
    assert time.monotonic() - started < 1


async def test_signing_costs_little_per_beat(key_file, receiver):
    hb = Heartbeat(interval=60, unix_socket=receiver.getsockname(), key_file=key_file)
    async with hb:
        for i in range(20):
            hb.progress(f"channel-{i}")
        started = time.perf_counter()
        for _ in range(200):
            hb._beat()
            drain(receiver)
        per_beat = (time.perf_counter() - started) / 200
    assert per_beat < 0.002, f"{per_beat * 1e6:.0f} us per signed beat"
