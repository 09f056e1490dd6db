"""The ``http_health`` check: the service answers HTTP, with the right status and the right body."""

from __future__ import annotations

import codecs
import json
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from pydantic import AfterValidator, BeforeValidator, Field, JsonValue, model_validator
from yarl import URL

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import PositiveSeconds
from horus.errors import ProbeError
from horus.log import redact_url

# A health endpoint that answers with more than this is misbehaving; reading it all could exhaust memory.
MAX_BODY_BYTES = 1024 * 1024
# Quoted values in reasons are clipped so that a notification stays one readable line.
MAX_QUOTED = 80
# Browsers give up after about 20 redirects; a health URL that works in one must work here.
MAX_REDIRECTS = 20
# Replaces whatever timeout the shared session was given: only the runner decides when a probe has taken too long.
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# The URL parser drops or escapes these without a word, so the URL probed would not be the URL written.
_NON_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]")

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _check_url(value: str) -> str:
    if bad := _NON_PRINTABLE.search(value):
        character = f"{bad.group()!r} at position {bad.start()}"
        raise ValueError(f"not a valid URL: {redact_url(value)!r} (non-printable character {character})")
    try:
        url = URL(value)
    except ValueError as exc:
        problem = str(exc)
        if "@" in problem:  # the parser quoted the URL's authority, credentials and all
            problem = "its host part is not valid"
        raise ValueError(f"not a valid URL: {redact_url(value)} ({problem})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {redact_url(value)!r}")
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _check_status(value: int) -> int:
    if not 100 <= value <= 599:
        raise ValueError(f"must be an HTTP status 100..599, got {value}")
    return value


def _check_headers(value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        # Checked by name only: the value may be a token and must not end up in an error message.
        if not name or not name.isascii() or any(c in name for c in " \t\r\n:"):
            raise ValueError(f"header name {name!r} is not valid")
        if not header.isascii() or "\r" in header or "\n" in header:
            raise ValueError(f"header {name!r} has a value with non-ASCII characters or a line break")
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    return value


def _check_json_paths(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    for path in value:
        if not path or any(not part for part in path.split(".")):
            raise ValueError(f"path {path!r} is not valid; write keys and list indexes with dots: 'db.connected'")
    return value


class HttpHealthOptions(CheckOptions):
    type: Literal["http_health"]
    url: Annotated[str, AfterValidator(_check_url)]
    method: Annotated[Method, BeforeValidator(_upper)] = "GET"
    headers: Annotated[dict[str, str], AfterValidator(_check_headers)] = Field(default_factory=dict)
    expect_status: list[Annotated[int, AfterValidator(_check_status)]] | None = Field(default=None, min_length=1)
    body_contains: str | None = None
    body_regex: Annotated[str, AfterValidator(_check_regex)] | None = None
    json_equals: Annotated[dict[str, JsonValue], AfterValidator(_check_json_paths)] = Field(default_factory=dict)
    timeout_seconds: PositiveSeconds | None = None
    follow_redirects: bool = False
    verify_tls: bool = True

    @model_validator(mode="after")
    def _head_has_no_body(self) -> Self:
        if self.method == "HEAD" and (
            self.body_contains is not None or self.body_regex is not None or self.json_equals
        ):
            raise ValueError("method HEAD gets no body, so body_contains, body_regex and json_equals cannot hold")
        return self


class HttpHealthCheck(Check[HttpHealthOptions]):
    """Unhealthy when ``url`` does not answer, answers with the wrong status, or with the wrong body.

    Any 2xx status is healthy unless ``expect_status`` lists the statuses that are. The body can be
    required to contain a string (``body_contains``), to match a regular expression (``body_regex``),
    or to be JSON with given values at given paths (``json_equals: {"status": "ok", "db.connected":
    true, "items.0.id": 7}``). Only the first MiB of the body is read. A refused connection, an
    unknown host, a TLS failure, a dropped connection and no answer within the timeout are all
    unhealthy: the service is not answering. Redirects are not followed unless ``follow_redirects``
    is true. ``headers`` are sent as given and never shown in reasons or details.
    """

    options_model = HttpHealthOptions
    timeout_means_unhealthy = True

    def __init__(self, options: HttpHealthOptions) -> None:
        super().__init__(options)
        self._pattern = re.compile(options.body_regex) if options.body_regex is not None else None
        self._reads_body = bool(
            options.body_contains is not None or options.body_regex is not None or options.json_equals
        )
        url = URL(options.url)
        if (url.user or url.password) and any(name.lower() == "authorization" for name in options.headers):
            # aiohttp refuses a request with both; the header the user wrote is sent as given.
            url = url.with_user(None)
        self._url = url

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        options = self.options
        details: dict[str, Any] = {"url": redact_url(options.url), "method": options.method}
        started = ctx.clock.monotonic()
        try:
            async with ctx.http.request(
                options.method,
                self._url,
                headers=options.headers,
                allow_redirects=options.follow_redirects,
                max_redirects=MAX_REDIRECTS,
                # Per request, so a monitor that opts out still shares the pool; the pool never hands a
                # connection opened without verification to a request that wants it.
                ssl=options.verify_tls,
                timeout=_NO_TIMEOUT,
            ) as response:
                body = await _read_body(response) if self._reads_body else _Body(b"")
                latency = ctx.clock.monotonic() - started
        except aiohttp.TooManyRedirects as exc:
            last = exc.history[-1].url
            return CheckResult.unhealthy(f"too many redirects from {redact_url(str(last))}", **details)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            return CheckResult.unhealthy(_not_answering(exc, self._url), **details)
        except aiohttp.ClientError as exc:
            raise ProbeError(f"HTTP request could not be made: {redact_url(str(exc))}") from exc

        details["status_code"] = response.status
        details["latency_ms"] = round(latency * 1000, 1)
        if response.history:
            details["final_url"] = redact_url(str(response.url))
        prefix = f"HTTP {response.status} in {humanize.seconds(latency)}"

        problem = self._status_problem(response) or self._body_problem(response, body)
        if problem:
            return CheckResult.unhealthy(f"{prefix}, {problem}", **details)
        return CheckResult.healthy(prefix, **details)

    def _status_problem(self, response: aiohttp.ClientResponse) -> str | None:
        expected = self.options.expect_status
        if expected is None:
            if 200 <= response.status < 300:
                return None
            problem = "expected 2xx"
        elif response.status in expected:
            return None
        else:
            problem = f"expected {_one_of([str(code) for code in expected])}"
        if response.status in _REDIRECT_STATUSES and "location" in response.headers:
            problem += f", redirects to {redact_url(response.headers['location'])}"
        return problem

    def _body_problem(self, response: aiohttp.ClientResponse, body: _Body) -> str | None:
        if not self._reads_body:
            return None
        if body.undecodable:
            return f"body could not be decoded as {response.headers.get('content-encoding', 'sent')}"
        options = self.options
        text = body.data.decode(_encoding(response), errors="replace")
        if options.body_contains is not None and options.body_contains not in text:
            return f"body does not contain {_quote(options.body_contains)}"
        if self._pattern is not None and self._pattern.search(text) is None:
            return f"body does not match {_quote(self._pattern.pattern)}"
        if options.json_equals:
            try:
                document = json.loads(text)
            except ValueError:
                return "body is not JSON" + (" (only its first MiB was read)" if body.truncated else "")
            for path, expected in options.json_equals.items():
                found, value = lookup_json_path(document, path)
                if not found:
                    return f"{path} is missing"
                if not _json_equal(value, expected):
                    return f"{path} is {_show(value)}, expected {_show(expected)}"
        return None


@dataclass(frozen=True)
class _Body:
    data: bytes
    truncated: bool = False  # there was more than MAX_BODY_BYTES
    undecodable: bool = False  # the Content-Encoding (gzip, br...) did not decode


async def _read_body(response: aiohttp.ClientResponse) -> _Body:
    data = bytearray()
    try:
        while chunk := await response.content.readany():
            data.extend(chunk)
            if len(data) > MAX_BODY_BYTES:
                return _Body(bytes(data[:MAX_BODY_BYTES]), truncated=True)
    except aiohttp.ClientPayloadError as exc:
        if any(isinstance(cause, ContentEncodingError) for cause in _causes(exc)):
            return _Body(b"", undecodable=True)
        raise
    return _Body(bytes(data))


def _encoding(response: aiohttp.ClientResponse) -> str:
    """The charset the response declares when Python knows it, else UTF-8."""
    try:
        return codecs.lookup(response.charset or "utf-8").name
    except LookupError:
        return "utf-8"


def _not_answering(exc: aiohttp.ClientError, url: URL) -> str:
    """Why the service gave no HTTP answer, said the way an operator would say it."""
    host, port = url.host, url.port
    if isinstance(exc, aiohttp.ClientConnectorError):  # the address it tried, which may be a redirect's
        host, port = exc.host, exc.port
    where = f"{host}:{port}"
    causes = list(_causes(exc))
    # aiohttp's own exceptions subclass the ones they wrap (a certificate error is an ssl.CertificateError)
    # without carrying their attributes, so only the originals are asked what went wrong.
    originals = [cause for cause in causes if not isinstance(cause, aiohttp.ClientError)]
    for cause in originals:
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {where}"
    for cause in originals:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host} ({cause.strerror})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate of {where} is not trusted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {where} failed: {cause.reason or cause}"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {where}"
    # "Not completed" is aiohttp's word for a body cut short by the connection closing.
    if isinstance(exc, aiohttp.ServerDisconnectedError) or (
        isinstance(exc, aiohttp.ClientPayloadError) and "not completed" in str(exc)
    ):
        return f"{where} closed the connection without answering"
    # Raised with no answer to show: what came back was not HTTP, or its body was garbled.
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"{where} broke the HTTP protocol: {_protocol_problem(exc, causes)}"
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return f"no answer from {where} in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {where}: {_strerror(causes)}"
    return f"connection to {where} failed: {_strerror(causes)}"


def _protocol_problem(exc: aiohttp.ClientError, causes: list[BaseException]) -> str:
    """The parser's complaint on one line, without the caret it draws under the offending bytes."""
    messages = [c.message for c in causes if isinstance(c, aiohttp.ClientResponseError | HttpProcessingError)]
    message = next((m for m in messages if m), str(exc))
    lines = (line.strip() for line in message.splitlines())
    return _clip(" ".join(line for line in lines if line and line.strip("^")))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything behind it: causes, contexts and the members of exception groups."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def _strerror(causes: list[BaseException]) -> str:
    for cause in reversed(causes):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return str(causes[-1]) or type(causes[-1]).__name__


def lookup_json_path(document: JsonValue, path: str) -> tuple[bool, JsonValue]:
    """(found, value) at a dotted path ("data.status", "items.0.id") of a JSON document; shared with the
    clock check's venue time."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _json_equal(a: JsonValue, b: JsonValue) -> bool:
    # Python says True == 1 and 1 == 1.0; JSON says true is not 1, but 1 and 1.0 are the same number.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _show(value: JsonValue) -> str:
    if isinstance(value, str):
        return _quote(value)
    return _clip(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _quote(text: str) -> str:
    return f"'{_clip(text)}'"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
