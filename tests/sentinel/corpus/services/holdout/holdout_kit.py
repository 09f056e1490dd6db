"""What the hold-out services share: their parameters, a log written the way a named library writes it,
and the history that an old log already holds when a failure begins.

A service runs as ``python <app>/<service>.py <params.json>``. ``.failing`` beside the parameters is the
harness's instrumentation (the moment the failure began); it is never written to a log.

The ``log_style`` parameter names the library whose lines the service writes:

- ``python``: the standard logging module with the service's own ``log_format`` (and ``date_format``);
- ``loguru``: loguru's default sink, ``2026-11-21 02:23:01.123 | ERROR    | app.sink:flush:88 - message``;
- ``structlog``: structlog's JSONRenderer after ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``
  and ``format_exc_info`` (the traceback as one ``exception`` string);
- ``jsonlogger``: python-json-logger's ``JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")``;
- ``logrus_text`` and ``logrus_json``: Go's logrus TextFormatter (full timestamps) and JSONFormatter;
- ``zap``: Go's zap production encoder (``ts`` in float seconds, ``caller``, ``stacktrace`` on errors);
- ``golog``: Go's standard ``log`` package, ``2026/11/21 02:23:01 message``;
- ``pino``: Node's pino (numeric level, ``time`` in ms, ``err`` with ``type``, ``message``, ``stack``);
- ``logback``: Spring Boot's console pattern, a Java stack trace under the line;
- ``gunicorn``: gunicorn's error log, ``[2026-11-21 02:23:01 +0000] [4121] [INFO] message``;
- ``uvicorn``: uvicorn's default formatter, ``INFO:     message`` with no time;
- ``syslog``: rsyslog's traditional file format, newlines inside a message escaped as ``#012``.

A Go, Node or Java stand-in does the real operation (a connect, a bind, an allocation) and words the
error as that runtime does; the words are passed as fields (``error``, ``err``, ``stack``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Fields the formatters place themselves rather than list among the others.
_PLACED = {"stack", "caller", "java_thread", "err"}
_PINO = {"DEBUG": 20, "INFO": 30, "WARNING": 40, "ERROR": 50, "CRITICAL": 60}
_GO = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error", "CRITICAL": "fatal"}
_ZAP = {**_GO, "WARNING": "warn"}
_HOST = socket.gethostname().split(".")[0]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in _PLACED}


def _iso(created: float, *, millis: bool = False) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(created: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(created))


def _logfmt(value: Any) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-._/:@" for c in text):
        return text
    return json.dumps(text)


class LibraryFormatter(logging.Formatter):
    """One line as ``style``'s library writes it (see the module docstring)."""

    def __init__(self, style: str, *, fmt: str | None = None, datefmt: str | None = None, tag: str = "app") -> None:
        super().__init__(fmt, datefmt)
        self.style = style
        self.tag = tag
        if not hasattr(self, "_" + style):
            raise ValueError(f"unknown log style {style!r}")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        text: str = getattr(self, "_" + self.style)(record)
        return text

    def _traceback(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        stack = getattr(record, "stack", None)
        if stack:
            parts.append(str(stack))
        return "\n".join(parts)

    def _with_traceback(self, line: str, record: logging.LogRecord) -> str:
        more = self._traceback(record)
        return f"{line}\n{more}" if more else line

    # -- Python --------------------------------------------------------------------------------------

    def _python(self, record: logging.LogRecord) -> str:
        return super().format(record)

    def _loguru(self, record: logging.LogRecord) -> str:
        stamp = _local(record.created, "%Y-%m-%d %H:%M:%S") + f".{int(record.msecs):03d}"
        level = {"WARNING": "WARNING", "CRITICAL": "CRITICAL"}.get(record.levelname, record.levelname)
        line = f"{stamp} | {level:<8} | {record.name}:{record.funcName}:{record.lineno} - {record.message}"
        return self._with_traceback(line, record)

    def _structlog(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {**_fields(record), "event": record.message}
        out["level"] = record.levelname.lower()
        out["logger"] = record.name
        out["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
        more = self._traceback(record)
        if more:
            out["exception"] = more
        return json.dumps(out, default=str)

    def _jsonlogger(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "asctime": self.formatTime(record),
            "levelname": record.levelname,
            "name": record.name,
            "message": record.message,
            **_fields(record),
        }
        more = self._traceback(record)
        if more:
            out["exc_info"] = more
        return json.dumps(out, default=str)

    def _gunicorn(self, record: logging.LogRecord) -> str:
        stamp = _local(record.created, "%Y-%m-%d %H:%M:%S %z")
        line = f"[{stamp}] [{record.process}] [{record.levelname}] {record.message}"
        return self._with_traceback(line, record)

    def _uvicorn(self, record: logging.LogRecord) -> str:
        return self._with_traceback(f"{(record.levelname + ':'):<9} {record.message}", record)

    def _syslog(self, record: logging.LogRecord) -> str:
        stamp = _local(record.created, "%b %e %H:%M:%S")
        text = self._with_traceback(f"{record.levelname} {record.message}", record)
        return f"{stamp} {_HOST} {self.tag}[{record.process}]: " + text.replace("\n", "#012")

    # -- Go ------------------------------------------------------------------------------------------

    def _logrus_text(self, record: logging.LogRecord) -> str:
        parts = [f'time="{_iso(record.created)}"', f"level={_GO[record.levelname]}", f"msg={_logfmt(record.message)}"]
        parts += [f"{key}={_logfmt(value)}" for key, value in sorted(_fields(record).items())]
        return " ".join(parts)

    def _logrus_json(self, record: logging.LogRecord) -> str:
        out = {**_fields(record), "level": _GO[record.levelname], "msg": record.message, "time": _iso(record.created)}
        return json.dumps(dict(sorted(out.items())), default=str)

    def _zap(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": _ZAP[record.levelname],
            "ts": round(record.created, 6),
            "caller": getattr(record, "caller", f"{self.tag}/main.go:1"),
            "msg": record.message,
            **_fields(record),
        }
        if record.levelno >= logging.ERROR:
            out["stacktrace"] = getattr(record, "stack", None) or f"main.main\n\t/src/{out['caller'].split(':')[0]}"
        return json.dumps(out, separators=(",", ":"), default=str)

    def _golog(self, record: logging.LogRecord) -> str:
        return f"{_local(record.created, '%Y/%m/%d %H:%M:%S')} {record.message}"

    # -- Node and Java -------------------------------------------------------------------------------

    def _pino(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": _PINO[record.levelname],
            "time": int(record.created * 1000),
            "pid": record.process,
            "hostname": _HOST,
            **_fields(record),
        }
        err = getattr(record, "err", None)
        if err is not None:
            out["err"] = err
        out["msg"] = record.message
        return json.dumps(out, separators=(",", ":"), default=str)

    def _logback(self, record: logging.LogRecord) -> str:
        stamp = _local(record.created, "%Y-%m-%d %H:%M:%S") + f".{int(record.msecs):03d}"
        level = {"WARNING": "WARN", "CRITICAL": "ERROR"}.get(record.levelname, record.levelname)
        thread = getattr(record, "java_thread", None) or "main"
        line = f"{stamp} {level:>5} {record.process} --- [{thread:>15}] {record.name:<40} : {record.message}"
        return self._with_traceback(line, record)


class _Backdate(logging.Filter):
    """Gives a record the time the history being written is at, instead of now."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.at is not None:
            record.created = self.at
            record.msecs = (self.at % 1) * 1000
        return True


class Service:
    """One hold-out service: its parameters, its logger and the harness's marker."""

    def __init__(self, argv: list[str] | None = None) -> None:
        argv = sys.argv if argv is None else argv
        self.params_path = Path(argv[1])
        self.p: dict[str, Any] = json.loads(self.params_path.read_text())
        self.marker = self.params_path.parent / ".failing"
        self.tick_seconds = float(self.p.get("tick_seconds", 0.1))
        log_file = self.p.get("log_file")
        self.stream: Any = open(log_file, "a", buffering=1) if log_file else sys.stdout  # noqa: SIM115 - lives as long as the process
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(
            LibraryFormatter(
                self.p.get("log_style", "python"),
                fmt=self.p.get("log_format"),
                datefmt=self.p.get("date_format"),
                tag=self.p.get("tag", "app"),
            )
        )
        self._backdate = _Backdate()
        self.handler.addFilter(self._backdate)

    def __getitem__(self, key: str) -> Any:
        return self.p[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.p.get(key, default)

    def logger(self, name: str) -> logging.Logger:
        """A logger writing this service's style (any logger: asyncio's and the SDK's too)."""
        log = logging.getLogger(name)
        log.handlers[:] = [self.handler]
        log.setLevel(logging.DEBUG)
        log.propagate = False
        return log

    def failing(self) -> None:
        """Tell the harness (never the log) that the failure begins now; only the first call counts."""
        if not self.marker.exists():
            self.marker.touch()

    def history(self, routine: Callable[[int], None], *, span: float = 3600.0, step: float = 20.0) -> None:
        """What the log held before this run: ``routine(tick)`` once every ``step`` seconds for ``span``
        seconds, ending seven minutes ago. Written only into an empty log (a restart keeps the old one)."""
        try:
            if os.fstat(self.stream.fileno()).st_size > 0:
                return
        except (OSError, ValueError):
            return
        now = time.time()
        ticks = int(span / step)
        for tick in range(ticks):
            self._backdate.at = now - 420.0 - (ticks - tick) * step
            routine(tick)
        self._backdate.at = None

    def sleep(self) -> None:
        time.sleep(self.tick_seconds)
