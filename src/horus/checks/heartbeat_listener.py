"""Receives horus-sdk heartbeats sent as datagrams (UDP or a unix socket) for the ``heartbeat`` check.

A datagram beat needs no shared filesystem (a container, a read-only root, a full disk) and its age is
measured on Horus's own clock from the moment it arrived, so neither clock jumps nor clock skew between
hosts can fake one. Each listener keeps only the newest beat and, per channel, the newest progress seen
from the current process: the SDK leaves channels out of a datagram that would grow too large, so a
channel missing from one datagram keeps its last known progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from typing import Any, cast

from horus_sdk.formats import FORMAT_HEARTBEAT

__all__ = ["HeartbeatListener", "ListenAddress", "ReceivedBeat", "parse_listen_address"]


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
    """The newest heartbeat: its JSON, with ``channels`` merged over the process's datagrams, and when it
    arrived on Horus's monotonic clock."""

    beat: dict[str, Any]
    received_monotonic: float


class HeartbeatListener(asyncio.DatagramProtocol):
    """Binds ``address`` on the running loop and keeps the newest heartbeat that arrives there."""

    def __init__(self, address: ListenAddress) -> None:
        self.address = address
        self.latest: ReceivedBeat | None = None
        self.listening_since: float | None = None
        self.rejected = 0
        self.last_rejection: str | None = None
        self._channels: dict[str, dict[str, Any]] = {}
        self._pid: object = None
        self._transport: asyncio.DatagramTransport | None = None
        self._arrived = asyncio.Event()
        self._bound_path: str | None = None

    @property
    def listening(self) -> bool:
        return self._transport is not None

    async def start(self) -> None:
        """Bind the address; OSError (address in use, no permission) when it cannot."""
        loop = asyncio.get_running_loop()
        if self.address.path is None:
            assert self.address.host is not None
            assert self.address.port is not None
            await loop.create_datagram_endpoint(lambda: self, local_addr=(self.address.host, self.address.port))
        else:
            sock = self._bind_unix(self.address.path)
            try:
                await loop.create_datagram_endpoint(lambda: self, sock=sock)
            except BaseException:
                sock.close()
                raise
        self.listening_since = time.monotonic()

    def _bind_unix(self, path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if path.startswith("@"):
                sock.bind("\0" + path[1:])
            else:
                # A socket file left by an earlier Horus that was killed would make bind fail forever; only a
                # socket is removed, never a regular file that happens to have this name.
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)
                sock.bind(path)
                self._bound_path = path
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def wait_for_beat(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a beat to have arrived; True when one has."""
        if self.latest is not None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)
        return self.latest is not None

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        if self._bound_path is not None:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self._bound_path).st_mode):
                    os.unlink(self._bound_path)
            self._bound_path = None

    # -- asyncio.DatagramProtocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not derive from DatagramTransport, though it is one.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            beat = json.loads(data)
            if not isinstance(beat, dict) or beat.get("format") != FORMAT_HEARTBEAT:
                raise ValueError(f"not a {FORMAT_HEARTBEAT} heartbeat")
            channels = beat.get("channels") or {}
            if not isinstance(channels, dict) or not isinstance(beat.get("monotonic"), int | float):
                raise ValueError("malformed heartbeat")
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            self.rejected += 1
            self.last_rejection = str(exc)[:200]
            return
        if beat.get("pid") != self._pid:
            # A new process: its predecessor's channels say nothing about it.
            self._pid = beat.get("pid")
            self._channels = {}
        for name, entry in channels.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("monotonic"), int | float):
                continue
            known = self._channels.get(name)
            if known is None or entry["monotonic"] >= known["monotonic"]:
                self._channels[name] = entry
        self.latest = ReceivedBeat({**beat, "channels": dict(self._channels)}, time.monotonic())
        self._arrived.set()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and the like say nothing about the service; the beat's age does.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
