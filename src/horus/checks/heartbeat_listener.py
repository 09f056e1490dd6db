"""Receives horus-sdk heartbeats sent as datagrams (UDP or a unix socket) for the ``heartbeat`` check.

A datagram beat needs no shared filesystem (a container, a read-only root, a full disk) and its age is
measured on Horus's own clock from the moment it arrived, so neither clock jumps nor clock skew between
hosts can fake one. Anyone on the host can send a datagram, so each one is checked before it counts (the
check's docstring tells users the rules): its signature under the shared key, the sender's uid on a unix
socket, that its run's ``monotonic`` moved forward (a replay does not), and its size. What is kept is
bounded whatever arrives: the newest beat's known fields, the configured channels' newest progress dated
on Horus's clock, and a count per reason of the datagrams ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import math
import os
import socket
import stat
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from horus.errors import CheckCannotOpen
from horus.processes import user_name
from horus_sdk.formats import FORMAT_HEARTBEAT
from horus_sdk.heartbeat import SIGNATURE_PREFIX, read_key_file, signature

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "CannotListen",
    "HeartbeatListener",
    "ListenAddress",
    "ReceivedBeat",
    "load_key",
    "parse_listen_address",
    "user_name",
]

MAX_DATAGRAM_BYTES = 16384
"""Largest datagram read (the SDK sends at most 8192 bytes); a larger one is ignored unread."""
# Datagrams handled per wake-up of the loop: a flood must not keep the loop from the other monitors.
READS_PER_WAKEUP = 64
# Distinct reasons counted for ignored datagrams; past this, new ones (another uid) share one count.
MAX_REASONS = 16
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
# Fields of a beat that Horus reads; nothing else a sender puts in a datagram is kept.
_BEAT_FIELDS = ("format", "pid", "sequence", "boot_id", "wall_time", "monotonic", "started_monotonic", "interval")


class CannotListen(CheckCannotOpen):
    """A heartbeat check cannot hold its ``listen`` address (taken, no permission) or read its ``key_file``:
    raised by the check's ``open()`` so that the daemon does not start watching a service it cannot hear."""


def load_key(path: str | os.PathLike[str], *, unreadable_ok: bool = False) -> bytes | None:
    """The key in ``path``, refused (ValueError, in words) when the group or others may read or write it:
    whoever can read the key can forge heartbeats. With ``unreadable_ok``, a key this user may not read
    is None rather than an error (``horus validate`` run by someone other than the daemon's user)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ValueError(f"{os.fspath(path)}: cannot read it: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ValueError(
            f"{os.fspath(path)} can be read or written by group or others (mode {stat.S_IMODE(mode):04o}): "
            f"anyone who can read it can forge heartbeats; chmod 600 {os.fspath(path)}"
        )
    try:
        return read_key_file(path)
    except PermissionError as exc:
        if unreadable_ok:
            return None
        raise ValueError(f"{os.fspath(path)}: cannot read it: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ValueError(f"{os.fspath(path)}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None


@dataclass(frozen=True)
class ListenAddress:
    """Where to listen: ``udp://127.0.0.1:9123``, ``udp://[::1]:9123``, ``unix:/run/bot/hb.sock`` or
    ``unix:@bot-heartbeat`` (the abstract namespace)."""

    text: str
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        return self.text


def parse_listen_address(text: str) -> ListenAddress:
    """Parse a ``listen`` value; ValueError with the accepted forms when it is not one of them."""
    forms = "use udp://IP:PORT (for example udp://127.0.0.1:9123) or unix:/absolute/path or unix:@name"
    if text.startswith("udp://"):
        rest = text[len("udp://") :]
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"{text!r}: {forms}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            # An address, not a name: a name would need a lookup that can hang, and may mean several hosts.
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: the host must be an IP address, such as 127.0.0.1 or [::1]") from None
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"{text!r}: the port must be 1..65535")
        return ListenAddress(text, host=host, port=port)
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if path.startswith("@") and len(path) > 1:
            return ListenAddress(text, path=path)
        if not os.path.isabs(path):
            raise ValueError(f"{text!r}: a unix socket path must be absolute ({forms})")
        return ListenAddress(text, path=path)
    raise ValueError(f"{text!r}: {forms}")


@dataclass(frozen=True)
class ReceivedBeat:
    """The newest accepted heartbeat: its known fields, when it arrived on Horus's monotonic clock, and each
    configured channel's newest progress, dated on Horus's clock from the sender's own deltas."""

    beat: dict[str, Any]
    received_monotonic: float
    channels: dict[str, float] = field(default_factory=dict)
    # When the sender's run began, on Horus's clock (from the sender's own delta), if it said.
    started: float | None = None


class HeartbeatListener:
    """Binds ``address`` on the running loop and keeps the newest heartbeat that passes the checks.

    ``key``: datagrams must be signed with it. ``sender_uid``: on a unix socket, only this uid is
    believed (None: any uid, the key decides). ``channels``: the only channel names kept.
    """

    def __init__(
        self,
        address: ListenAddress,
        *,
        key: bytes | None = None,
        sender_uid: int | None = None,
        channels: Iterable[str] = (),
    ) -> None:
        self.address = address
        self.key = key
        self.sender_uid = sender_uid
        self.latest: ReceivedBeat | None = None
        self.listening_since: float | None = None
        self.accepted = 0
        self.ignored: dict[str, int] = {}
        """How many datagrams were ignored, by reason ("bad signature": 3), since listening began."""
        self._wanted = frozenset(channels)
        self._run: tuple[Any, ...] | None = None  # (boot_id, pid, started_monotonic) of the newest beat
        self._run_monotonic = -math.inf  # the sender's monotonic at the newest beat of that run
        self._seen: dict[str, tuple[Any, float]] = {}  # configured channel -> (count, monotonic) last reported
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()
        self._bound_path: str | None = None

    @property
    def listening(self) -> bool:
        return self._sock is not None

    async def start(self) -> None:
        """Bind the address; OSError (address in use, no permission) when it cannot."""
        loop = asyncio.get_running_loop()
        sock = self._bind()
        try:
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            self._unlink_bound()
            sock.close()
            raise
        self._sock, self._loop = sock, loop
        self.listening_since = time.monotonic()

    def _bind(self) -> socket.socket:
        path = self.address.path
        if path is None:
            assert self.address.host is not None
            assert self.address.port is not None
            family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if path is None:
                sock.bind((self.address.host, self.address.port))
            else:
                # The kernel then tells, with each datagram, which uid sent it (SCM_CREDENTIALS): a sender
                # cannot lie about it.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
                if path.startswith("@"):
                    sock.bind("\0" + path[1:])
                else:
                    self._bind_path(sock, path)
        except BaseException:
            sock.close()
            raise
        return sock

    def _bind_path(self, sock: socket.socket, path: str) -> None:
        # A socket file left by an earlier Horus that was killed would make bind fail forever; only a
        # socket is removed, never a regular file that happens to have this name.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        sock.bind(path)
        self._bound_path = path
        # Sending needs write permission on the socket file. The uid check decides in every case; the mode
        # keeps other users from even reaching it wherever Horus can arrange that.
        uid = self.sender_uid
        if uid is None:
            os.chmod(path, 0o666)  # noqa: S103 - any user may send: the key decides
        elif uid == os.geteuid():
            os.chmod(path, 0o600)
        elif os.geteuid() == 0:
            os.chown(path, uid, -1)
            os.chmod(path, 0o600)
        else:
            os.chmod(path, 0o666)  # noqa: S103 - cannot hand the file to that user: the uid check decides

    async def wait_for_beat(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a beat to have arrived; True when one has."""
        if self.latest is not None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)
        return self.latest is not None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._unlink_bound()

    def _unlink_bound(self) -> None:
        if self._bound_path is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self._bound_path).st_mode):
                    os.unlink(self._bound_path)
            self._bound_path = None

    def ignored_summary(self) -> str:
        """``3 datagrams ignored: bad signature`` (the most frequent reasons first), or ""."""
        total = sum(self.ignored.values())
        if not total:
            return ""
        noun = "datagram" if total == 1 else "datagrams"
        reasons = sorted(self.ignored.items(), key=lambda item: -item[1])
        if len(reasons) == 1:
            return f"{total} {noun} ignored: {reasons[0][0]}"
        return f"{total} {noun} ignored: " + ", ".join(f"{count} {reason}" for reason, count in reasons)

    # -- receiving -------------------------------------------------------------------------------------

    def receive_pending(self) -> None:
        """Take the datagrams already queued (at most READS_PER_WAKEUP), so a look judges what has arrived."""
        self._readable()

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        ancillary = socket.CMSG_SPACE(_UCRED.size) if sock.family == socket.AF_UNIX else 0
        for _ in range(READS_PER_WAKEUP):
            try:
                data, ancdata, flags, _addr = sock.recvmsg(MAX_DATAGRAM_BYTES + 1, ancillary)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP errors and the like say nothing about the service; the beat's age does.
                if exc.errno in (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
                    continue
                return
            uid = None
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(value) >= _UCRED.size:
                    _pid, uid, _gid = _UCRED.unpack_from(value)
            reason = self._take(data, flags, uid, time.monotonic())
            if reason is not None:
                self._ignore(reason)

    def _ignore(self, reason: str) -> None:
        if reason not in self.ignored and len(self.ignored) >= MAX_REASONS:
            reason = "other reasons"
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def _take(self, data: bytes, flags: int, uid: int | None, arrived: float) -> str | None:
        """Accept one datagram, or say in a few fixed words why it is ignored."""
        if flags & socket.MSG_TRUNC or len(data) > MAX_DATAGRAM_BYTES:
            return "too large"
        if self.address.path is not None and self.sender_uid is not None and uid != self.sender_uid:
            sender = "an unknown uid" if uid is None else f"uid {uid} ({user_name(uid)})"
            expected = user_name(self.sender_uid)
            return f"sent by {sender}, not {expected}" + (" (set user:)" if self.sender_uid == os.geteuid() else "")
        body = data
        if data.startswith(SIGNATURE_PREFIX):
            head, newline, body = data.partition(b"\n")
            if self.key is not None:
                given = head[len(SIGNATURE_PREFIX) :]
                if not newline or not hmac.compare_digest(given, signature(self.key, body)):
                    return "bad signature"
        elif self.key is not None:
            return "not signed"
        beat = _parse(body)
        if isinstance(beat, str):
            return beat
        run = (beat.get("boot_id"), beat["pid"], beat.get("started_monotonic"))
        monotonic = beat["monotonic"]
        if run == self._run:
            if monotonic <= self._run_monotonic:
                return "replayed"
        elif self._run is not None and run[0] is not None and run[0] == self._run[0]:
            # Same boot, so the same monotonic clock: a new run began after the newest beat seen, and a
            # captured beat of an earlier run cannot take the place of the current one.
            began = run[2] if run[2] is not None else monotonic
            if began < self._run_monotonic:
                return "from an earlier run"
        self._accept(beat, run, arrived)
        return None

    def _accept(self, beat: dict[str, Any], run: tuple[Any, ...], arrived: float) -> None:
        same_run = run == self._run and self.latest is not None
        channels = dict(self.latest.channels) if same_run and self.latest is not None else {}
        if not same_run:
            self._seen = {}  # a new process: its predecessor's channels say nothing about it
        monotonic = beat["monotonic"]
        for name, entry in beat["channels"].items():
            # Only the configured channels: names a sender makes up cost nothing.
            if name not in self._wanted or not isinstance(entry, dict) or not _finite(entry.get("monotonic")):
                continue
            at = float(entry["monotonic"])
            count = entry.get("count")
            reported = (count if _finite(count) else None, at)
            if self._seen.get(name) == reported:
                continue  # the same progress as in an earlier beat: the channel has not moved since
            self._seen[name] = reported
            # Judged by the sender's own delta: how long before this beat the channel moved. A time ahead
            # of the beat's own is taken as the beat's, so it cannot keep the channel fresh after this beat.
            progressed = arrived - max(0.0, monotonic - at)
            if progressed > channels.get(name, -math.inf):
                channels[name] = progressed
        started = beat.get("started_monotonic")
        began = arrived - max(0.0, monotonic - started) if started is not None else None
        self._run, self._run_monotonic = run, monotonic
        self.latest = ReceivedBeat({k: beat[k] for k in _BEAT_FIELDS if k in beat}, arrived, channels, began)
        self.accepted += 1
        self._arrived.set()


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse(body: bytes) -> dict[str, Any] | str:
    """The beat in ``body`` with its fields checked, or the reason it is not one."""
    try:
        beat = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "not a heartbeat"
    if not isinstance(beat, dict) or beat.get("format") != FORMAT_HEARTBEAT:
        return "not a heartbeat"
    pid, started, boot = beat.get("pid"), beat.get("started_monotonic"), beat.get("boot_id")
    if (
        not _finite(beat.get("monotonic"))
        or not isinstance(beat.get("channels", {}), dict)
        or not (isinstance(pid, int) or pid is None)
        or not (started is None or _finite(started))
        or not (boot is None or (isinstance(boot, str) and len(boot) <= 64))
        or not all(beat.get(k) is None or _finite(beat[k]) for k in ("sequence", "wall_time", "interval"))
    ):
        return "malformed heartbeat"
    beat.setdefault("channels", {})
    return beat


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
