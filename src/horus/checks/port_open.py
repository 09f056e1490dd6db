"""The ``port_open`` check: something is listening and accepts a TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import PositiveSeconds


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be 1..65535, got {value}")
    return value


def _check_host(value: object) -> object:
    if isinstance(value, str):
        # "[::1]" is how people write an IPv6 address next to a port; the resolver wants it bare.
        value = value.strip().removeprefix("[").removesuffix("]")
        if not value:
            raise ValueError("must not be empty")
    return value


Port = Annotated[int, AfterValidator(_check_port)]


class PortOpenOptions(CheckOptions):
    type: Literal["port_open"]
    host: Annotated[str, BeforeValidator(_check_host)] = "127.0.0.1"
    port: Port
    timeout_seconds: PositiveSeconds | None = None


class PortOpenCheck(Check[PortOpenOptions]):
    """Unhealthy when nothing accepts a TCP connection on ``host``:``port``.

    The connection is opened and closed at once; nothing is sent. A refused connection, an unknown
    host or an unreachable network is unhealthy, and so is a connection that is not accepted within
    the timeout (a firewall that drops packets, or a listener too busy to accept).
    """

    options_model = PortOpenOptions
    timeout_means_unhealthy = True

    def __init__(self, options: PortOpenOptions) -> None:
        super().__init__(options)
        # A literal address needs no resolver; asking one anyway costs a thread hop on every probe.
        self._literal: list[Any] = []
        with contextlib.suppress(ValueError, socket.gaierror):
            ipaddress.ip_address(options.host)
            self._literal = socket.getaddrinfo(
                options.host, options.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        host, port = self.options.host, self.options.port
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        details: dict[str, Any] = {"host": host, "port": port}
        loop = asyncio.get_running_loop()
        started = ctx.clock.monotonic()
        try:
            addresses = self._literal or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return CheckResult.unhealthy(f"cannot resolve {host} ({exc.strerror})", **details)
        if not addresses:
            return CheckResult.unhealthy(f"cannot resolve {host} (no addresses)", **details)

        # Each address is tried in turn, as asyncio.open_connection would, but the failures are kept
        # apart: on Python 3.11 it merges them into one OSError that no longer says "refused".
        failures: list[OSError] = []
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                failures.append(exc)
                continue
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
            elapsed = ctx.clock.monotonic() - started
            return CheckResult.healthy(
                f"{where} accepted a connection in {humanize.seconds(elapsed)}",
                latency_ms=round(elapsed * 1000, 1),
                **details,
            )

        if any(isinstance(exc, ConnectionRefusedError) for exc in failures):
            return CheckResult.unhealthy(f"{where} refused the connection", **details)
        last = failures[-1]
        return CheckResult.unhealthy(f"{where} cannot be reached: {last.strerror or last}", **details)
