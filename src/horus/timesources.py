"""Where the ``clock`` check reads the time from: NTP servers (SNTP, RFC 4330), a venue's HTTP server time,
and the system's own sync state (``timedatectl`` or ``chronyc``).

Every reading is a value: a server that does not answer, or answers with something that is not a valid
SNTP reply, is a :class:`SourceFailure` with a reason, never an exception. Offsets are given as how far
*our* clock is ahead of the source (positive: ahead, negative: behind), because that is the side that
matters to a venue that rejects requests stamped in its future.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import secrets
import shutil
import socket
import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from yarl import URL

from horus.checks.http_health import lookup_json_path
from horus.clock import Clock
from horus.log import redact_url

__all__ = [
    "NTP_EPOCH_OFFSET",
    "LocalSync",
    "NtpReading",
    "SourceFailure",
    "VenueReading",
    "ahead_from_ntp_timestamps",
    "decode_sntp_reply",
    "encode_sntp_request",
    "from_ntp_timestamp",
    "local_sync_state",
    "query_ntp_server",
    "query_venue",
    "to_ntp_timestamp",
]

# Seconds from the NTP era's origin (1900-01-01) to the Unix epoch (1970-01-01).
NTP_EPOCH_OFFSET = 2_208_988_800
SNTP_PACKET_BYTES = 48
_CLIENT_MODE, _SERVER_MODE = 3, 4
_VERSION = 4
_LEAP_ALARM = 3  # "clock not synchronized": the server's time is not to be used
# A venue's answer to a time request is small; anything bigger is not what was asked for.
MAX_VENUE_BODY_BYTES = 64 * 1024
# The Date header counts whole seconds and drops the fraction: the server's time lies anywhere in the
# second it names, so a reading from it is the middle of that second, give or take this much.
DATE_HEADER_UNCERTAINTY_SECONDS = 0.5
# timedatectl or chronyc that does not answer in this long is treated as absent.
SYNC_COMMAND_TIMEOUT_SECONDS = 2.0
MAX_SYNC_OUTPUT_BYTES = 64 * 1024


@dataclass(frozen=True)
class SourceFailure:
    """A time source that gave no usable reading, and why, in a sentence."""

    source: str
    reason: str


@dataclass(frozen=True)
class NtpReading:
    """The median of the valid samples one NTP server answered."""

    server: str
    ahead_seconds: float  # our clock minus the server's
    round_trip_seconds: float  # of the sample closest to the median
    stratum: int
    samples: int  # valid answers
    asked: int
    problems: tuple[str, ...] = ()  # why the other samples were thrown away


@dataclass(frozen=True)
class VenueReading:
    """A venue's server time, read over HTTP and corrected by half the round trip."""

    host: str
    ahead_seconds: float
    round_trip_seconds: float
    source: Literal["json", "date"]
    # How far the true offset may lie from ``ahead_seconds``: half the round trip, plus half a second for the
    # Date header's whole-second resolution. The check only counts what is certainly ahead.
    uncertainty_seconds: float


@dataclass(frozen=True)
class LocalSync:
    """What the system says of its own synchronisation; ``synchronized`` is None when it could not say."""

    tool: str | None  # "timedatectl", "chronyc" or None
    synchronized: bool | None
    detail: str
    skipped: list[str] = field(default_factory=list)


# -- SNTP --------------------------------------------------------------------------------------------


def to_ntp_timestamp(unix_seconds: float) -> int:
    """A Unix time as a 64-bit NTP timestamp (32 bits of seconds since 1900, 32 bits of fraction)."""
    whole = int(unix_seconds // 1)
    fraction = int((unix_seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return (((whole + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32) | fraction


def from_ntp_timestamp(timestamp: int) -> float:
    """A 64-bit NTP timestamp as a Unix time (era 0; good until 2036)."""
    return (timestamp >> 32) - NTP_EPOCH_OFFSET + (timestamp & 0xFFFFFFFF) / (1 << 32)


def ahead_from_ntp_timestamps(t1: float, t2: float, t3: float, t4: float) -> tuple[float, float]:
    """How far our clock is ahead of the server's, and the round trip, from one exchange.

    t1: we sent (our clock), t2: the server received, t3: the server sent (its clock), t4: we received.
    RFC 4330's offset ((t2 - t1) + (t3 - t4)) / 2 is the server's time minus ours, so "ahead" is its
    negation; the round trip leaves out the time the server held the request.
    """
    offset = ((t2 - t1) + (t3 - t4)) / 2
    round_trip = (t4 - t1) - (t3 - t2)
    return -offset, round_trip


def encode_sntp_request(nonce: int) -> bytes:
    """A client request whose transmit timestamp is ``nonce``: the server copies it into its reply's
    origin timestamp, so a reply that does not carry it back answers someone else (or no one)."""
    first = (0 << 6) | (_VERSION << 3) | _CLIENT_MODE
    return struct.pack("!B47x", first)[:40] + struct.pack("!Q", nonce)


@dataclass(frozen=True)
class _Reply:
    stratum: int
    receive: float
    transmit: float


def decode_sntp_reply(data: bytes, nonce: int) -> _Reply | str:
    """The server's receive and transmit times, or why the datagram is not a valid answer to ``nonce``."""
    if len(data) < SNTP_PACKET_BYTES:
        return f"a {len(data)}-byte reply, shorter than an SNTP packet ({SNTP_PACKET_BYTES} bytes)"
    first, stratum = data[0], data[1]
    leap, version, mode = first >> 6, (first >> 3) & 0x7, first & 0x7
    if mode != _SERVER_MODE:
        return f"a reply in mode {mode}, not a server's (mode {_SERVER_MODE})"
    if version not in (3, 4):
        return f"a reply of NTP version {version}, not 3 or 4"
    (origin,) = struct.unpack_from("!Q", data, 24)
    if origin != nonce:
        # Checked before the kiss code: only the server we asked may tell us to go away.
        return "a reply whose origin timestamp is not the one sent (stale or spoofed)"
    if stratum == 0:
        code = data[12:16].decode("ascii", errors="replace").strip("\x00 ") or "?"
        return f"a kiss-of-death ({code}): the server refuses to serve the time"
    if stratum > 15:
        return f"a reply of stratum {stratum}: the server is not synchronized"
    if leap == _LEAP_ALARM:
        return "a reply flagged 'clock not synchronized' (leap indicator 3)"
    receive, transmit = struct.unpack_from("!QQ", data, 32)
    if transmit == 0:
        return "a reply without a transmit timestamp"
    if receive == 0:
        return "a reply without a receive timestamp"
    if transmit < receive:
        return "a reply sent before it was received (its timestamps contradict each other)"
    return _Reply(stratum, from_ntp_timestamp(receive), from_ntp_timestamp(transmit))


def parse_server(spec: str, default_port: int = 123) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address, as a host and port."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, default_port


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self.monotonic: Callable[[], float] = lambda: 0.0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # Stamped on arrival, not when the coroutine gets round to it, so a busy loop does not add to t4.
        self.queue.put_nowait((data, self.monotonic()))

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait((b"", -1.0))  # an ICMP "port unreachable" and the like: nobody answers there


async def query_ntp_server(
    spec: str, clock: Clock, *, samples: int, timeout: float, default_port: int = 123
) -> NtpReading | SourceFailure:
    """Ask one server ``samples`` times, one question after another, each waiting at most ``timeout``."""
    try:
        host, port = parse_server(spec, default_port)
    except ValueError:
        return SourceFailure(spec, f"{spec!r} is not host or host:port")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        return SourceFailure(spec, f"cannot resolve {host} ({getattr(exc, 'strerror', None) or exc})")
    family, _, _, _, address = infos[0]
    try:
        # Connected, so the kernel drops datagrams from any other address and port.
        transport, protocol = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=(str(address[0]), int(address[1])), family=family
        )
    except OSError as exc:
        return SourceFailure(spec, f"cannot open a UDP socket to {spec}: {exc.strerror or exc}")
    protocol.monotonic = clock.monotonic
    answers: list[tuple[float, float, int]] = []
    problems: list[str] = []
    try:
        for _ in range(samples):
            problem = await _one_sample(transport, protocol, clock, timeout, answers)
            if problem is not None:
                problems.append(problem)
    finally:
        transport.close()
    if not answers:
        said = "; ".join(dict.fromkeys(problems))
        return SourceFailure(spec, f"no valid answer from NTP server {spec} in {samples} tries: {said}")
    median_ahead = statistics.median(a for a, _, _ in answers)
    closest = min(answers, key=lambda a: abs(a[0] - median_ahead))
    return NtpReading(spec, median_ahead, closest[1], closest[2], len(answers), samples, tuple(problems))


async def _one_sample(
    transport: asyncio.DatagramTransport,
    protocol: _Datagrams,
    clock: Clock,
    timeout: float,
    answers: list[tuple[float, float, int]],
) -> str | None:
    # The low 32 bits are random: the only thing a reply must carry back, and which nobody can guess.
    nonce = (to_ntp_timestamp(clock.wall()) & ~0xFFFFFFFF) | secrets.randbits(32)
    while not protocol.queue.empty():  # late answers to an earlier sample
        protocol.queue.get_nowait()
    sent_wall, sent_mono = clock.wall(), clock.monotonic()
    transport.sendto(encode_sntp_request(nonce))
    deadline = sent_mono + timeout
    problem = f"no answer within {timeout:g} s"
    while (left := deadline - clock.monotonic()) > 0:
        try:
            data, received_mono = await asyncio.wait_for(protocol.queue.get(), left)
        except TimeoutError:
            break
        if received_mono < 0:
            return "nothing listens there (port unreachable)"
        reply = decode_sntp_reply(data, nonce)
        if isinstance(reply, str):
            problem = reply
            if "origin timestamp" in reply:
                continue  # not the answer to this question: keep waiting for it
            return reply
        # t4 on our wall clock, from the monotonic interval: a wall step during the question cannot bend it.
        received_wall = sent_wall + (received_mono - sent_mono)
        ahead, round_trip = ahead_from_ntp_timestamps(sent_wall, reply.receive, reply.transmit, received_wall)
        answers.append((ahead, round_trip, reply.stratum))
        return None
    return problem


# -- a venue's server time over HTTP -------------------------------------------------------------------


async def query_venue(
    http: aiohttp.ClientSession,
    clock: Clock,
    url: str,
    *,
    json_field: str | None,
    unit: Literal["ms", "s"],
    headers: dict[str, str] | None = None,
    timeout: float,
) -> VenueReading | SourceFailure:
    """The venue's time from ``json_field`` of its JSON answer (dotted path) or else its Date header, waiting
    at most ``timeout`` seconds for all of it."""
    host = URL(url).host or url
    sent_wall, sent_mono = clock.wall(), clock.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with http.get(url, headers=headers or {}, allow_redirects=False) as response:
                received_mono = clock.monotonic()
                body = await _read_bounded(response) if json_field else b""
                status, date = response.status, response.headers.get("Date")
    except TimeoutError:
        return SourceFailure(host, f"venue {host} did not answer within {timeout:g} s")
    except aiohttp.ClientError as exc:
        return SourceFailure(host, f"venue {host} did not answer: {redact_url(str(exc)) or type(exc).__name__}")
    except OSError as exc:
        return SourceFailure(host, f"venue {host} did not answer: {exc.strerror or exc}")
    round_trip = received_mono - sent_mono
    # Our wall clock at the moment the server most likely stamped its answer: the middle of the round trip.
    midpoint = sent_wall + round_trip / 2
    if not 200 <= status < 300:
        return SourceFailure(host, f"venue {host} answered HTTP {status}, not its time")
    if json_field:
        if body is None:
            too_big = f"its answer is more than {MAX_VENUE_BODY_BYTES // 1024} KiB, too big to be its time"
            return SourceFailure(host, f"venue {host}: {too_big}")
        value = _json_time(body, json_field, unit)
        if isinstance(value, str):
            return SourceFailure(host, f"venue {host}: {value}")
        return VenueReading(host, midpoint - value, round_trip, "json", round_trip / 2)
    if date is None:
        return SourceFailure(host, f"venue {host} sent no Date header")
    try:
        stamped = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return SourceFailure(host, f"venue {host} sent a Date header that is not a date: {date[:60]!r}")
    server = stamped + DATE_HEADER_UNCERTAINTY_SECONDS
    return VenueReading(host, midpoint - server, round_trip, "date", round_trip / 2 + DATE_HEADER_UNCERTAINTY_SECONDS)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is longer than MAX_VENUE_BODY_BYTES: a time answer is small, and a venue's
    error page may not be (cut short, it would only look like broken JSON)."""
    data = bytearray()
    while len(data) <= MAX_VENUE_BODY_BYTES and (chunk := await response.content.readany()):
        data.extend(chunk)
    return bytes(data) if len(data) <= MAX_VENUE_BODY_BYTES else None


def _json_time(body: bytes, path: str, unit: Literal["ms", "s"]) -> float | str:
    try:
        value: Any = json.loads(body)
    except ValueError:
        return "its answer is not JSON"
    found, value = lookup_json_path(value, path)
    if not found:
        return f"its answer has no {path}"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return f"its {path} is {value[:40]!r}, not a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"its {path} is not a number"
    try:
        seconds = float(value) / 1000 if unit == "ms" else float(value)
    except OverflowError:  # an integer too big for a float
        seconds = math.inf
    if not math.isfinite(seconds):
        # JSON's NaN and Infinity (and "nan" as text) would compare as no offset at all, or as an endless one.
        return f"its {path} is not a finite number"
    return seconds


# -- the system's own view -----------------------------------------------------------------------------


async def local_sync_state() -> LocalSync:
    """Ask ``timedatectl show``, else ``chronyc tracking``; a tool that is absent or fails is skipped."""
    skipped: list[str] = []
    if shutil.which("timedatectl"):
        output = await _run("timedatectl", "show")
        if isinstance(output, str) and (value := _key_value(output, "NTPSynchronized")) is not None:
            synced = value.lower() == "yes"
            return LocalSync("timedatectl", synced, f"timedatectl: NTPSynchronized={value}", skipped)
        skipped.append(f"timedatectl show gave no NTPSynchronized ({_said(output)})")
    else:
        skipped.append("timedatectl is not installed")
    if shutil.which("chronyc"):
        output = await _run("chronyc", "tracking")
        if isinstance(output, str) and (leap := _colon_value(output, "Leap status")) is not None:
            system_time = _colon_value(output, "System time")
            detail = f"chronyc: leap status {leap}" + (f", system time {system_time}" if system_time else "")
            return LocalSync("chronyc", leap.lower() != "not synchronised", detail, skipped)
        skipped.append(f"chronyc tracking gave no leap status ({_said(output)})")
    else:
        skipped.append("chronyc is not installed")
    return LocalSync(None, None, "the system's sync state is unknown: " + "; ".join(skipped), skipped)


async def _run(*argv: str) -> str | tuple[int | None, str]:
    """The command's output when it succeeds, else its exit code and the first line it wrote."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LC_ALL": "C"},
        )
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        out, err = await asyncio.wait_for(process.communicate(), SYNC_COMMAND_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None, f"no answer within {SYNC_COMMAND_TIMEOUT_SECONDS:g} s"
    text = out[:MAX_SYNC_OUTPUT_BYTES].decode(errors="replace")
    if process.returncode != 0:
        first = (err or out)[:MAX_SYNC_OUTPUT_BYTES].decode(errors="replace").strip().splitlines()
        return process.returncode, first[0] if first else ""
    return text


def _said(output: str | tuple[int | None, str]) -> str:
    if isinstance(output, str):
        return "its output did not say"
    code, line = output
    return f"exit {code}: {line}" if code is not None else line


def _key_value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _colon_value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None
