"""Heartbeat datagrams that another local user can send: forged, replayed, with a huge timestamp, a flood of
channel names, or an address taken before Horus. Real sockets, the real SDK, a forger of another uid."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from horus.checks.base import Status
from horus.checks.heartbeat import HeartbeatCheck, HeartbeatOptions
from horus.checks.heartbeat_listener import CannotListen
from horus.config.loader import parse_config
from horus.errors import ConfigError
from horus_sdk import Heartbeat
from horus_sdk.formats import FORMAT_HEARTBEAT, boot_id
from horus_sdk.heartbeat import SIGNATURE_PREFIX, signature
from tests.support import EventLog, spawn_daemon, wait_until

OTHER_USER = "horus-test-other"
KEY = b"a-shared-heartbeat-key-0123456789"
SDK_SRC = Path(__file__).parents[2] / "sdk" / "src"

# Stdlib only, so that it runs as another user with the system's Python: sends each hex datagram given.
FORGER = r"""
import socket, sys
kind, address = sys.argv[1], sys.argv[2]
if kind == "udp":
    host, port = address.rsplit(":", 1)
    family, target = socket.AF_INET, (host, int(port))
else:
    family, target = socket.AF_UNIX, ("\0" + address[1:] if address.startswith("@") else address)
with socket.socket(family, socket.SOCK_DGRAM) as s:
    for data in sys.argv[3:]:
        s.sendto(bytes.fromhex(data), target)
"""

# The real SDK, run as the service's own user: beats to a unix socket for argv[2] seconds.
SDK_SERVICE = r"""
import asyncio, sys
from horus_sdk import Heartbeat
async def main():
    async with Heartbeat(unix_socket=sys.argv[1], interval=0.05) as hb:
        await asyncio.sleep(float(sys.argv[2]))
    assert hb.last_error is None, hb.last_error
asyncio.run(main())
"""


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int
    python: str

    def run(self, code: str, *args: str, env: dict[str, str] | None = None) -> None:
        argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", self.python, "-c", code]
        subprocess.run([*argv, *args], check=True, timeout=30, env=env, cwd="/")


@pytest.fixture(scope="module")
def other_user() -> OtherUser:
    """A second local user (created once, idempotently), to send datagrams as someone else."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create and become a second user")
    if shutil.which("setpriv") is None or shutil.which("useradd") is None:
        pytest.skip("needs setpriv and useradd (util-linux, passwd) to act as a second user")
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
            capture_output=True,
            text=True,
        )
        if made.returncode not in (0, 9):  # 9: created meanwhile by another test run
            pytest.skip(f"cannot create the user {OTHER_USER}: {made.stderr.strip()}")
        entry = pwd.getpwnam(OTHER_USER)
    # The test's own interpreter may sit in a directory only root can enter.
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    user = OtherUser(OTHER_USER, entry.pw_uid, entry.pw_gid, python)
    try:
        user.run("pass")
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot run {python} as {OTHER_USER}: {exc}")
    return user


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "hb.key"
    path.write_bytes(KEY + b"\n")
    path.chmod(0o600)
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_check(listen: str, **options) -> HeartbeatCheck:
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    return HeartbeatCheck(HeartbeatOptions.model_validate({"type": "heartbeat", "listen": listen, **options}))


def beat(
    *,
    pid: int = 4121,
    started: float | None = None,
    monotonic: float | None = None,
    sequence: int = 1,
    channels: dict | None = None,
) -> dict:
    now = time.monotonic() if monotonic is None else monotonic
    return {
        "format": FORMAT_HEARTBEAT,
        "pid": pid,
        "boot_id": boot_id(),
        "sequence": sequence,
        "wall_time": time.time(),
        "monotonic": now,
        "started_monotonic": now - 1 if started is None else started,
        "channels": channels or {},
    }


def signed(payload: dict, key: bytes = KEY) -> bytes:
    body = json.dumps(payload).encode()
    return SIGNATURE_PREFIX + signature(key, body) + b"\n" + body


def send(address: str | tuple[str, int], *datagrams: bytes) -> None:
    family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
    target = "\0" + address[1:] if isinstance(address, str) and address.startswith("@") else address
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        for data in datagrams:
            s.sendto(data, target)


async def ignored(check: HeartbeatCheck, count: int) -> None:
    await wait_until(lambda: sum(check._listener.ignored.values()) >= count, timeout=5)


# -- configuration -----------------------------------------------------------------------------------------


def config_issues(check: dict) -> str:
    config = {"monitors": [{"name": "bot", "check": {"type": "heartbeat", "max_age_seconds": 5, **check}}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(config), suffix=".json")
    return str(caught.value)


def test_udp_without_a_key_is_refused_at_config_time_with_how_to_add_one():
    issues = config_issues({"listen": "udp://127.0.0.1:9123"})
    assert "monitors[0] (bot).check: udp://127.0.0.1:9123 accepts datagrams from any local user" in issues
    assert "set key_file" in issues and "Heartbeat(..., key_file=...)" in issues
    assert "head -c 32 /dev/urandom" in issues


def test_a_key_file_others_can_read_is_refused_with_a_located_error(tmp_path):
    key = tmp_path / "hb.key"
    key.write_bytes(KEY)
    key.chmod(0o644)
    issues = config_issues({"listen": "udp://127.0.0.1:9123", "key_file": str(key)})
    assert f"monitors[0] (bot).check.key_file: {key} can be read or written by group or others (mode 0644)" in issues
    assert f"chmod 600 {key}" in issues


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it: No such file or directory"), (b"short", "the key is 5 bytes, at least 16")],
)
def test_a_key_file_that_is_missing_or_holds_no_key_is_a_located_error(tmp_path, content, message):
    key = tmp_path / "hb.key"
    if content is not None:
        key.write_bytes(content)
        key.chmod(0o600)
    issues = config_issues({"listen": "udp://127.0.0.1:9123", "key_file": str(key)})
    assert f"monitors[0] (bot).check.key_file: {key}: {message}" in issues


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"listen": "unix:/run/bot/hb.sock", "user": "no-such-user-here"}, "check.user: no such user"),
        ({"path": "/run/bot/hb.json", "user": "root"}, "user and key_file apply to listen:"),
        ({"listen": "udp://127.0.0.1:9123", "user": "root"}, "UDP does not say who sent a datagram"),
    ],
)
def test_user_is_validated(check, message):
    assert message in config_issues(check)


# -- forged, replayed ------------------------------------------------------------------------------------


async def test_a_forger_of_another_user_cannot_keep_a_silent_service_healthy_over_udp(
    probe_ctx, key_file, other_user, tmp_path
):
    port = free_udp_port()
    check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=0.6, key_file=key_file)
    await check.open()
    try:
        async with Heartbeat(udp=("127.0.0.1", port), interval=0.05, key_file=key_file) as hb:
            assert (await check.probe(probe_ctx)).status is Status.HEALTHY
        assert hb.last_error is None
        await wait_until(lambda: check._listener.latest.beat["sequence"] == hb.sequence)  # the last beat
        stale_at = time.monotonic() + 0.6
        # The service went silent; another user sends beats that look right, but cannot sign them.
        forged = [json.dumps(beat(pid=os.getpid(), sequence=100 + i)).encode() for i in range(2)]
        badly_signed = [signed(beat(pid=os.getpid(), sequence=200 + i), key=b"a-guess-at-the-key!!") for i in range(3)]
        while time.monotonic() < stale_at + 0.1:
            other_user.run(FORGER, "udp", f"127.0.0.1:{port}", *(d.hex() for d in forged + badly_signed))
        result = await check.probe(probe_ctx)
        assert result.status is Status.UNHEALTHY
        assert result.reason.startswith("heartbeat ") and "old, limit 600 ms; " in result.reason
        assert "datagrams ignored: " in result.reason and "bad signature" in result.reason
        assert "not signed" in result.reason
    finally:
        await check.aclose()


async def test_an_abstract_socket_ignores_a_forger_of_another_user(probe_ctx, other_user):
    name = f"@horus-test-{uuid.uuid4().hex}"
    check = listening_check(f"unix:{name}", max_age_seconds=0.3)
    await check.open()
    try:
        forged = json.dumps(beat()).encode()
        other_user.run(FORGER, "unix", name, forged.hex(), forged.hex(), forged.hex())
        result = await check.probe(probe_ctx)
        assert result.status is Status.UNHEALTHY
        assert result.reason.endswith(
            f"; 3 datagrams ignored: sent by uid {other_user.uid} ({other_user.name}), not root (set user:)"
        )
    finally:
        await check.aclose()


async def test_a_service_of_another_user_beats_through_a_socket_horus_hands_to_it(probe_ctx, other_user, short_dir):
    short_dir.chmod(0o755)
    path = short_dir / "hb.sock"
    check = listening_check(f"unix:{path}", max_age_seconds=5, user=other_user.name)
    await check.open()
    try:
        assert path.stat().st_uid == other_user.uid and path.stat().st_mode & 0o777 == 0o600
        env = {**os.environ, "PYTHONPATH": str(SDK_SRC)}
        try:
            other_user.run("import horus_sdk", env=env)
        except subprocess.CalledProcessError:
            pytest.skip(f"{OTHER_USER} cannot read the SDK's source at {SDK_SRC}")
        other_user.run(SDK_SERVICE, str(path), "0.2", env=env)
        assert (await check.probe(probe_ctx)).status is Status.HEALTHY
        # Root sends as well: only the service's own user is believed.
        send(str(path), json.dumps(beat(monotonic=time.monotonic() + 1000)).encode())
        await ignored(check, 1)
        assert check._listener.ignored == {"sent by uid 0 (root), not horus-test-other": 1}
    finally:
        await check.aclose()


async def test_a_replayed_datagram_and_an_earlier_runs_beats_are_ignored(probe_ctx, key_file):
    port = free_udp_port()
    address = ("127.0.0.1", port)
    check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=0.5, key_file=key_file)
    await check.open()
    try:
        start = time.monotonic()
        first_run = signed(beat(pid=100, started=start - 10, monotonic=start - 9))
        second_run = signed(beat(pid=200, started=start - 5, monotonic=start - 4))
        send(address, first_run, second_run)
        await wait_until(lambda: check._listener.latest is not None and check._listener.latest.beat["pid"] == 200)
        # Captured datagrams sent again: of this run, and of the run before it.
        send(address, second_run, first_run, signed(beat(pid=100, started=start - 10, monotonic=start - 1)))
        await ignored(check, 3)
        assert check._listener.ignored == {"replayed": 1, "from an earlier run": 2}
        # Replaying the newest beat over and over does not keep a silent service healthy.
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            send(address, second_run)
            await wait_until(lambda: True)
        result = await check.probe(probe_ctx)
        assert result.status is Status.UNHEALTHY
        assert "datagrams ignored: " in result.reason and "replayed" in result.reason
    finally:
        await check.aclose()


async def test_a_channel_timestamp_far_ahead_of_the_beat_does_not_hide_its_stall(probe_ctx, key_file):
    port = free_udp_port()
    check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=5, key_file=key_file, channels={"ticks": 0.4})
    await check.open()
    try:
        huge = {"ticks": {"count": 1, "wall_time": 1e15, "monotonic": 1e15}}
        started = time.monotonic()
        send(("127.0.0.1", port), signed(beat(started=started - 1, channels=huge)))
        await wait_until(lambda: check._listener.latest is not None)
        assert (await check.probe(probe_ctx)).status is Status.HEALTHY, "progress at the beat's own time, not later"
        # The beats go on, the channel does not move: stale 0.4 s after that beat, whatever it claimed.
        sequence = 2
        while time.monotonic() < started + 0.6:
            send(("127.0.0.1", port), signed(beat(started=started - 1, sequence=sequence, channels=huge)))
            sequence += 1
            await wait_until(lambda s=sequence: check._listener.latest.beat["sequence"] == s - 1)
        result = await check.probe(probe_ctx)
        assert result.status is Status.UNHEALTHY
        assert result.reason.startswith("channel ticks: last progress ") and result.reason.endswith("limit 400 ms")
    finally:
        await check.aclose()


async def test_a_flood_of_channel_names_and_huge_datagrams_keep_memory_bounded(probe_ctx):
    name = f"@horus-test-{uuid.uuid4().hex}"
    check = listening_check(f"unix:{name}", max_age_seconds=5, channels={"ticks": 60})
    await check.open()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        now = time.monotonic()
        for i in range(300):
            names = {
                f"{i}-{j}-{'x' * 20}": {"count": 1, "monotonic": now, "wall_time": 0} for j in range(150)
            }  # about 16 KB each
            payload = {**beat(monotonic=now + i * 0.001, sequence=i + 1, channels=names), f"junk{i}": "y" * 100}
            data = json.dumps(payload).encode()
            send(name, data[:16000] if len(data) > 16000 else data)
            await asyncio.sleep(0)  # a unix datagram queue holds a few: let the listener read them
        send(name, json.dumps(beat(monotonic=now + 1, channels={"ticks": {"monotonic": now}})).encode() + b" " * 70000)
        await wait_until(lambda: sum(check._listener.ignored.values()) + (check._listener.accepted) >= 301, timeout=10)
        grown = tracemalloc.get_traced_memory()[0] - before
        assert grown < 1_000_000, f"{grown} bytes kept for 300 datagrams"
        latest = check._listener.latest
        assert latest is not None and set(latest.channels) <= {"ticks"}
        assert not any(key.startswith("junk") for key in latest.beat), "only the fields Horus reads are kept"
        assert check._listener.ignored.get("too large") == 1
    finally:
        tracemalloc.stop()
        await check.aclose()


# -- an address taken before Horus -------------------------------------------------------------------------


async def test_an_address_another_process_holds_fails_open_loudly_and_each_probe_says_so(probe_ctx, key_file):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        check = listening_check(f"udp://127.0.0.1:{port}", max_age_seconds=1, key_file=key_file)
        with pytest.raises(CannotListen, match=rf"cannot listen on udp://127.0.0.1:{port}: Address already in use"):
            await check.open()
        result = await check.probe(probe_ctx)
        assert result.status is Status.ERROR and result.reason.startswith(f"cannot listen on udp://127.0.0.1:{port}")
    await check.aclose()


def test_the_daemon_does_not_start_when_its_heartbeat_address_is_taken(tmp_path, key_file):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        config = tmp_path / "horus.json"
        check = {"type": "heartbeat", "listen": f"udp://127.0.0.1:{port}", "key_file": str(key_file)}
        config.write_text(json.dumps({"monitors": [{"name": "bot", "check": {**check, "max_age_seconds": 5}}]}))
        log = EventLog(tmp_path / "events.jsonl")
        daemon = spawn_daemon(config, tmp_path / "state", log.path)
        try:
            code = daemon.wait(timeout=20)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    text = log.path.read_text()
    assert code != 0
    assert "Traceback" not in text
    [event] = log.named("horus.cannot_start")
    assert f"udp://127.0.0.1:{port}" in event["error"] and "Address already in use" in event["error"]
    assert not log.named("horus.started"), "nothing is watched half-way"
