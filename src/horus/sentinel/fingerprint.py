"""Fingerprints: the same failure on another day, with other pids, timestamps and ids, gets the same one.

A :func:`fingerprint` is a short hash over what identifies a failure mode: the monitor, its check type, the
:func:`failure_kind` of the check's reason, the exit code or signal, the HTTP status class, and a
:func:`signature` (the most telling log lines, normalised). Whatever changes from one occurrence to the
next (numbers, ids, times, addresses, directories) is masked by :func:`normalise` before hashing.

Change :data:`FINGERPRINT_VERSION` whenever any of this changes what a fingerprint is computed from:
fingerprints of different versions are never compared, so recurrence counts start afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal as signals
from collections.abc import Iterable, Sequence

__all__ = [
    "FAILURE_KINDS",
    "FINGERPRINT_VERSION",
    "failure_kind",
    "fingerprint",
    "normalise",
    "signature",
]

FINGERPRINT_VERSION = 1

MAX_SIGNATURE_CHARS = 300
MAX_SIGNATURE_LINES = 3

# Every kind failure_kind() can return, with what it means. Post-mortems and briefs show these words.
FAILURE_KINDS: dict[str, str] = {
    "stale": "the service stopped writing (log, file or heartbeat older than its limit)",
    "channel_stalled": "the heartbeat goes on but a named channel of real work stopped progressing",
    "no_heartbeat": "no heartbeat was ever seen (no file, no datagram)",
    "no_output": "the service's output stopped growing",
    "missing": "a file the service should write does not exist",
    "too_small": "a file the service writes is smaller than its minimum",
    "process_missing": "fewer processes than required match the pattern",
    "service_down": "the service manager (launchd, systemd, docker) says it is not running",
    "unhealthy": "the service reports itself unhealthy, or failed in a way not classified further",
    "http_status": "the endpoint answered with an unexpected HTTP status",
    "bad_body": "the endpoint answered, but its body was wrong",
    "no_response": "the service accepted the connection but did not answer in time",
    "refused": "the connection was refused: nothing listens on the port",
    "dropped": "the connection was reset or closed, or the answer was not valid HTTP",
    "unreachable": "the host could not be reached",
    "dns": "the host name could not be resolved",
    "tls": "the TLS handshake or certificate failed",
    "command_failed": "the check command exited non-zero or was killed",
    "probe_error": "the probe itself could not observe the service",
}

# First match wins; the patterns read the reasons the checks in horus.checks actually produce.
_KIND_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"^probe did not finish within", "no_response"),
        (r"^probe (failed|crashed)", "probe_error"),
        (r"^channel \S+: (last progress|no progress recorded)", "channel_stalled"),
        (r"^no heartbeat (file at|received on)", "no_heartbeat"),
        (r"^heartbeat file unreadable", "probe_error"),
        (r"^heartbeat .* old, limit", "stale"),
        (r"\blast written .* ago\b", "stale"),
        (r"\bis \S+ bytes?, minimum\b", "too_small"),
        (r"\b(no new (files|rows|lines|artifacts)|did not grow|stopped growing|artifact)", "no_output"),
        (r"^(no process matches|\d+ process(es)? match(es)? .*, minimum)", "process_missing"),
        (r"^container \S+ does not exist", "service_down"),
        (r"^container \S+ is not running", "service_down"),
        (r"^container \S+ is running but (unhealthy|its health check is still starting)", "unhealthy"),
        (r"\bis not loaded in\b|\bis loaded but not running\b", "service_down"),
        (r"\b(does not exist|is a directory, not a file)\b", "missing"),
        # "HTTP 503 in 45 ms, expected 2xx" is the status; anything else after the latency is the body.
        (r"^http \d{3} in [^,]*, expected ", "http_status"),
        (r"^http \d{3} in [^,]*, ", "bad_body"),
        (r"^too many redirects", "http_status"),
        (r"(connection refused|refused the connection)", "refused"),
        (r"^cannot resolve ", "dns"),
        (r"^tls ", "tls"),
        (r"(connection reset by|closed the connection without answering|broke the http protocol)", "dropped"),
        (r"^no answer from .* in time", "no_response"),
        (r"(cannot be reached|^cannot connect to|^connection to .* failed)", "unreachable"),
        (r"^(exit \d+|killed by )", "command_failed"),
    )
)

# What a check type's failure is when no rule above recognised its reason: systemd_service says only
# "<unit> is <state>", and every way artifact_growth fails (too few new files, rows or bytes; a latest
# row too old) is output that stopped.
_FALLBACK_BY_CHECK = {
    "systemd_service": "service_down",
    "launchd_service": "service_down",
    "docker_container": "service_down",
    "artifact_growth": "no_output",
}


def failure_kind(check_type: str, reason: str) -> str:
    """A small, deterministic class of a check's failure reason: one of :data:`FAILURE_KINDS`.

    ``failure_kind("log_staleness", "bot.log last written 312 s ago, limit 300 s") == "stale"``.
    Unknown reasons give ``"unhealthy"``, so a new check type degrades to a coarse class, never an error.
    """
    text = reason.strip()
    for pattern, kind in _KIND_RULES:
        if pattern.search(text):
            return kind
    return _FALLBACK_BY_CHECK.get(check_type, "unhealthy")


# Masks, applied in order to lower-cased text. Each replaces what varies between two occurrences of
# the same failure with a placeholder that does not.
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^/\s:'\"?#]+)[^\s'\"]*")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2}|\s?utc)?\b")
_DATE = re.compile(r"\b\d{4}[-/]\d{2}[-/]\d{2}\b|\b\d{2}/\d{2}/\d{4}\b")
_TIME = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b|\b\d{1,2}:\d{2}\b(?!:)")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b")
# Bracketed ("[::1]:8001"), compressed ("fe80::1") or full eight-group IPv6; "std::map" is not one.
_IPV6 = re.compile(
    r"\[[0-9a-f:.]*:[0-9a-f:.]*\](?::\d{1,5})?"
    r"|(?<![\w:])(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})[0-9a-f:]{2,39}(?![\w:])"
)
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
# Long opaque tokens (order ids, request ids, base32/base62): letters and digits mixed, 16 or more.
_TOKEN = re.compile(r"\b(?=[a-z0-9]*\d)(?=[a-z0-9]*[a-z])[a-z0-9]{16,}\b")
# Absolute, home-relative and Windows paths: the directories differ between machines and deploys,
# the file name is what carries meaning ("bot.py", "bot.log").
_PATH = re.compile(r"(?<![\w<>/:])(?:~|[a-z]:\\|\.{1,2}/)?(?:[/\\][\w.@+-]+)+[/\\]?|(?<![\w<>])[a-z]:\\[\w.@+\\-]+")
# Numbers that name a kind of failure rather than an occurrence of one: HTTP statuses, errno values,
# exit codes and signal numbers stay; every other number is masked.
_MEANINGFUL_NUMBER = re.compile(
    r"(?:\bhttp(?:/\d(?:\.\d)?)?|\bstatus(?:[ _]code)?|\berrno|\bexit(?:ed)?(?: with)?(?: code| status)?"
    r"|\bsignal|\breturn ?code)\s*[=:]?\s*\d{1,3}\b"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """``text`` lower-cased, with what varies between occurrences of one failure masked.

    Masked: URLs (to ``scheme://host/…``), UUIDs, ISO timestamps, dates, times, IPv4/IPv6 addresses,
    hex ids, long opaque tokens, directories of paths (the file name stays) and numbers. Kept: HTTP
    statuses, errno values, exit codes and signal numbers where the text introduces them as such
    ("HTTP 429", "[Errno 111]", "exit code 137"), because they tell one failure mode from another.
    Quoted strings are kept: they usually name a thing (a pattern, a key), and any numbers in them
    are masked anyway. Whitespace is collapsed.
    """
    text = text.lower()
    text = _URL.sub(lambda m: f"{m.group(1)}://{m.group(2)}/…", text)
    text = _UUID.sub("<uuid>", text)
    text = _TIMESTAMP.sub("<ts>", text)
    text = _DATE.sub("<date>", text)
    text = _IPV4.sub("<ip>", text)
    text = _TIME.sub("<time>", text)
    text = _IPV6.sub("<ip>", text)
    text = _PATH.sub(_basename, text)
    text = _HEX.sub("<hex>", text)
    text = _TOKEN.sub("<id>", text)
    text = _mask_numbers(text)
    return _SPACE.sub(" ", text).strip()


def _basename(match: re.Match[str]) -> str:
    parts = [part for part in re.split(r"[/\\]", match.group(0)) if part]
    return parts[-1] if parts else match.group(0)


def _mask_numbers(text: str) -> str:
    pieces: list[str] = []
    position = 0
    for kept in _MEANINGFUL_NUMBER.finditer(text):
        pieces.append(_NUMBER.sub("<n>", text[position : kept.start()]))
        pieces.append(kept.group(0))
        position = kept.end()
    pieces.append(_NUMBER.sub("<n>", text[position:]))
    return "".join(pieces)


# An exception line: "ValueError: ...", "asyncio.exceptions.TimeoutError", "requests.exceptions.HTTPError: 429".
_EXCEPTION = re.compile(
    r"(?:^|[\s:(\[])((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout|Exit|Interrupt))\b(?::|$)"
)
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+, in \S+')
_TELLING = re.compile(
    r"\b(error|exception|fatal|critical|panic|traceback|timed? ?out|timeout|refused|failed|failure|denied|"
    r"killed|rate[ _-]?limit|too many requests|unavailable|deadlock|stuck|hung|oom|out of memory)\b"
    r"|\b(?:http|status)\W{0,3}[45]\d\d\b",
    re.IGNORECASE,
)


def signature(lines: Sequence[str], crash_summary: str | None = None) -> str:
    """The most telling lines of a log tail, normalised, de-duplicated and joined with `` | ``.

    In order: the crash summary (where the service said it was stuck), then each traceback's exception
    line, newest first, followed by its innermost frame, then other lines that speak of errors (newest
    first). Ordinary progress lines are left out: which market a bot was scanning when it hung varies,
    the failure does not. At most a few lines and :data:`MAX_SIGNATURE_CHARS` characters; empty when
    nothing telling was seen.
    """
    chosen: list[str] = []
    if crash_summary:
        chosen.append(crash_summary)
    chosen.extend(_exception_lines(lines))
    chosen.extend(line for line in reversed(lines) if _TELLING.search(line) and not _FRAME.match(line))
    picked: list[str] = []
    for line in _unique(normalise(line) for line in chosen):
        if line == "traceback (most recent call last):":
            continue
        picked.append(line)
        if len(picked) == MAX_SIGNATURE_LINES:
            break
    text = " | ".join(picked)
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[: MAX_SIGNATURE_CHARS - 1] + "…"


def _exception_lines(lines: Sequence[str]) -> list[str]:
    """Exception lines newest first, each followed by the frame just above it (where it was raised)."""
    found: list[str] = []
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if _FRAME.match(line) or not _EXCEPTION.search(line):
            continue
        found.append(line)
        for above in range(index - 1, max(-1, index - 4), -1):
            if _FRAME.match(lines[above]):
                found.append(lines[above])
                break
    return found


def _unique(items: Iterable[str]) -> list[str]:
    return [item for item in dict.fromkeys(items) if item]


def fingerprint(
    *,
    monitor: str,
    check_type: str,
    failure_kind: str,
    signature: str,
    exit_code: int | None = None,
    signal: int | str | None = None,
    http_status: int | None = None,
) -> str:
    """A stable 16-hex-digit hash of one failure mode of one monitor (see :data:`FINGERPRINT_VERSION`).

    ``signature`` should come from :func:`signature`; ``http_status`` counts only by class (``"4xx"``),
    ``signal`` by name (9 and ``"SIGKILL"`` are the same).
    """
    canonical = {
        "version": FINGERPRINT_VERSION,
        "monitor": monitor,
        "check_type": check_type,
        "failure_kind": failure_kind,
        "exit_code": exit_code,
        "signal": _signal_name(signal),
        "http_status": None if http_status is None else f"{http_status // 100}xx",
        "signature": signature,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _signal_name(value: int | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        try:
            return signals.Signals(abs(value)).name
        except ValueError:
            return f"SIG{abs(value)}"
    name = value.upper()
    return name if name.startswith("SIG") else f"SIG{name}"
