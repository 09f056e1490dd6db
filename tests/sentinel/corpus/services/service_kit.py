"""What every corpus service shares: its parameters, its log in a real library's format, its routine noise.

A service is started as ``python <app>/<service>.py <params.json>``. The parameters say where it logs, in
which format, what routine lines it writes while healthy, and where the harness's marker goes. The marker
(``.failing`` beside the parameters) is instrumentation for the harness: the moment the service enters its
failure state. It is never written to a log.

Formats, each as the library writes it:

- ``basic``: ``logging.basicConfig()``'s default, ``LEVEL:name:message``, no time;
- ``asctime``: the logging cookbook's ``%(asctime)s - %(name)s - %(levelname)s - %(message)s``;
- ``bracketed``: ``%(asctime)s [%(levelname)s] %(name)s: %(message)s``;
- ``structlog``: structlog's JSON renderer, ISO time stamps, tracebacks as one string (``format_exc_info``);
- ``structlog_dict``: the same with ``dict_tracebacks`` (the exception as a list of dicts);
- ``jsonlogger``: python-json-logger's ``JsonFormatter("%(asctime)s %(name)s %(levelname)s %(message)s")``;
- ``uvicorn``: uvicorn's ``LEVEL:`` prefix padded to ten columns;
- ``gunicorn``: ``[2026-11-21 02:23:01 +0000] [4121] [INFO] message``;
- ``zap``: Go's zap production encoder (``level``, ``ts`` in float seconds, ``caller``, ``msg``, ``error``);
- ``pino``: Node's pino (numeric ``level``, ``time`` in ms, ``pid``, ``hostname``, ``msg``, ``err``);
- ``syslog``: rsyslog's file format, where a multi-line message has its newlines escaped as ``#012``.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LEVELS_PINO = {"DEBUG": 20, "INFO": 30, "WARNING": 40, "ERROR": 50, "CRITICAL": 60}
_LEVELS_ZAP = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "fatal"}
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}


class JsonLoggerFormatter(logging.Formatter):
    """python-json-logger's JsonFormatter with ``%(asctime)s %(name)s %(levelname)s %(message)s``."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        out: dict[str, Any] = {
            "asctime": self.formatTime(record),
            "name": record.name,
            "levelname": record.levelname,
            "message": record.message,
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ZapFormatter(logging.Formatter):
    """zap's production JSON encoder, as a Go service writes it: ``error`` holds the error's text."""

    def __init__(self, caller: str) -> None:
        super().__init__()
        self.caller = caller

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": _LEVELS_ZAP.get(record.levelname, "info"),
            "ts": round(record.created, 6),
            "caller": getattr(record, "caller", self.caller),
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in _fields(record).items() if k != "caller"})
        if record.exc_info and "error" not in out:
            out["error"] = str(record.exc_info[1])
        if record.levelno >= logging.ERROR and "stacktrace" not in out:
            out["stacktrace"] = f"main.run\n\t/src/{out['caller'].split(':')[0]}\nmain.main\n\t/src/cmd/main.go:31"
        return json.dumps(out, separators=(",", ":"), default=str)


class PinoFormatter(logging.Formatter):
    """pino's default JSON line; an exception becomes pino's ``err`` object (type, message, stack)."""

    hostname = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": _LEVELS_PINO.get(record.levelname, 30),
            "time": int(record.created * 1000),
            "pid": record.process,
            "hostname": self.hostname,
        }
        out.update(_fields(record))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["err"] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "stack": self.formatException(record.exc_info),
            }
        out["msg"] = record.getMessage()
        return json.dumps(out, separators=(",", ":"), default=str)


class SyslogFileFormatter(logging.Formatter):
    """rsyslog's traditional file format; control characters (a traceback's newlines) become ``#012``."""

    hostname = socket.gethostname().split(".")[0]

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime(record.created))
        return f"{stamp} {self.hostname} {self.tag}[{record.process}]: " + text.replace("\n", "#012")


class UvicornFormatter(logging.Formatter):
    """uvicorn's DefaultFormatter without colours: ``INFO:     message``."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = (record.levelname + ":").ljust(9)
        text = f"{prefix} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_TEXT_FORMATS = {
    "basic": logging.BASIC_FORMAT,
    "asctime": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
    "bracketed": "%(asctime)s [%(levelname)s] %(name)s: %(message)s",
    "gunicorn": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
}


class StructlogAdapter:
    """The same calls as a logging.Logger, written by structlog's own JSON renderer."""

    def __init__(self, log_format: str, stream: Any, name: str) -> None:
        import structlog

        tracebacks = structlog.processors.dict_tracebacks if log_format == "structlog_dict" else None
        processors: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            tracebacks or structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
        self._log = structlog.wrap_logger(structlog.WriteLogger(stream), processors=processors).bind(logger=name)
        # Libraries log through the standard library; structlog's ProcessorFormatter renders their records as
        # the same JSON lines, into the same stream (attach ``handlers`` to their loggers).
        formatter = structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                tracebacks or structlog.processors.format_exc_info,
            ],
        )
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        self.handlers: list[logging.Handler] = [handler]

    def _emit(self, method: str, msg: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        fields = dict(kwargs.pop("extra", None) or {})
        if kwargs.pop("exc_info", False):
            fields["exc_info"] = True
        getattr(self._log, method)(msg % args if args else msg, **fields)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("debug", msg, args, kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("info", msg, args, kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("warning", msg, args, kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, args, kwargs)

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("critical", msg, args, kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        kwargs["exc_info"] = True
        self._emit("error", msg, args, kwargs)


def make_logger(name: str, log_format: str, log_file: str | None, *, tag: str | None = None) -> Any:
    """A logger writing ``log_format`` to ``log_file`` (stderr when None), flushed at every line."""
    if log_format.startswith("structlog"):
        stream: Any = open(log_file, "a", buffering=1) if log_file else sys.stderr  # noqa: SIM115 - the process's
        return StructlogAdapter(log_format, stream, name)
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    if log_format in _TEXT_FORMATS:
        datefmt = "%Y-%m-%d %H:%M:%S %z" if log_format == "gunicorn" else None
        handler.setFormatter(logging.Formatter(_TEXT_FORMATS[log_format], datefmt=datefmt))
    elif log_format == "jsonlogger":
        handler.setFormatter(JsonLoggerFormatter())
    elif log_format == "zap":
        handler.setFormatter(ZapFormatter(caller=tag or f"{name}/main.go:1"))
    elif log_format == "pino":
        handler.setFormatter(PinoFormatter())
    elif log_format == "syslog":
        handler.setFormatter(SyslogFileFormatter(tag or name))
    elif log_format == "uvicorn":
        handler.setFormatter(UvicornFormatter())
    else:
        raise ValueError(f"unknown log format {log_format!r}")
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


# An hour of routine before the run, ending seven minutes before it starts: long enough for Sentinel to tell
# routine from the failure, as it would in a log that has been written to for hours.
HISTORY_SECONDS = 3600.0
HISTORY_STEP_SECONDS = 30.0
HISTORY_ENDS_BEFORE_SECONDS = 420.0


class _Backdate(logging.Filter):
    """Gives a record the moment the history being written is at, instead of now."""

    at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.at is not None:
            record.created = self.at
            record.msecs = (self.at % 1) * 1000
        return True


class Kit:
    """One service's parameters, logger, clock of ticks and marker."""

    def __init__(self, argv: list[str] | None = None) -> None:
        argv = sys.argv if argv is None else argv
        self.params_path = Path(argv[1])
        self.p: dict[str, Any] = json.loads(self.params_path.read_text())
        self.marker = self.params_path.parent / ".failing"
        self.started = time.monotonic()
        self.tick_seconds = float(self.p.get("tick_seconds", 0.1))
        self.healthy_seconds = float(self.p.get("healthy_seconds", 2.0))
        self.log = make_logger(
            self.p.get("logger", "app"),
            self.p.get("log_format", "asctime"),
            self.p.get("log_file"),
            tag=self.p.get("tag"),
        )
        self.noise = Noise(self.log, self.p.get("noise", []))
        self._write_history()
        if self.p.get("loud_after"):
            threading.Thread(target=self._loud_after, name="telemetry", daemon=True).start()

    def _write_history(self) -> None:
        """The hour of routine a long-running service's log already holds: its noise, back-dated to end
        before the run's own healthy period (and five minutes' grace) began. Only for logs whose lines
        carry their time (a line without one could not be dated), and only when the log is new."""
        log_file = self.p.get("log_file")
        timed = isinstance(self.log, logging.Logger) and self.p.get("log_format", "asctime") not in ("basic", "uvicorn")
        if not (self.noise.kinds and timed and log_file and self.p.get("history", True)):
            return
        if Path(log_file).exists() and Path(log_file).stat().st_size > 0:
            return  # a restart under a loop: the history is there already
        backdate = _Backdate()
        for handler in self.log.handlers:
            handler.addFilter(backdate)
        end = time.time() - HISTORY_ENDS_BEFORE_SECONDS
        for tick in range(int(HISTORY_SECONDS // HISTORY_STEP_SECONDS)):
            backdate.at = end - HISTORY_SECONDS + tick * HISTORY_STEP_SECONDS
            self.noise.emit(tick)
        backdate.at = None

    def __getitem__(self, key: str) -> Any:
        return self.p[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.p.get(key, default)

    def failing(self) -> None:
        """Tell the harness (never the log) that the failure begins now; only the first call counts."""
        if not self.marker.exists():
            self.marker.touch()

    def is_failing(self) -> bool:
        return self.marker.exists()

    def healthy(self) -> bool:
        """Whether this run is still in its healthy period (a service that fails on its own)."""
        return time.monotonic() - self.started < self.healthy_seconds and not self.marker.exists()

    def ticks(self) -> Iterator[int]:
        tick = 0
        while True:
            yield tick
            tick += 1
            time.sleep(self.tick_seconds)

    def tick_noise(self, tick: int) -> None:
        self.noise.emit(tick)

    def _loud_after(self) -> None:
        """Once failing, the service's other threads go on talking, loudly and about other things."""
        while not self.marker.exists():
            time.sleep(0.05)
        beat = 0
        while True:
            time.sleep(0.15)
            beat += 1
            for kind in self.p["loud_after"]:
                LOUD[kind](self.log, beat)


def _queue_depth(log: Any, beat: int) -> None:
    log.warning("event queue depth %d exceeds 1000; consumers are falling behind", 1000 + 37 * beat)


def _sentry(log: Any, beat: int) -> None:
    if beat % 2 == 0:
        log.error("sentry: failed to send event 9f3c%04x: HTTP 413 Request Entity Too Large", beat)


def _gc_pause(log: Any, beat: int) -> None:
    if beat % 3 == 0:
        log.warning("gc pause of %d ms in generation 2", 180 + beat)


def _ws_late(log: Any, beat: int) -> None:
    log.warning("websocket ping answered %.1f s late; keeping the connection", 1.0 + beat / 10)


LOUD = {"queue_depth": _queue_depth, "sentry": _sentry, "gc_pause": _gc_pause, "ws_late": _ws_late}


class Noise:
    """Routine lines a healthy service writes, some of them looking like trouble, repeated all along."""

    def __init__(self, log: Any, kinds: list[str]) -> None:
        self.log = log
        self.kinds = kinds

    def emit(self, tick: int) -> None:
        for kind in self.kinds:
            getattr(self, "_" + kind)(tick)

    def _deprecation(self, tick: int) -> None:
        if tick % 4 == 0:
            self.log.warning(
                "config option 'poll_ms' is deprecated and will be removed in 3.0; use 'poll_interval' instead"
            )

    def _zero_stats(self, tick: int) -> None:
        if tick % 4 == 1:
            self.log.info("stats: 0 errors, 0 throttled requests, 0 timeouts in the last 60 s")

    def _retry_ok(self, tick: int) -> None:
        if tick % 5 == 2:
            self.log.warning("GET /v1/markets failed: connection reset by peer; retrying in 0.1 s (attempt 1/5)")
            self.log.info("GET /v1/markets succeeded on attempt 2")

    def _timeout_retry(self, tick: int) -> None:
        if tick % 5 == 3:
            self.log.warning("read timed out after 2.0 s on /v1/depth, retrying (attempt 1/3)")
            self.log.info("/v1/depth answered on attempt 2")

    def _rate_headers(self, tick: int) -> None:
        if tick % 4 == 2:
            self.log.info("rate limit: 1187/1200 requests remaining, window resets in 41 s")

    def _disk_usage(self, tick: int) -> None:
        if tick % 5 == 0:
            self.log.info("disk usage of the data volume: 3% used, 61 GB free")

    def _memory_usage(self, tick: int) -> None:
        if tick % 5 == 4:
            self.log.info("memory: rss 84 MB, 120k live objects, last gc pause 3.1 ms")

    def _auth_refresh(self, tick: int) -> None:
        if tick % 6 == 1:
            self.log.info("access token refreshed, expires in 3600 s")

    def _statsd(self, tick: int) -> None:
        # A real error, repeated all through the healthy period: the metrics agent is not installed here.
        if tick % 4 == 3:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.connect(("127.0.0.1", 9))
                sock.send(b"bot.ticks:1|c")
                sock.settimeout(0.05)
                sock.recv(16)
            except OSError as exc:
                self.log.error("metrics: statsd flush failed: %s", exc)
            finally:
                sock.close()

    def _slow_request(self, tick: int) -> None:
        if tick % 6 == 5:
            self.log.warning("slow request: GET /v1/book took 812 ms (warn above 500 ms)")

    def _oom_in_path(self, tick: int) -> None:
        # Three capital letters inside a name, which a careless match takes for the OOM killer.
        if tick % 5 == 1:
            self.log.info("checkpoint saved to /var/lib/desk/checkpoints/BLOOM-OOM-%04d.ckpt", tick)

    def _traceback_ok(self, tick: int) -> None:
        # A handled exception logged with its traceback on every pass: ugly, old, harmless.
        if tick % 6 == 0:
            try:
                int("n/a")
            except ValueError:
                self.log.warning("ignoring market with unparsable volume", exc_info=True)
