"""The clock check against a real loopback SNTP server and a real loopback HTTP time server, each with a skew."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from horus.checks.base import ProbeContext, Status
from horus.checks.clock import ClockCheck, ClockOptions
from horus.errors import HealError
from horus.heals.base import HealContext
from horus.heals.halt import HaltHeal, HaltOptions
from horus.testing import ShiftedClock, StubCommands
from horus.timesources import (
    NTP_EPOCH_OFFSET,
    ahead_from_ntp_timestamps,
    decode_sntp_reply,
    encode_sntp_request,
    from_ntp_timestamp,
    to_ntp_timestamp,
)
from horus_sdk.control_files import read_command

# -- the loopback servers ------------------------------------------------------------------------------


class LoopbackSntpServer:
    """An SNTP server on 127.0.0.1 in a thread whose clock runs ``skew`` seconds from ours.

    ``misbehave`` makes it answer wrongly: "silent", "short", "client_mode", "version_7", "kiss",
    "wrong_origin", "unsynchronized", or "stale_then_right" (a stale reply, then the real answer).
    """

    def __init__(self, skew: float = 0.0, misbehave: str | None = None) -> None:
        self.skew = skew
        self.misbehave = misbehave
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LoopbackSntpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            received = time.time() + self.skew
            for reply in self._replies(request, received):
                self.sock.sendto(reply, peer)

    def _replies(self, request: bytes, received: float) -> list[bytes]:
        how = self.misbehave
        if how == "silent":
            return []
        origin = request[40:48]
        leap, version, mode, stratum = 0, 4, 4, 2
        if how == "client_mode":
            mode = 3
        elif how == "version_7":
            version = 7
        elif how == "kiss":
            stratum = 0
        elif how == "unsynchronized":
            leap = 3
        elif how in ("wrong_origin", "stale_then_right"):
            wrong = bytes(b ^ 0xFF for b in origin)
            stale = self._packet(leap, version, mode, stratum, wrong, received)
            if how == "wrong_origin":
                return [stale]
            return [stale, self._packet(leap, version, mode, stratum, origin, received)]
        reply = self._packet(leap, version, mode, stratum, origin, received)
        return [reply[:40]] if how == "short" else [reply]

    def _packet(self, leap: int, version: int, mode: int, stratum: int, origin: bytes, received: float) -> bytes:
        first = (leap << 6) | (version << 3) | mode
        reference = b"RATE" if stratum == 0 else b"LOCL"
        transmit = time.time() + self.skew
        return (
            struct.pack("!BBbb", first, stratum, 6, -20)
            + struct.pack("!II", 0, 0)
            + reference
            + struct.pack("!Q", to_ntp_timestamp(transmit))
            + origin
            + struct.pack("!QQ", to_ntp_timestamp(received), to_ntp_timestamp(transmit))
        )


class LoopbackTimeServer:
    """A venue's time endpoint on 127.0.0.1: ``/time`` answers ``{"serverTime": ms}``, every answer's Date
    header included, on a clock ``skew`` seconds from ours."""

    def __init__(self, skew: float = 0.0, body: bytes | None = None) -> None:
        self.skew = skew
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                now = time.time() + server.skew
                answer = json.dumps({"serverTime": int(now * 1000), "nested": {"seconds": now}}).encode()
                body = answer if server.body is None else server.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.formatdate(time.time() + server.skew, usegmt=True)

            def log_message(self, *args: object) -> None:
                pass

        self.body = body
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/time"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> LoopbackTimeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def no_sync_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither timedatectl nor chronyc on PATH, so that the host's own state does not enter the results."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def clock_check(**options: object) -> ClockCheck:
    return ClockCheck(ClockOptions.model_validate({"type": "clock", "query_timeout_seconds": 0.3, **options}))


# -- the arithmetic --------------------------------------------------------------------------------------


def test_the_offset_is_the_mean_of_both_legs_and_the_round_trip_leaves_out_the_servers_hold():
    # The server's clock is 10 s behind ours; 40 ms each way; it held the request 5 ms.
    t1 = 1000.0
    t2 = t1 + 0.040 - 10
    t3 = t2 + 0.005
    t4 = t3 + 10 + 0.040
    ahead, round_trip = ahead_from_ntp_timestamps(t1, t2, t3, t4)
    assert ahead == pytest.approx(10.0)
    assert round_trip == pytest.approx(0.080)


def test_an_asymmetric_path_errs_by_half_the_difference_of_its_legs():
    # Same clocks, but 70 ms out and 10 ms back: SNTP cannot see it and is off by (70 - 10) / 2 ms.
    t1 = 0.0
    t2 = t1 + 0.070
    t3 = t2
    t4 = t3 + 0.010
    ahead, round_trip = ahead_from_ntp_timestamps(t1, t2, t3, t4)
    assert ahead == pytest.approx(-0.030)
    assert round_trip == pytest.approx(0.080)


def test_ntp_timestamps_count_from_1900_with_a_32_bit_fraction():
    assert to_ntp_timestamp(0.0) == NTP_EPOCH_OFFSET << 32
    assert to_ntp_timestamp(1.5) & 0xFFFFFFFF == 1 << 31
    now = time.time()
    assert from_ntp_timestamp(to_ntp_timestamp(now)) == pytest.approx(now, abs=1e-6)


def test_a_reply_is_refused_for_each_way_it_can_be_wrong():
    nonce = 0x1234_5678_9ABC_DEF0

    def reply(
        first: int = 0x24, stratum: int = 2, origin: int = nonce, transmit: int = 1 << 40, receive: int | None = None
    ) -> bytes:
        return (
            struct.pack("!BBbb", first, stratum, 6, -20)
            + b"\0" * 8
            + b"RATE"
            + b"\0" * 8
            + struct.pack("!QQQ", origin, transmit if receive is None else receive, transmit)
        )

    assert not isinstance(decode_sntp_reply(reply(), nonce), str)
    assert "shorter than an SNTP packet" in str(decode_sntp_reply(reply()[:47], nonce))
    assert "mode 3" in str(decode_sntp_reply(reply(first=0x23), nonce))
    assert "version 7" in str(decode_sntp_reply(reply(first=(7 << 3) | 4), nonce))
    assert "kiss-of-death (RATE)" in str(decode_sntp_reply(reply(stratum=0), nonce))
    assert "stratum 16" in str(decode_sntp_reply(reply(stratum=16), nonce))
    assert "not synchronized" in str(decode_sntp_reply(reply(first=0xE4), nonce))
    assert "stale or spoofed" in str(decode_sntp_reply(reply(origin=nonce ^ 1), nonce))
    assert "without a transmit timestamp" in str(decode_sntp_reply(reply(transmit=0), nonce))
    # A zero receive timestamp (1900) would read as a clock decades ahead of the server, and a heal on it.
    assert "without a receive timestamp" in str(decode_sntp_reply(reply(receive=0), nonce))
    assert "sent before it was received" in str(decode_sntp_reply(reply(receive=(1 << 40) + (1 << 33)), nonce))
    # A kiss-of-death that does not answer our question is nobody's to give.
    assert "stale or spoofed" in str(decode_sntp_reply(reply(stratum=0, origin=nonce ^ 1), nonce))


def test_a_request_is_a_version_4_client_packet_carrying_its_nonce():
    packet = encode_sntp_request(42)
    assert len(packet) == 48
    assert packet[0] == 0x23
    assert struct.unpack("!Q", packet[40:48]) == (42,)


# -- against the loopback SNTP server ---------------------------------------------------------------------


async def test_a_clock_ahead_of_an_ntp_server_beyond_critical_is_unhealthy_with_the_offset_in_words(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackSntpServer(skew=-2.0) as server:
        result = await clock_check(ntp_servers=[server.address], samples=3).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY, result.reason
    assert result.reason.startswith(f"the clock is 2.0 s ahead of NTP server {server.address}; the limit is 1 s")
    [reading] = result.details["ntp"]
    assert reading["ahead_seconds"] == pytest.approx(2.0, abs=0.05)
    assert reading["samples"] == "3/3"
    assert server.queries == 3
    assert result.details["condition"] == "offset"
    assert [a["kind"] for a in result.details["alerts"]] == ["clock_offset"]


async def test_a_clock_in_step_with_two_ntp_servers_is_healthy(probe_ctx: ProbeContext, no_sync_tools: None):
    with LoopbackSntpServer() as first, LoopbackSntpServer(skew=0.01) as second:
        result = await clock_check(ntp_servers=[first.address, second.address]).probe(probe_ctx)
    assert result.status is Status.HEALTHY, result.reason
    assert result.reason.endswith(" 2 NTP servers")
    assert abs(result.details["ntp_ahead_seconds"]) < 0.05
    assert "alerts" not in result.details


@pytest.mark.parametrize(
    ("misbehave", "said"),
    [
        ("silent", "no answer within 0.3 s"),
        ("short", "shorter than an SNTP packet"),
        ("client_mode", "not a server's"),
        ("version_7", "version 7"),
        ("kiss", "kiss-of-death (RATE)"),
        ("unsynchronized", "leap indicator 3"),
        ("wrong_origin", "stale or spoofed"),
    ],
)
async def test_a_server_that_misbehaves_is_a_reason_and_the_other_server_still_judges(
    probe_ctx: ProbeContext, no_sync_tools: None, misbehave: str, said: str
):
    with LoopbackSntpServer(misbehave=misbehave) as bad, LoopbackSntpServer() as good:
        result = await clock_check(ntp_servers=[bad.address, good.address], samples=2).probe(probe_ctx)
    assert result.status is Status.HEALTHY, result.reason
    assert f"NTP server {good.address}" in result.reason
    [failure] = result.details["failures"]
    assert failure["source"] == bad.address
    assert said in failure["reason"]
    assert said in result.reason


async def test_a_stale_reply_is_skipped_and_the_real_answer_after_it_is_used(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackSntpServer(skew=-0.5, misbehave="stale_then_right") as server:
        result = await clock_check(ntp_servers=[server.address], samples=2).probe(probe_ctx)
    [reading] = result.details["ntp"]
    assert reading["samples"] == "2/2"
    assert reading["ahead_seconds"] == pytest.approx(0.5, abs=0.05)


async def test_no_source_answering_is_a_probe_error_never_a_reason_to_heal(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackSntpServer(misbehave="silent") as server:
        started = time.monotonic()
        result = await clock_check(ntp_servers=[server.address], samples=2).probe(probe_ctx)
    assert result.status is Status.ERROR
    assert "no time source answered" in result.reason and "no answer within 0.3 s" in result.reason
    assert time.monotonic() - started < 2.0, "each question waits its own bounded time"


# -- against the loopback HTTP time server ----------------------------------------------------------------


async def test_ahead_of_the_venue_is_unhealthy_on_its_own_even_within_the_critical_offset(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackTimeServer(skew=-2.0) as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"}, critical_offset_seconds=5)
        result = await check.probe(probe_ctx)
    assert result.status is Status.UNHEALTHY, result.reason
    assert result.details["condition"] == "ahead_of_venue"
    assert result.reason.startswith("the clock is 2.0 s ahead of 127.0.0.1 (HTTP, round trip ")
    assert "rejects signed requests stamped in its future, cancel-all included" in result.reason
    assert result.details["venue"]["ahead_seconds"] == pytest.approx(2.0, abs=0.05)


async def test_behind_the_venue_by_as_much_is_healthy_within_the_critical_offset(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackTimeServer(skew=2.0) as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"}, critical_offset_seconds=5)
        result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY, result.reason
    assert result.reason.startswith("the clock is 2.0 s behind 127.0.0.1")
    # Still far off: an alert says so.
    assert [a["kind"] for a in result.details["alerts"]] == ["clock_offset"]


async def test_a_venue_time_in_seconds_at_a_dotted_path_is_read(probe_ctx: ProbeContext, no_sync_tools: None):
    with LoopbackTimeServer(skew=-0.1) as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "nested.seconds", "unit": "s"})
        result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY, result.reason
    assert result.details["venue"]["ahead_seconds"] == pytest.approx(0.1, abs=0.05)


async def test_the_date_header_is_read_to_the_second_and_says_so(probe_ctx: ProbeContext, no_sync_tools: None):
    with LoopbackTimeServer(skew=-3.0) as venue:
        result = await clock_check(venue={"url": venue.url}).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY, result.reason
    assert "(HTTP Date header, 1 s resolution, round trip" in result.reason
    reading = result.details["venue"]
    assert reading["source"] == "date"
    assert reading["ahead_seconds"] == pytest.approx(3.0, abs=0.55)
    assert reading["uncertainty_seconds"] >= 0.5


async def test_with_the_date_header_only_what_is_certainly_ahead_counts(probe_ctx: ProbeContext, no_sync_tools: None):
    # 0.9 s ahead read from whole seconds is anywhere from 0.4 to 1.4 s: never certainly beyond 1 s.
    with LoopbackTimeServer(skew=-0.9) as venue:
        for _ in range(3):
            result = await clock_check(venue={"url": venue.url}).probe(probe_ctx)
            assert result.status is Status.HEALTHY, result.reason


async def test_a_venue_that_does_not_answer_its_time_is_a_reason(probe_ctx: ProbeContext, no_sync_tools: None):
    with LoopbackTimeServer() as venue, LoopbackSntpServer() as server:
        url = venue.url
        check = clock_check(venue={"url": url, "json_field": "noSuchField"}, ntp_servers=[server.address])
        result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert "venue 127.0.0.1: its answer has no noSuchField" in result.reason
    assert result.details["venue"] == {"url": url, "answered": False}


# -- alerts, steps and the system's own view ----------------------------------------------------------------


async def test_beyond_warn_is_an_alert_once_per_crossing(probe_ctx: ProbeContext, no_sync_tools: None):
    with LoopbackTimeServer(skew=-0.5) as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"})
        kinds = []
        for skew in (-0.5, -0.5, 0.0, 0.0, -0.5):
            venue.skew = skew
            result = await check.probe(probe_ctx)
            assert result.status is Status.HEALTHY, result.reason
            kinds.append([a["kind"] for a in result.details.get("alerts", [])])
    assert kinds == [["clock_offset"], [], ["clock_offset_cleared"], [], ["clock_offset"]]


async def test_a_wall_clock_step_is_an_alert_and_kept_as_evidence(probe_ctx: ProbeContext, no_sync_tools: None):
    clock = ShiftedClock()
    ctx = ProbeContext(clock=clock, http=probe_ctx.http)
    with LoopbackTimeServer() as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"}, critical_offset_seconds=10)
        first = await check.probe(ctx)
        assert "step" not in first.details
        clock.jump(3.0)
        stepped = await check.probe(ctx)
        after = await check.probe(ctx)
    assert stepped.details["step"]["step_seconds"] == pytest.approx(3.0, abs=0.05)
    assert "clock_step" in [a["kind"] for a in stepped.details["alerts"]]
    assert "the wall clock was stepped forward by 3.0 s" in stepped.details["alerts"][0]["message"]
    assert "step" not in after.details
    assert [s["step_seconds"] for s in after.details["steps"]] == [pytest.approx(3.0, abs=0.05)]


async def test_an_unsynchronized_system_clock_is_an_alert_once(
    probe_ctx: ProbeContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    stubs = StubCommands(tmp_path / "bin")
    stubs.install("timedatectl", stdout="Timezone=UTC\nNTP=yes\nNTPSynchronized=no\n")
    monkeypatch.setenv("PATH", str(stubs.directory))
    with LoopbackTimeServer() as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"})
        first = await check.probe(probe_ctx)
        second = await check.probe(probe_ctx)
    assert first.details["local_sync"] == {
        "tool": "timedatectl",
        "synchronized": False,
        "detail": "timedatectl: NTPSynchronized=no",
    }
    assert [a["kind"] for a in first.details["alerts"]] == ["clock_unsynchronized"]
    assert "alerts" not in second.details
    assert stubs.calls("timedatectl") == [["show"], ["show"]]


async def test_chronyc_answers_where_timedatectl_cannot(
    probe_ctx: ProbeContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    stubs = StubCommands(tmp_path / "bin")
    stubs.install(
        "timedatectl", stderr="System has not been booted with systemd as init system (PID 1).\n", exit_code=1
    )
    tracking = (
        "Reference ID    : 7F7F0101 ()\nSystem time     : 0.000012 seconds fast of NTP time\nLeap status     : Normal\n"
    )
    stubs.install("chronyc", stdout=tracking)
    monkeypatch.setenv("PATH", str(stubs.directory))
    with LoopbackTimeServer() as venue:
        result = await clock_check(venue={"url": venue.url, "json_field": "serverTime"}).probe(probe_ctx)
    sync = result.details["local_sync"]
    assert sync["tool"] == "chronyc" and sync["synchronized"] is True
    assert "0.000012 seconds fast of NTP time" in sync["detail"]


async def test_without_timedatectl_or_chronyc_the_sync_state_is_skipped_and_said(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackTimeServer() as venue:
        result = await clock_check(venue={"url": venue.url, "json_field": "serverTime"}).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    sync = result.details["local_sync"]
    assert sync["synchronized"] is None
    assert "timedatectl is not installed" in sync["detail"] and "chronyc is not installed" in sync["detail"]


# -- options ------------------------------------------------------------------------------------------------


def test_options_need_a_source_and_thresholds_in_order():
    with pytest.raises(ValidationError, match="the clock needs something to be compared with"):
        ClockOptions.model_validate({"type": "clock"})
    with pytest.raises(ValidationError, match="must not exceed critical_offset_seconds"):
        ClockOptions.model_validate(
            {"type": "clock", "ntp_servers": ["pool.ntp.org"], "warn_offset_seconds": 2, "critical_offset_seconds": 1}
        )
    with pytest.raises(ValidationError, match=r"port 1\.\.65535"):
        ClockOptions.model_validate({"type": "clock", "ntp_servers": ["pool.ntp.org:0"]})
    with pytest.raises(ValidationError, match="http:// or https://"):
        ClockOptions.model_validate({"type": "clock", "venue": {"url": "ftp://venue"}})


def test_the_probe_is_given_time_for_every_sample():
    check = clock_check(ntp_servers=["127.0.0.1:1"], samples=10, query_timeout_seconds=1.5)
    assert check.timeout_seconds(10.0) >= 15.0


# -- the halt heal's reduce command ---------------------------------------------------------------------------


def test_the_halt_heal_takes_command_reduce_but_not_with_flatten(tmp_path: Path):
    assert HaltOptions.model_validate({"action": "halt", "control_dir": str(tmp_path)}).command == "halt"
    with pytest.raises(ValidationError, match="cannot go with command: reduce"):
        HaltOptions.model_validate(
            {"action": "halt", "control_dir": str(tmp_path), "command": "reduce", "flatten": True}
        )


async def test_the_halt_heal_with_command_reduce_writes_reduce(tmp_path: Path):
    options = HaltOptions.model_validate(
        {"action": "halt", "control_dir": str(tmp_path), "command": "reduce", "ack_timeout_seconds": 0.2}
    )
    with pytest.raises(HealError, match=r"did not acknowledge reduce \(seq 1\)"):
        await HaltHeal(options).run(HealContext(clock=ShiftedClock(), monitor="clock", reason="the clock is ahead"))
    command = read_command(tmp_path)
    assert command.command == "reduce"
    assert command.reason == "Horus healed clock: the clock is ahead"


async def test_without_a_critical_offset_only_a_clock_ahead_of_the_venue_is_unhealthy(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackTimeServer(skew=30.0) as venue:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"}, critical_offset_seconds=None)
        behind = await check.probe(probe_ctx)
        venue.skew = -30.0
        ahead = await check.probe(probe_ctx)
    assert behind.status is Status.HEALTHY and behind.reason.startswith("the clock is 30 s behind 127.0.0.1")
    assert ahead.status is Status.UNHEALTHY and ahead.details["condition"] == "ahead_of_venue"


async def test_an_ntp_port_nobody_listens_on_is_said_at_once(probe_ctx: ProbeContext, no_sync_tools: None):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    result = await clock_check(ntp_servers=[address], samples=1, query_timeout_seconds=5).probe(probe_ctx)
    assert result.status is Status.ERROR
    assert "nothing listens there (port unreachable)" in result.reason


async def test_a_venue_url_that_refuses_connections_is_a_reason_without_its_credentials(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with LoopbackSntpServer() as server:
        venue = {"url": f"http://key:s3cret@127.0.0.1:{port}/time", "json_field": "serverTime"}
        result = await clock_check(venue=venue, ntp_servers=[server.address]).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert "venue 127.0.0.1 did not answer" in result.reason
    assert "s3cret" not in result.reason and "s3cret" not in json.dumps(result.details)


@pytest.mark.parametrize("value", ["NaN", '"nan"', "1e999", '"-Infinity"', "1" + "0" * 400])
async def test_a_venue_time_that_is_not_a_finite_number_is_a_reason_never_a_healthy_clock(
    probe_ctx: ProbeContext, no_sync_tools: None, value: str
):
    with LoopbackTimeServer(body=b'{"serverTime": ' + value.encode() + b"}") as venue:
        result = await clock_check(venue={"url": venue.url, "json_field": "serverTime"}).probe(probe_ctx)
    assert result.status is Status.ERROR, result.reason
    assert "venue 127.0.0.1: its serverTime is not a finite number" in result.reason


async def test_a_venue_answer_too_big_to_be_a_time_is_said_so_not_called_not_json(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackTimeServer(body=b'{"serverTime": ' + b" " * 200_000 + b"1}") as venue:
        result = await clock_check(venue={"url": venue.url, "json_field": "serverTime"}).probe(probe_ctx)
    assert result.status is Status.ERROR, result.reason
    assert "venue 127.0.0.1: its answer is more than 64 KiB, too big to be its time" in result.reason


async def test_a_venue_that_never_answers_is_a_reason_and_the_ntp_servers_still_judge(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    # The kernel completes the connection; nobody ever reads the request or answers it.
    with socket.socket() as silent, LoopbackSntpServer() as server:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        venue = {"url": f"http://127.0.0.1:{silent.getsockname()[1]}/time", "json_field": "serverTime"}
        check = clock_check(venue=venue, ntp_servers=[server.address], samples=2, query_timeout_seconds=0.5)
        # As the runner does: the probe is cancelled at its own timeout.
        result = await asyncio.wait_for(check.probe(probe_ctx), check.timeout_seconds(1.0))
    assert result.status is Status.HEALTHY, result.reason
    assert "NTP server" in result.reason
    assert "venue 127.0.0.1 did not answer within 1 s" in result.reason


# -- a venue time no clock could be off by ---------------------------------------------------------------


async def test_a_venue_time_in_seconds_read_as_milliseconds_is_a_reason_with_the_fix_never_a_heal(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    # The venue answers seconds; the config says ms (the default): read so, the venue is in January 1970.
    with LoopbackTimeServer(body=json.dumps({"serverTime": time.time()}).encode()) as venue:
        result = await clock_check(venue={"url": venue.url, "json_field": "serverTime"}).probe(probe_ctx)
    assert result.status is Status.ERROR, result.reason
    assert "venue 127.0.0.1: its serverTime reads as 1970-01-" in result.reason, result.reason
    assert "years from this clock, and no NTP server confirms a clock this far off" in result.reason
    assert "read in seconds it is " in result.reason and "from this clock: set unit: s" in result.reason


async def test_a_placeholder_venue_time_is_set_aside_and_the_ntp_servers_judge(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    with LoopbackTimeServer(body=b'{"serverTime": 0}') as venue, LoopbackSntpServer() as server:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"}, ntp_servers=[server.address])
        result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY, result.reason
    assert "NTP server" in result.reason
    assert "venue 127.0.0.1: its serverTime reads as 1970-01-01 00:00 UTC" in result.reason, result.reason
    assert "set unit" not in result.reason


async def test_a_venue_far_off_that_an_ntp_server_confirms_is_the_clock_far_off(
    probe_ctx: ProbeContext, no_sync_tools: None
):
    two_days = 2 * 86400.0
    with LoopbackTimeServer(skew=-two_days) as venue, LoopbackSntpServer(skew=-two_days) as server:
        check = clock_check(venue={"url": venue.url, "json_field": "serverTime"}, ntp_servers=[server.address])
        result = await check.probe(probe_ctx)
    assert result.status is Status.UNHEALTHY, result.reason
    assert result.details["condition"] == "ahead_of_venue"
