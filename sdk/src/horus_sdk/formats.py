"""The files the SDK writes and the Horus daemon reads: heartbeats and crash records.

Both sides import this module, so the format is defined once. Every write is atomic (temp file, fsync,
rename): a reader never sees half a file, and a crash mid-write leaves the previous file intact.

Heartbeat file (``FORMAT_HEARTBEAT``)::

    {"format": "horus-heartbeat/1", "pid": 4121, "sequence": 42, "boot_id": "…",
     "wall_time": 1795227443.6, "monotonic": 81234.5, "interval": 1.0, "started_monotonic": 81190.0,
     "channels": {"scan": {"count": 17, "wall_time": …, "monotonic": …}}}

``monotonic`` is CLOCK_MONOTONIC, which is system-wide: on the same boot the daemon measures a
heartbeat's age with it, immune to wall clock jumps. ``started_monotonic`` is when the heartbeat began,
so a channel that has not progressed yet is judged from then. A channel's ``count`` is exact; its times
are when the heartbeat first saw that count, at most ``DATING_PERIOD`` (0.25 s) after the progress.

Crash record (``FORMAT_CRASH``), ``horus-crash-<pid>.json``::

    {"format": "horus-crash/1", "pid": 4121, "wall_time": …, "reason": "event loop blocked for 12.0 s",
     "stuck": {"file": "bot.py", "line": 42, "function": "place_maker_order", "code": "await …"},
     "threads": [{"name": "MainThread", "id": 1, "stack": [frame, …]}],
     "tasks": [{"name": "Task-1", "await_chain": [frame, …]}],
     "operations": [{"name": "place_maker_order", "age_seconds": 31.2}]}

A frame is ``{"file", "line", "function", "code"}``, innermost last.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_CRASH",
    "FORMAT_HEARTBEAT",
    "boot_id",
    "crash_record_path",
    "crash_summary",
    "read_json",
    "write_json_atomic",
]

FORMAT_HEARTBEAT = "horus-heartbeat/1"
FORMAT_CRASH = "horus-crash/1"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, fsync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new one, never half.

    Raises OSError; callers inside a service decide whether to contain it (the SDK always does).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"), default=str)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike[str], expected_format: str) -> dict[str, Any]:
    """Read a heartbeat or crash record; ValueError when it is not one (or not this version)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not a {expected_format} file (format {found!r})")
    return data


def crash_record_path(crash_dir: str | os.PathLike[str], pid: int) -> Path:
    return Path(crash_dir) / f"horus-crash-{pid}.json"


def crash_summary(record: dict[str, Any]) -> str:
    """One line for a log event: why the process was ended and where it was stuck."""
    reason = str(record.get("reason", "ended by the watchdog"))
    stuck = record.get("stuck") or {}
    where = ""
    if stuck.get("function"):
        file_name = os.path.basename(str(stuck.get("file", "?")))
        where = f"; stuck in {stuck['function']} at {file_name}:{stuck.get('line', '?')}"
    operations = record.get("operations") or []
    if operations:
        names = ", ".join(f"{op['name']} ({float(op.get('age_seconds', 0)):.0f} s)" for op in operations[:3])
        where += f"; in flight: {names}"
    return reason + where


def boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None
