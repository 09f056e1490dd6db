"""Heartbeats driven by the event loop itself: when the loop stops making progress, the beats stop.

A thread would keep beating after the loop hung (the 7-hour hang in the story), so the beats come from an
asyncio task: if the loop is blocked or starved, nothing is written, and the Horus daemon sees the file age.

    hb = Heartbeat("/run/bot/heartbeat.json", interval=1.0, sd_notify=None)
    async with hb:
        while True:
            await scan_markets()
            hb.progress("scan")

Sinks, each optional: the heartbeat file (format in :mod:`horus_sdk.formats`), the same JSON as a UDP or
unix datagram, and systemd's ``sd_notify`` (``READY=1`` once, then ``WATCHDOG=1``). A sink that fails is
recorded in :attr:`Heartbeat.last_error` and never raises into the service.

With ``key_file``, each datagram is signed so that Horus can tell it from one forged by another local user:
``hb-hmac-sha256:<64 hex digits>\n<JSON>``, the HMAC-SHA256 of the JSON bytes under the key, which is the
file's text without surrounding whitespace (:func:`read_key_file`; Horus reads the same file).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import os
import socket
import stat
import time
from types import TracebackType
from typing import Any

from horus_sdk.formats import FORMAT_HEARTBEAT, boot_id, write_json_atomic

__all__ = [
    "DATING_PERIOD",
    "KEY_MAX_BYTES",
    "KEY_MIN_BYTES",
    "MAX_DATAGRAM_BYTES",
    "SIGNATURE_PREFIX",
    "Heartbeat",
    "read_key_file",
    "signature",
]

MAX_DATAGRAM_BYTES = 8192
"""Largest datagram sent, signature included; channels that do not fit are left out of the datagram (never
out of the file)."""
SIGNATURE_PREFIX = b"hb-hmac-sha256:"
"""A signed datagram is this, the HMAC-SHA256 of the JSON in hex, a newline, then the JSON."""
KEY_MIN_BYTES = 16
"""Shortest key accepted: a guessable key would authenticate nothing."""
KEY_MAX_BYTES = 4096
_SIGNATURE_OVERHEAD = len(SIGNATURE_PREFIX) + 64 + 1
_KEY_RETRY_SECONDS = 60.0

_COMPACT = (",", ":")
_RESOLVE_RETRY_SECONDS = 60.0
DATING_PERIOD = 0.25
"""Longest time between two looks at the channels' counts while the loop runs: a channel's progress is
dated at most this late (plus the loop's own lag)."""


class Heartbeat:
    """Emits a beat every ``interval`` seconds while the event loop runs; use as ``async with hb:``.

    ``path``: heartbeat file, rewritten atomically on each beat. ``udp``: ``(host, port)`` to send the same
    JSON to (give an IP address: a name is resolved once, when the heartbeat starts). ``unix_socket``: a
    unix datagram socket path (``@name`` for the abstract namespace). ``sd_notify``: True to notify systemd,
    False never, None (default) when ``$NOTIFY_SOCKET`` is set. ``key_file``: sign every datagram with the
    key in this file (the same file as the Horus check's ``key_file``); while it cannot be read, no datagram
    is sent (an unsigned one would be ignored), :attr:`last_error` says why, and it is read again every
    minute.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        interval: float = 1.0,
        *,
        udp: tuple[str, int] | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        sd_notify: bool | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.path = path
        self.interval = float(interval)
        self.udp = udp
        self.unix_socket = unix_socket
        self.sd_notify = sd_notify
        self.key_file = key_file
        self.sequence = 0
        """Beats emitted so far; the file's ``sequence`` is this value after each beat."""
        self.last_error: str | None = None
        """The most recent sink failure, e.g. ``"file /run/bot/hb.json: [Errno 28] No space left on device"``."""
        # Progress is counted, not timed: progress() is one dict increment, half the cost of also reading
        # the clock, in loops that call it 50,000 times a second. A count is dated when it is first seen
        # to have moved, by the loop every DATING_PERIOD and by every reader, so a channel's last progress
        # is dated late, never early: its age is never overstated and a stall is never called too soon.
        self._counts: dict[str, int] = {}
        self._dated: dict[str, tuple[int, float]] = {}  # name -> (count, monotonic when first seen)
        self._boot_id = boot_id()
        self._started_monotonic: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._inet: socket.socket | None = None
        self._unix: socket.socket | None = None
        self._udp_address: tuple[Any, ...] | None = None
        self._udp_family = socket.AF_INET
        self._udp_retry_at = 0.0
        self._notify_address: str | None = None
        self._watchdog_period: float | None = None
        self._watchdog_each_beat = False
        self._ready_sent = False
        self._mac: Any = None  # hmac.HMAC under the key, copied for each datagram
        self._key_retry_at = 0.0

    # -- for the service ---------------------------------------------------------------------------------

    def progress(self, channel: str = "main") -> None:
        """Record progress on ``channel`` (cheap: call it from hot loops).

        Channels name the service's loops ("scan", "orders"): a handful, not one per market or item, since
        every beat writes them all. The time of the progress is taken within :data:`DATING_PERIOD` after it.
        """
        try:  # costs nothing unless the channel is new
            self._counts[channel] += 1
        except KeyError:
            self._counts[channel] = 1

    @property
    def channels(self) -> dict[str, dict[str, float]]:
        """A snapshot: ``{name: {"count", "wall_time", "monotonic"}}``; the times are when the count was
        first seen, at most :data:`DATING_PERIOD` after the progress."""
        now = time.monotonic()
        wall_minus_mono = time.time() - now
        return {
            name: {"count": count, "wall_time": wall_minus_mono + mono, "monotonic": mono}
            for name, count, mono in self._date()
        }

    def channel_ages(self, now_monotonic: float | None = None) -> dict[str, float]:
        """Seconds since each channel last progressed; safe to call from another thread."""
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return {name: now - mono for name, _count, mono in self._date()}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Heartbeat:
        if self.running:
            raise RuntimeError("this Heartbeat is already running")
        self._configure_sinks()
        # Lets the watcher judge a channel that has not progressed yet from when beating began.
        self._started_monotonic = time.monotonic()
        self._beat()
        if self._watchdog_period:
            self._notify(b"WATCHDOG=1")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="horus-heartbeat")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                # wait() rather than `await task`: the task's CancelledError must not be confused with a
                # cancellation of the caller, which still propagates from here.
                await asyncio.wait([task])
        finally:
            # The last beat says where the service got to; the daemon then sees the file age.
            self._beat()
            self._close_sockets()

    # -- the beat ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        now = time.monotonic()
        next_beat = now + self.interval
        next_watchdog = now + self._watchdog_period if self._watchdog_period else math.inf
        while True:
            # Always await, even when late: a beat slower than its interval must not starve the loop it
            # reports on (with many channels, encoding the file can take longer than a short interval).
            due = min(next_beat, next_watchdog, time.monotonic() + DATING_PERIOD)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            if now >= next_watchdog and self._watchdog_period:
                self._notify(b"WATCHDOG=1")
                next_watchdog = max(next_watchdog + self._watchdog_period, now + self._watchdog_period / 2)
            if now >= next_beat:
                self._beat()  # dates the channels as it writes them
                # After a stall or a slow beat, resume the rhythm from now rather than bursting to catch up.
                next_beat = max(next_beat + self.interval, time.monotonic() + self.interval / 2)
            else:
                self._date()

    def _beat(self) -> None:
        self.sequence += 1
        try:
            payload = self._payload()
            if self.path is not None:
                try:
                    write_json_atomic(self.path, payload, fsync=False)
                except Exception as exc:
                    self._fail(f"file {os.fspath(self.path)}", exc)
            if self.udp is not None or self.unix_socket is not None:
                self._send_datagrams(payload)
            if self._notify_address is not None:
                if not self._ready_sent:
                    self._ready_sent = self._notify(b"READY=1")
                if self._watchdog_each_beat:
                    self._notify(b"WATCHDOG=1")
        except Exception as exc:
            # A beat that breaks must not end the task: no more beats would look exactly like a hang.
            self._fail("heartbeat", exc)

    def _payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT_HEARTBEAT,
            "pid": os.getpid(),
            "sequence": self.sequence,
            "boot_id": self._boot_id,
            "wall_time": time.time(),
            "monotonic": time.monotonic(),
            "interval": self.interval,
            "started_monotonic": self._started_monotonic,
            "channels": self.channels,
        }

    def _date(self) -> list[tuple[str, int, float]]:
        """(name, count, monotonic time of its last progress) of each channel; a count that moved since
        the last look is dated now. Called from the loop and from a watchdog thread alike."""
        now = time.monotonic()
        # dict() copies in one C call under the GIL, so no thread iterates a dict that the loop is growing.
        # Two threads dating at once may write a date a few microseconds apart: either is a fair date.
        dated = self._dated
        channels = []
        for name, count in dict(self._counts).items():
            seen = dated.get(name)
            if seen is None or seen[0] != count:
                seen = dated[name] = (count, now)
            channels.append((name, count, seen[1]))
        return channels

    def _fail(self, sink: str, exc: BaseException) -> None:
        self.last_error = f"{sink}: {exc}"

    # -- datagram sinks ----------------------------------------------------------------------------------

    def _send_datagrams(self, payload: dict[str, Any]) -> None:
        if self.key_file is not None and self._mac is None and not self._load_key():
            return  # an unsigned datagram would be ignored: say why in last_error instead
        if self._mac is None:
            data = _datagram(payload, MAX_DATAGRAM_BYTES)
        else:
            body = _datagram(payload, MAX_DATAGRAM_BYTES - _SIGNATURE_OVERHEAD)
            mac = self._mac.copy()
            mac.update(body)
            data = b"".join((SIGNATURE_PREFIX, mac.hexdigest().encode(), b"\n", body))
        if self.udp is not None:
            try:
                self._send_udp(data, self.udp)
            except Exception as exc:
                self._fail(f"udp {self.udp[0]}:{self.udp[1]}", exc)
        if self.unix_socket is not None:
            try:
                self._send_unix(data, _unix_address(os.fspath(self.unix_socket)))
            except Exception as exc:
                self._fail(f"unix socket {os.fspath(self.unix_socket)}", exc)

    def _load_key(self) -> bool:
        now = time.monotonic()
        if now < self._key_retry_at:
            return False
        assert self.key_file is not None
        try:
            key = read_key_file(self.key_file)
        except (OSError, ValueError) as exc:
            # Read again only now and then: a missing key must not cost a file open on every beat.
            self._key_retry_at = now + _KEY_RETRY_SECONDS
            self._fail(f"key_file {os.fspath(self.key_file)}", exc)
            return False
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        return True

    def _send_udp(self, data: bytes, target: tuple[str, int]) -> None:
        if self._udp_address is None:
            if time.monotonic() < self._udp_retry_at:
                return
            # A failed lookup is retried only now and then: each attempt may block the loop.
            self._udp_retry_at = time.monotonic() + _RESOLVE_RETRY_SECONDS
            self._udp_family, self._udp_address = _resolve_udp(target)
        if self._inet is None:
            self._inet = _datagram_socket(self._udp_family)
        self._inet.sendto(data, self._udp_address)

    def _send_unix(self, data: bytes, address: str) -> None:
        if self._unix is None:
            self._unix = _datagram_socket(socket.AF_UNIX)
        # Non-blocking: a reader that stopped draining makes this fail with EAGAIN instead of freezing the loop.
        self._unix.sendto(data, address)

    def _close_sockets(self) -> None:
        for sock in (self._inet, self._unix):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._inet = self._unix = None

    # -- systemd -----------------------------------------------------------------------------------------

    def _configure_sinks(self) -> None:
        self._mac = None  # the key is read afresh on each start, so a new key takes effect on restart
        self._key_retry_at = 0.0
        self._udp_address = None
        self._udp_retry_at = 0.0
        self._notify_address = None
        self._watchdog_period = None
        self._watchdog_each_beat = False
        notify_socket = os.environ.get("NOTIFY_SOCKET")
        if self.sd_notify is False or (self.sd_notify is None and not notify_socket):
            return
        if not notify_socket:
            self._fail("sd_notify", OSError("$NOTIFY_SOCKET is not set"))
            return
        if not notify_socket.startswith(("/", "@")):
            self._fail("sd_notify", OSError(f"unsupported $NOTIFY_SOCKET {notify_socket!r}"))
            return
        self._notify_address = _unix_address(notify_socket)
        watchdog_usec = os.environ.get("WATCHDOG_USEC")
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            # systemd armed the watchdog for another process (we are its child): sd_watchdog_enabled() says no.
            return
        if not watchdog_usec:
            self._watchdog_each_beat = True
            return
        try:
            usec = int(watchdog_usec)
            if usec <= 0:
                raise ValueError(watchdog_usec)
        except ValueError:
            self._fail("sd_notify", ValueError(f"invalid $WATCHDOG_USEC {watchdog_usec!r}"))
            self._watchdog_each_beat = True
            return
        # Half the limit, as sd_watchdog_enabled(3) recommends, so one late wake-up is not fatal.
        self._watchdog_period = usec / 1_000_000 / 2

    def _notify(self, message: bytes) -> bool:
        if self._notify_address is None:
            return False
        try:
            self._send_unix(message, self._notify_address)
        except Exception as exc:
            self._fail(f"sd_notify {message.decode()}", exc)
            return False
        return True


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The heartbeat key in ``path``: its text without surrounding whitespace, as bytes.

    OSError when it cannot be read; ValueError when it is not a regular file, or the key is shorter than
    :data:`KEY_MIN_BYTES` or longer than :data:`KEY_MAX_BYTES`. Make one with
    ``head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE``.
    """
    # Non-blocking, and a regular file only: a FIFO put in its place must not freeze the service's loop.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        chunks, size = [], 0
        while size <= KEY_MAX_BYTES:
            chunk = os.read(fd, KEY_MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    key = b"".join(chunks).strip()
    if size > KEY_MAX_BYTES:
        raise ValueError(f"longer than {KEY_MAX_BYTES} bytes: not a key file")
    if len(key) < KEY_MIN_BYTES:
        raise ValueError(
            f"the key is {len(key)} bytes, at least {KEY_MIN_BYTES} are needed: make one with "
            "head -c 32 /dev/urandom | base64 > FILE"
        )
    return key


def signature(key: bytes, body: bytes) -> bytes:
    """The hex HMAC-SHA256 of ``body`` under ``key``, as a signed datagram carries it."""
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def _datagram(payload: dict[str, Any], limit: int) -> bytes:
    """Compact JSON of ``payload`` in at most ``limit`` bytes, dropping channels that do not fit."""
    data = json.dumps(payload, separators=_COMPACT, default=str).encode()
    if len(data) <= limit:
        return data
    channels: dict[str, Any] = payload["channels"]
    kept: dict[str, Any] = {}
    room = limit - len(json.dumps({**payload, "channels": {}}, separators=_COMPACT, default=str))
    for name, value in channels.items():
        # '{"name":{...}}' minus the braces, plus the comma that separates it from the previous one.
        size = len(json.dumps({name: value}, separators=_COMPACT, default=str)) - 2 + (1 if kept else 0)
        if size <= room:
            kept[name] = value
            room -= size
    return json.dumps({**payload, "channels": kept}, separators=_COMPACT, default=str).encode()


def _unix_address(address: str) -> str:
    # '@name' is the abstract namespace (systemd's convention): the kernel wants a leading NUL byte.
    return "\0" + address[1:] if address.startswith("@") else address


def _datagram_socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def _resolve_udp(target: tuple[str, int]) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    host, port = target
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # A name: resolved here, once per start, because a lookup blocks the loop.
        family, _type, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        return family, address
    if ip.version == 6:
        return socket.AF_INET6, (host, port, 0, 0)
    return socket.AF_INET, (host, port)
