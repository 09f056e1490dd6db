from __future__ import annotations

import re
import socket

import pydantic
import pytest

from horus.checks.base import Status
from horus.checks.port_open import PortOpenCheck, PortOpenOptions
from tests.support import free_port


def make_check(**options) -> PortOpenCheck:
    return PortOpenCheck(PortOpenOptions.model_validate({"type": "port_open", **options}))


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


async def test_a_listening_port_is_healthy_with_the_connect_time_in_the_reason(listener, probe_ctx):
    port = listener.getsockname()[1]
    result = await make_check(port=port).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert re.fullmatch(rf"127\.0\.0\.1:{port} accepted a connection in \d+ ms", result.reason)
    assert result.details["port"] == port


async def test_the_connection_is_closed_after_it_is_accepted(listener, probe_ctx):
    result = await make_check(port=listener.getsockname()[1]).probe(probe_ctx)
    assert result.is_healthy
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(2)
        assert conn.recv(1) == b"", "the probe closed its end and sent nothing"


async def test_an_ipv6_address_is_written_in_brackets_in_the_reason(probe_ctx):
    try:
        sock = socket.socket(socket.AF_INET6)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with sock:
        sock.listen(1)
        port = sock.getsockname()[1]
        result = await make_check(host="::1", port=port).probe(probe_ctx)
    assert re.fullmatch(rf"\[::1\]:{port} accepted a connection in \d+ ms", result.reason)


async def test_a_closed_port_is_unhealthy_because_it_refused_the_connection(probe_ctx):
    port = free_port()
    result = await make_check(port=port).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"127.0.0.1:{port} refused the connection"


async def test_localhost_is_refused_even_when_it_has_several_addresses(probe_ctx):
    port = free_port()
    result = await make_check(host="localhost", port=port).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"localhost:{port} refused the connection"


async def test_an_unknown_host_is_unhealthy_and_says_it_cannot_be_resolved(probe_ctx):
    result = await make_check(host="horus-test.invalid", port=80).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("cannot resolve horus-test.invalid (")


async def test_a_server_that_accepts_but_never_answers_still_has_an_open_port(silent_server, probe_ctx):
    result = await make_check(port=silent_server.port).probe(probe_ctx)
    assert result.status is Status.HEALTHY


def test_no_answer_in_time_counts_as_unhealthy():
    assert PortOpenCheck.timeout_means_unhealthy is True


def test_the_checks_own_timeout_overrides_the_monitors():
    assert make_check(port=80, timeout_seconds=2).timeout_seconds(10) == 2
    assert make_check(port=80).timeout_seconds(10) == 10


def test_host_defaults_to_loopback_and_brackets_around_ipv6_are_dropped():
    assert make_check(port=80).options.host == "127.0.0.1"
    assert make_check(host="[::1]", port=80).options.host == "::1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": 0}, "must be 1..65535, got 0"),
        ({"port": 65536}, "must be 1..65535, got 65536"),
        ({"port": 80, "host": " "}, "must not be empty"),
        ({"port": 80, "timeout_seconds": -1}, "greater than 0"),
        ({"port": 80, "address": "x"}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
def test_invalid_options_are_rejected_at_config_time(options, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        PortOpenOptions.model_validate({"type": "port_open", **options})
