"""What a service's log lines say, whatever format its logging library writes: text, or JSON lines.

Root-cause rules read plain text: a JSON log line (structlog, python-json-logger, zap, pino, bunyan...)
is unpacked into its level, logger and message, then its error, then any traceback or stack it holds, one
line each, so that a traceback inside ``"exc_info"`` reads exactly as one written to a text log.

Each line also gets the moment it was written, when the line says it: an ISO 8601 or syslog time at its
start, Go's ``2026/12/01 14:09:25``, a common-log ``[01/Dec/2026:14:09:25 +0000]``, or a JSON time field
(ISO text or Unix seconds or milliseconds). A line that carries no time (a traceback's frames) takes the
time of the line before it. Times without a zone are the machine's local time, as logging writes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BASELINE_GRACE_SECONDS",
    "CRASH_START",
    "TELLING",
    "LogLine",
    "healthy_period_end",
    "read_lines",
    "time_of",
    "timestamp_of",
]

# The healthy period ends this long before the service was last seen healthy (or went quiet, if earlier).
BASELINE_GRACE_SECONDS = 300.0
# Where a runtime's crash report begins: Python's traceback, Go's panic (its goroutine dump follows), Rust's
# panic, a JVM's uncaught exception, Node's uncaught error.
CRASH_START = re.compile(
    r"Traceback \(most recent call last\):|^panic: |^fatal error: |^thread '[^']*' panicked at "
    r"|^Exception in thread \"|^Uncaught \w*Error|^FATAL ERROR: "
)
# A line that speaks of trouble: what a failure's evidence is made of (routine progress lines are not).
TELLING = re.compile(
    r"(?i)\b(?:error|exception|fatal|critical|panic|traceback|refused|denied|timed? ?out|timeout|killed|failed"
    r"|failure|unavailable|exhausted|exceeded|too many|no space|cannot|unable)\b|\b[45]\d\d\b"
)
# Only a line's start is searched for its time: a time quoted further along is not when it was written.
_TIME_PREFIX_CHARS = 80
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_ISO = re.compile(
    r"(?P<y>\d{4})[-/](?P<mo>\d{2})[-/](?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:[.,](?P<frac>\d{1,9}))?\s?(?P<tz>Z|UTC|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_COMMON_LOG = re.compile(
    r"\[(?P<d>\d{2})/(?P<mon>[A-Za-z]{3})/(?P<y>\d{4}):(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})\s?(?P<tz>[+-]\d{4})?\]"
)
_SYSLOG = re.compile(r"^(?P<mon>[A-Za-z]{3})\s{1,2}(?P<d>\d{1,2}) (?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})\b")
_MESSAGE_KEYS = ("message", "msg", "event", "@message", "log", "text")
_LEVEL_KEYS = ("level", "levelname", "severity", "lvl", "log.level")
_LOGGER_KEYS = ("logger", "logger_name", "name", "log.logger")
_TIME_KEYS = ("timestamp", "time", "ts", "@timestamp", "asctime", "t", "datetime", "date")
_ERROR_KEYS = ("error", "err", "exception", "error.message", "exc_type", "error_message")
_STACK_KEYS = ("exc_info", "exc_text", "stack_trace", "stacktrace", "stack", "traceback", "error.stack", "exception")
# Pino and bunyan write numeric levels.
_NUMERIC_LEVELS = {10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}


@dataclass(frozen=True)
class LogLine:
    """One line as the rules read it, and when it was written (Unix seconds), if the log says."""

    text: str
    at: float | None


def healthy_period_end(last_healthy_at: float | None, output_stopped_at: float | None) -> float | None:
    """Lines written up to this moment are the healthy period's: routine, the baseline a failure is told
    from. It ends five minutes before the last healthy look, or before the output stopped if that came
    first: a service that goes quiet stays "healthy" to a staleness check for a while, and its last words
    before going quiet, and whatever led up to them, are the failure's."""
    if last_healthy_at is None:
        return None
    end = last_healthy_at if output_stopped_at is None else min(last_healthy_at, output_stopped_at)
    return end - BASELINE_GRACE_SECONDS


def read_lines(raw: Iterable[str], *, year: int | None = None) -> list[LogLine]:
    """``raw`` log lines as text lines with their times, JSON lines unpacked; oldest first as given."""
    lines: list[LogLine] = []
    last: float | None = None
    for line in _unescaped(raw):
        record = _json_record(line)
        if record is not None:
            at = _json_time(record)
            at = last if at is None else at
            lines.extend(LogLine(text, at) for text in _unpack(record))
        else:
            at = timestamp_of(line, year=year)
            at = last if at is None else at
            lines.append(LogLine(line, at))
        last = at
    return lines


def _unescaped(raw: Iterable[str]) -> Iterable[str]:
    """rsyslog writes a message's newlines and tabs as ``#012`` and ``#011``: a traceback is one line there.
    Its lines come back, the first with the syslog header (and so the time) of the whole message."""
    for line in raw:
        if "#012" in line:
            yield from line.replace("#011", "\t").split("#012")
        else:
            yield line


def time_of(line: str) -> float | None:
    """When one raw log line says it was written, text or JSON (without unpacking it), or None."""
    record = _json_record(line)
    return _json_time(record) if record is not None else timestamp_of(line)


def timestamp_of(line: str, *, year: int | None = None) -> float | None:
    """When a text log line says it was written (Unix seconds), or None."""
    head = line[:_TIME_PREFIX_CHARS]
    if match := _ISO.search(head):
        return _iso_moment(match)
    if match := _COMMON_LOG.search(head):
        month = _MONTHS.get(match["mon"].lower())
        if month is not None:
            return _moment(match["y"], month, match["d"], match["h"], match["mi"], match["s"], None, match["tz"])
    if match := _SYSLOG.match(head):
        month = _MONTHS.get(match["mon"].lower())
        if month is not None:
            return _syslog_moment(month, match, year)
    return None


def _moment(
    y: str | int, mo: str | int, d: str | int, h: str, mi: str, s: str, frac: str | None, tz: str | None
) -> float | None:
    try:
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "0")[:6].ljust(6, "0")))
    except ValueError:
        return None
    if tz is None:
        return moment.astimezone().timestamp()  # naive: the machine's local time, as logging writes it
    if tz.upper() in ("Z", "UTC"):
        return moment.replace(tzinfo=UTC).timestamp()
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    return moment.replace(tzinfo=UTC).timestamp() - offset


def _iso_moment(match: re.Match[str]) -> float | None:
    return _moment(match["y"], match["mo"], match["d"], match["h"], match["mi"], match["s"], match["frac"], match["tz"])


def _syslog_moment(month: int, match: re.Match[str], year: int | None) -> float | None:
    # Syslog leaves the year out: this year, unless that would be in the future (a December line read in January).
    now = datetime.now().astimezone()
    for candidate in (year,) if year else (now.year, now.year - 1):
        at = _moment(candidate, month, match["d"], match["h"], match["mi"], match["s"], None, None)
        if at is not None and (year or at <= now.timestamp() + 86400):
            return at
    return None


def _json_record(line: str) -> Mapping[str, Any] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _field(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = record.get(key)
        if value is None and "." in key:  # "error.message": a nested object (ECS, bunyan's err)
            outer, inner = key.split(".", 1)
            nested = record.get(outer)
            value = nested.get(inner) if isinstance(nested, dict) else None
        if value not in (None, "", [], {}):
            return value
    return None


def _json_time(record: Mapping[str, Any]) -> float | None:
    value = _field(record, _TIME_KEYS)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        return seconds / 1000 if seconds > 1e11 else seconds  # pino and zap write milliseconds or seconds
    if isinstance(value, str):
        if match := _ISO.search(value):
            return _iso_moment(match)
        try:
            return _json_time({"t": float(value)})
        except ValueError:
            return None
    return None


def _unpack(record: Mapping[str, Any]) -> list[str]:
    level = _field(record, _LEVEL_KEYS)
    if isinstance(level, int) and not isinstance(level, bool):
        level = _NUMERIC_LEVELS.get(level, str(level))
    logger = _field(record, _LOGGER_KEYS)
    message = _field(record, _MESSAGE_KEYS)
    head = " ".join(str(part) for part in (level, f"{logger}:" if logger else None) if part)
    text = _text(message) if message is not None else ""
    error = _field(record, _ERROR_KEYS)
    stack = _field(record, _STACK_KEYS)
    first = " ".join(part for part in (head, text) if part)
    error_text = _text(error) if isinstance(error, str | dict) else ""
    if error_text and "\n" not in error_text and error_text not in first and not (text and text in error_text):
        first = f"{first} error={error_text}" if first else error_text
    # What else the record says, briefly: a refused port, a status code, an order id.
    extras = [
        f"{key}={_text(value)}"
        for key, value in record.items()
        if key not in _SHOWN and isinstance(value, str | int | float) and not isinstance(value, bool)
    ][:8]
    if extras:
        first = f"{first} {' '.join(extras)}" if first else " ".join(extras)
    lines = [first] if first else []
    if isinstance(stack, str) and "\n" in stack:
        lines.extend(part for part in stack.splitlines() if part.strip())
    elif isinstance(stack, list) and stack and all(isinstance(part, dict) for part in stack):
        lines.extend(_dict_traceback(stack))
    elif isinstance(stack, list):
        lines.extend(str(part) for part in stack if str(part).strip())
    if not lines:
        lines.append(json.dumps(record, ensure_ascii=False)[:1000])
    return lines


def _dict_traceback(chain: list[dict[str, Any]]) -> list[str]:
    """structlog's dict tracebacks (``dict_tracebacks``: each exception of the chain with its frames) as
    the text a traceback prints, oldest exception first."""
    lines: list[str] = []
    for exception in chain:
        lines.append("Traceback (most recent call last):")
        for frame in exception.get("frames") or []:
            if isinstance(frame, dict):
                name = frame.get("name") or frame.get("function") or "?"
                lines.append(f'  File "{frame.get("filename", "?")}", line {frame.get("lineno", "?")}, in {name}')
                if frame.get("line"):
                    lines.append(f"    {frame['line']}")
        kind = exception.get("exc_type") or "Exception"
        value = exception.get("exc_value")
        lines.append(f"{kind}: {value}" if value else str(kind))
    return lines


_SHOWN = frozenset(_MESSAGE_KEYS + _LEVEL_KEYS + _LOGGER_KEYS + _TIME_KEYS + _ERROR_KEYS + _STACK_KEYS) | {
    "pid",
    "hostname",
    "v",
    "caller",
    "taskName",
    "thread",
    "threadName",
    "process",
    "processName",
    "filename",
    "module",
    "funcName",
    "lineno",
    "pathname",
}


def _text(value: Any) -> str:
    if isinstance(value, dict):
        inner = _field(value, ("message", "msg"))
        kind = _field(value, ("type", "name", "class"))
        if inner is not None:
            return f"{kind}: {inner}" if kind else str(inner)
        return json.dumps(value, ensure_ascii=False)
    return str(value)
