"""Structured log events with stable names: ``heal.started monitor=bot action=kill_process pids=[4121]``.

Event names are ``<area>.<what happened>`` and never change casually: operators grep and alert on them.
Secrets never reach a log line: URLs are logged through :func:`redact_url`.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal, TextIO

import structlog

__all__ = ["configure", "get_logger", "redact_url"]

LogFormat = Literal["console", "json"]


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def configure(log_format: LogFormat = "console", *, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route every event to ``stream`` (stderr by default) as console lines or JSON lines.

    Every event carries ``timestamp``, ISO 8601 in UTC with a ``Z`` (``2026-03-01T12:00:00.123456Z``).
    """
    out = stream if stream is not None else sys.stderr
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        # Fields in the order they were bound, so every line starts with its monitor.
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty(), pad_event_to=0, sort_keys=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            # UTC with an explicit "Z": a local time without an offset cannot be compared across hosts,
            # nor read correctly across a daylight-saving change.
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|key|apikey|api_key|secret|password|passwd|sig|signature)=)[^&#\s]+")


def redact_url(url: str) -> str:
    """``https://user:pw@host/x?token=abc`` -> ``https://***@host/x?token=***``."""
    url = _USERINFO.sub(r"\g<scheme>***@", url)
    return _SECRET_QUERY.sub(r"\1***", url)
