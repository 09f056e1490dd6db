from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import aiohttp
import pydantic
import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.http_health import HttpHealthCheck, HttpHealthOptions
from horus.clock import SystemClock
from tests.support import Route, free_port

LATENCY = r"\d+ ms"


def make_check(url: str, **options) -> HttpHealthCheck:
    return HttpHealthCheck(HttpHealthOptions.model_validate({"type": "http_health", "url": url, **options}))


def serve_json(server, document, path: str = "/health") -> str:
    server.routes[path] = Route(200, json.dumps(document).encode(), "application/json")
    return server.url(path)


class ScriptedServer:
    """A loopback TCP server that hands each connection to ``handle``: for answers no real server gives."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._handle = handle
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._handle(conn)

    def close(self) -> None:
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket], None]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(handle: Callable[[socket.socket], None]) -> ScriptedServer:
        servers.append(ScriptedServer(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def self_signed_cert(tmp_path_factory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls_context(self_signed_cert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed_cert)
    return context


@pytest.fixture
def tls_server(scripted, tls_context) -> ScriptedServer:
    def answer_over_tls(conn: socket.socket) -> None:
        with tls_context.wrap_socket(conn, server_side=True) as tls:
            read_request(tls)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    return scripted(answer_over_tls)


@pytest.fixture
def keep_alive_tls_server(scripted, tls_context) -> tuple[ScriptedServer, list[int]]:
    """A TLS server that answers every request on a connection; the list counts requests per connection."""
    requests_per_connection: list[int] = []

    def answer_until_closed(conn: socket.socket) -> None:
        with tls_context.wrap_socket(conn, server_side=True) as tls:
            requests_per_connection.append(0)
            while read_request(tls):
                requests_per_connection[-1] += 1
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    return scripted(answer_until_closed), requests_per_connection


# Status and latency


async def test_a_200_is_healthy_with_status_and_latency_in_the_reason(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"ok")
    result = await make_check(http_server.url("/health")).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}", result.reason)
    assert result.details["status_code"] == 200
    assert result.details["method"] == "GET"
    assert isinstance(result.details["latency_ms"], float)


async def test_a_503_is_unhealthy_with_status_and_latency_in_the_reason(http_server, probe_ctx):
    http_server.routes["/health"] = Route(503, b"overloaded")
    result = await make_check(http_server.url("/health")).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert re.fullmatch(rf"HTTP 503 in {LATENCY}, expected 2xx", result.reason)


async def test_a_status_outside_expect_status_is_unhealthy_and_names_the_expected_ones(http_server, probe_ctx):
    http_server.routes["/health"] = Route(204, b"")
    check = make_check(http_server.url("/health"), expect_status=[200])
    result = await check.probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 204 in {LATENCY}, expected 200", result.reason)
    check = make_check(http_server.url("/health"), expect_status=[200, 201, 202])
    result = await check.probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 204 in {LATENCY}, expected 200, 201 or 202", result.reason)


async def test_expect_status_can_make_a_non_2xx_status_healthy(http_server, probe_ctx):
    http_server.routes["/health"] = Route(418, b"teapot")
    result = await make_check(http_server.url("/health"), expect_status=[418]).probe(probe_ctx)
    assert result.status is Status.HEALTHY


async def test_the_route_changing_under_the_check_is_seen_on_the_next_probe(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"ok")
    check = make_check(http_server.url("/health"))
    assert (await check.probe(probe_ctx)).is_healthy
    http_server.routes["/health"].status = 500
    assert (await check.probe(probe_ctx)).status is Status.UNHEALTHY


async def test_the_configured_method_and_headers_are_sent(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"ok")
    check = make_check(http_server.url("/health"), method="post", headers={"X-Probe": "horus"})
    assert (await check.probe(probe_ctx)).is_healthy
    method, path, headers = http_server.requests[-1]
    assert (method, path, headers["X-Probe"]) == ("POST", "/health", "horus")


async def test_head_reads_no_body_and_is_healthy_on_2xx(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"ok")
    result = await make_check(http_server.url("/health"), method="HEAD").probe(probe_ctx)
    assert result.is_healthy
    assert http_server.requests[-1][0] == "HEAD"


async def test_the_clients_own_timeout_does_not_cut_a_slow_answer_short(http_server):
    # Only the runner times a probe out; a shared client created with a short default must not.
    http_server.routes["/slow"] = Route(200, b"ok")
    http_server.routes["/slow"].delay_seconds = 0.3
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.05)) as http:
        ctx = ProbeContext(clock=SystemClock(), http=http)
        result = await make_check(http_server.url("/slow")).probe(ctx)
    assert result.status is Status.HEALTHY
    assert result.details["latency_ms"] >= 300


# Body conditions


async def test_a_body_without_the_expected_text_is_unhealthy(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"starting")
    result = await make_check(http_server.url("/health"), body_contains="ok").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, body does not contain 'ok'", result.reason)


async def test_a_body_with_the_expected_text_is_healthy(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"status: ok")
    result = await make_check(http_server.url("/health"), body_contains="ok").probe(probe_ctx)
    assert result.status is Status.HEALTHY


async def test_body_regex_must_match_somewhere_in_the_body(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"workers: 4\nqueue: 0\n")
    matching = make_check(http_server.url("/health"), body_regex=r"^queue: 0$")
    assert (await matching.probe(probe_ctx)).status is Status.UNHEALTHY, "no MULTILINE unless asked for"
    matching = make_check(http_server.url("/health"), body_regex=r"(?m)^queue: 0$")
    assert (await matching.probe(probe_ctx)).status is Status.HEALTHY
    failing = make_check(http_server.url("/health"), body_regex=r"workers: [5-9]")
    result = await failing.probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, body does not match 'workers: \[5-9\]'", result.reason)


async def test_a_json_value_that_differs_is_unhealthy_with_both_values(http_server, probe_ctx):
    url = serve_json(http_server, {"status": "degraded"})
    result = await make_check(url, json_equals={"status": "ok"}).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, status is 'degraded', expected 'ok'", result.reason)


async def test_json_paths_reach_into_nested_objects_and_lists(http_server, probe_ctx):
    url = serve_json(http_server, {"db": {"connected": True}, "items": [{"id": 7}], "lag": 1.0})
    check = make_check(url, json_equals={"db.connected": True, "items.0.id": 7, "lag": 1})
    result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY, result.reason


async def test_json_true_is_not_the_number_one(http_server, probe_ctx):
    url = serve_json(http_server, {"db": {"connected": 1}})
    result = await make_check(url, json_equals={"db.connected": True}).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, db.connected is 1, expected true", result.reason)


async def test_a_missing_json_path_is_unhealthy_and_names_the_path(http_server, probe_ctx):
    url = serve_json(http_server, {"items": []})
    result = await make_check(url, json_equals={"items.0.id": 7}).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, items.0.id is missing", result.reason)


async def test_a_body_that_is_not_json_is_unhealthy_when_json_equals_is_set(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"<html>502 Bad Gateway</html>", "text/html")
    result = await make_check(http_server.url("/health"), json_equals={"status": "ok"}).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, body is not JSON", result.reason)


async def test_the_status_is_judged_before_the_body(http_server, probe_ctx):
    url = serve_json(http_server, {"status": "ok"})
    http_server.routes["/health"].status = 500
    result = await make_check(url, json_equals={"status": "ok"}).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 500 in {LATENCY}, expected 2xx", result.reason)


async def test_only_the_first_mib_of_a_huge_body_is_read(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b" " * (2 * 1024 * 1024) + b"MARKER")
    result = await make_check(http_server.url("/health"), body_contains="MARKER").probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, body does not contain 'MARKER'", result.reason)
    url = serve_json(http_server, {"status": "ok", "padding": "x" * (2 * 1024 * 1024)})
    result = await make_check(url, json_equals={"status": "ok"}).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, body is not JSON \(only its first MiB was read\)", result.reason)


async def test_a_body_that_cannot_be_decompressed_is_unhealthy(scripted, probe_ctx):
    def broken_gzip(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!")

    server = scripted(broken_gzip)
    result = await make_check(server.url(), body_contains="ok").probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}, body could not be decoded as gzip", result.reason)


# Redirects


async def test_a_redirect_is_not_followed_by_default_and_says_where_it_points(scripted, probe_ctx):
    def redirect(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /login?token=abc\r\nContent-Length: 0\r\n\r\n")

    server = scripted(redirect)
    result = await make_check(server.url()).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 302 in {LATENCY}, expected 2xx, redirects to /login\?token=\*\*\*", result.reason)


async def test_follow_redirects_judges_the_final_answer(scripted, http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"ok")
    target = http_server.url("/health").encode()

    def redirect(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 301 Moved\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n")

    server = scripted(redirect)
    result = await make_check(server.url(), follow_redirects=True).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}", result.reason)
    assert result.details["final_url"] == http_server.url("/health")


async def test_a_redirect_loop_is_unhealthy_when_redirects_are_followed(scripted, probe_ctx):
    def redirect_to_itself(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: /health?token=abc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )

    server = scripted(redirect_to_itself)
    result = await make_check(server.url(), follow_redirects=True).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"too many redirects from http://127.0.0.1:{server.port}/health?token=***"


# Not answering


async def test_a_refused_connection_is_unhealthy_and_names_the_address(probe_ctx):
    port = free_port()
    result = await make_check(f"http://127.0.0.1:{port}/health").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"connection refused by 127.0.0.1:{port}"


async def test_an_unknown_host_is_unhealthy_and_says_it_cannot_be_resolved(probe_ctx):
    result = await make_check("http://horus-test.invalid/health").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("cannot resolve horus-test.invalid (")


async def test_a_connection_closed_without_an_answer_is_unhealthy(scripted, probe_ctx):
    server = scripted(read_request)  # reads the request, then closes
    result = await make_check(server.url()).probe(probe_ctx)
    assert result.reason == f"127.0.0.1:{server.port} closed the connection without answering"


async def test_a_reset_connection_is_unhealthy(scripted, probe_ctx):
    def reset(conn: socket.socket) -> None:
        read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = scripted(reset)
    result = await make_check(server.url()).probe(probe_ctx)
    assert result.reason == f"connection reset by 127.0.0.1:{server.port}"


async def test_a_body_cut_short_by_the_server_is_unhealthy(scripted, probe_ctx):
    def cut_short(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    server = scripted(cut_short)
    result = await make_check(server.url(), body_contains="ok").probe(probe_ctx)
    assert result.reason == f"127.0.0.1:{server.port} closed the connection without answering"


async def test_an_answer_that_is_not_http_is_unhealthy_on_one_line(scripted, probe_ctx):
    def ssh_banner(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    server = scripted(ssh_banner)
    result = await make_check(server.url()).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith(f"127.0.0.1:{server.port} broke the HTTP protocol: ")
    assert "SSH-2.0" in result.reason
    assert "\n" not in result.reason


async def test_an_untrusted_certificate_is_unhealthy(tls_server, probe_ctx):
    url = f"https://127.0.0.1:{tls_server.port}/health"
    result = await make_check(url).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith(f"TLS certificate of 127.0.0.1:{tls_server.port} is not trusted: ")
    assert "self-signed" in result.reason or "self signed" in result.reason


async def test_verify_tls_false_accepts_a_self_signed_certificate(tls_server, probe_ctx):
    url = f"https://127.0.0.1:{tls_server.port}/health"
    result = await make_check(url, verify_tls=False).probe(probe_ctx)
    assert re.fullmatch(rf"HTTP 200 in {LATENCY}", result.reason)


async def test_a_server_that_never_answers_hangs_until_the_runner_times_it_out(silent_server, probe_ctx):
    check = make_check(silent_server.url("/health"))
    assert check.timeout_means_unhealthy is True
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await check.probe(probe_ctx)
    assert time.monotonic() - started < 1.5


# The shared session


async def test_a_cookie_set_by_one_probe_is_not_sent_on_the_next(scripted, probe_ctx):
    requests: list[bytes] = []

    def set_cookie(conn: socket.socket) -> None:
        requests.append(read_request(conn))
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )

    server = scripted(set_cookie)
    # A host name: aiohttp's cookie jar already refuses cookies from IP addresses, which would prove nothing.
    check = make_check(f"http://localhost:{server.port}/health")
    assert (await check.probe(probe_ctx)).is_healthy
    assert (await check.probe(probe_ctx)).is_healthy
    assert len(requests) == 2
    assert b"cookie" not in requests[1].lower()


async def test_verify_tls_false_probes_through_the_shared_session(keep_alive_tls_server, probe_ctx):
    # Every probe rides one pooled connection: a client made per probe would open a new one each time.
    server, requests_per_connection = keep_alive_tls_server
    check = make_check(f"https://127.0.0.1:{server.port}/health", verify_tls=False, body_contains="ok")
    for _ in range(3):
        result = await check.probe(probe_ctx)
        assert re.fullmatch(rf"HTTP 200 in {LATENCY}", result.reason)
    assert requests_per_connection == [3]


async def test_a_verified_probe_never_reuses_a_connection_opened_without_verification(keep_alive_tls_server, probe_ctx):
    server, _ = keep_alive_tls_server
    url = f"https://127.0.0.1:{server.port}/health"
    assert (await make_check(url, verify_tls=False, body_contains="ok").probe(probe_ctx)).is_healthy
    result = await make_check(url, body_contains="ok").probe(probe_ctx)
    assert result.reason.startswith(f"TLS certificate of 127.0.0.1:{server.port} is not trusted: ")


# Secrets


async def test_headers_and_url_secrets_never_appear_in_reasons_or_details(http_server, probe_ctx):
    http_server.routes["/health"] = Route(503, b"down")
    url = http_server.url("/health?token=s3cret-query").replace("http://", "http://user:s3cret-pw@")
    check = make_check(url, headers={"X-Api-Key": "s3cret-header"})
    result = await check.probe(probe_ctx)
    assert http_server.requests[-1][2]["X-Api-Key"] == "s3cret-header"
    assert result.details["url"] == f"http://***@127.0.0.1:{http_server.port}/health?token=***"
    assert "s3cret" not in repr(result)

    refused = make_check(
        f"http://user:s3cret-pw@127.0.0.1:{free_port()}/?token=s3cret-query",
        headers={"X-Api-Key": "s3cret-header"},
    )
    assert "s3cret" not in repr(await refused.probe(probe_ctx))


async def test_an_authorization_header_is_sent_as_given_even_with_credentials_in_the_url(http_server, probe_ctx):
    http_server.routes["/health"] = Route(200, b"ok")
    plain = http_server.url("/health")
    with_credentials = plain.replace("http://", "http://user:pw@")
    for url in (plain, with_credentials):
        result = await make_check(url, headers={"authorization": "Bearer s3cret"}).probe(probe_ctx)
        assert result.is_healthy, result.reason
        sent = {name.lower(): value for name, value in http_server.requests[-1][2].items()}
        assert sent["authorization"] == "Bearer s3cret"


# Options


def test_the_checks_own_timeout_overrides_the_monitors():
    assert make_check("http://127.0.0.1/", timeout_seconds=2).timeout_seconds(10) == 2
    assert make_check("http://127.0.0.1/").timeout_seconds(10) == 10


def test_defaults_are_get_any_2xx_no_redirects_and_verified_tls():
    options = make_check("http://127.0.0.1/").options
    assert (options.method, options.expect_status, options.follow_redirects, options.verify_tls) == (
        "GET",
        None,
        False,
        True,
    )
    assert (options.headers, options.json_equals) == ({}, {})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://example.com/x"}, "must be an http:// or https:// URL with a host, got 'ftp://example.com/x'"),
        ({"url": "http:///nohost"}, "must be an http:// or https:// URL with a host"),
        ({"url": "http://host/he\nalth"}, "non-printable character '\\n' at position 14"),
        ({"url": "http://host:99999/"}, "not a valid URL: http://host:99999/ (Port out of range 0-65535)"),
        ({"method": "FETCH"}, "Input should be 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE' or 'OPTIONS'"),
        ({"expect_status": [200, 99]}, "must be an HTTP status 100..599, got 99"),
        ({"expect_status": [600]}, "must be an HTTP status 100..599, got 600"),
        ({"expect_status": []}, "at least 1 item"),
        ({"body_regex": "ok("}, "is not a valid regular expression: missing ), unterminated subpattern"),
        ({"json_equals": {"db..connected": True}}, "path 'db..connected' is not valid"),
        ({"headers": {"X-Token": "a\r\nInjected: 1"}}, "header 'X-Token' has a value with non-ASCII characters"),
        ({"method": "HEAD", "body_contains": "ok"}, "method HEAD gets no body"),
        ({"timeout_seconds": 0}, "greater than 0"),
        ({"expected_status": 200}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_rejected_at_config_time(options, message):
    raw = {"type": "http_health", "url": "http://127.0.0.1:8001/health", **options}
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        HttpHealthOptions.model_validate(raw)


def test_a_rejected_url_does_not_echo_its_secrets():
    with pytest.raises(pydantic.ValidationError) as caught:
        HttpHealthOptions.model_validate({"type": "http_health", "url": "ftp://u:s3cret@host/?token=s3cret"})
    messages = " ".join(error["msg"] for error in caught.value.errors())
    assert "s3cret" not in messages
    assert "ftp://***@host/?token=***" in messages
