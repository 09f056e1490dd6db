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

Reading is defensive, because the daemon reads these files from directories other processes can write:
only a regular file is opened (a named pipe would block the reader until someone writes to it, a device
may do something on open), and never more than a bound (``HEARTBEAT_MAX_BYTES``, ``CRASH_MAX_BYTES``):
the file is refused unread (``RefusedFileError``) rather than held in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "CRASH_MAX_BYTES",
    "FORMAT_CRASH",
    "FORMAT_HEARTBEAT",
    "HEARTBEAT_MAX_BYTES",
    "RefusedFileError",
    "boot_id",
    "crash_record_path",
    "crash_summary",
    "file_kind",
    "read_json",
    "read_regular_file",
    "read_up_to",
    "write_json_atomic",
]

FORMAT_HEARTBEAT = "horus-heartbeat/1"
FORMAT_CRASH = "horus-crash/1"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# A heartbeat is a few hundred bytes (a few KiB with many channels): 1 MiB is thousands of channels, and
# whatever is larger was not written by the SDK. A crash record holds every thread's stack (256 frames at
# most) and every task's await chain; a service with thousands of tasks stays well under 8 MiB.
HEARTBEAT_MAX_BYTES = 1024 * 1024
CRASH_MAX_BYTES = 8 * 1024 * 1024
_MAX_BYTES = {FORMAT_HEARTBEAT: HEARTBEAT_MAX_BYTES, FORMAT_CRASH: CRASH_MAX_BYTES}
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


class RefusedFileError(OSError):
    """The path is not a regular file, or is larger than a reader takes: it was not read.

    An OSError, so that a caller that already treats an unreadable file as such needs no change; its
    message names the path and the reason ("/srv/bot/hb.json: a named pipe, not a regular file").
    """


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, fsync: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new one, never half.

    Raises OSError; callers inside a service decide whether to contain it (the SDK always does).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(_create_exclusively(tmp), "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"), default=str)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_exclusively(path: Path) -> int:
    """A new file at ``path``, never one that was there: in a directory other users may write, a symlink
    planted at the temp file's name would otherwise have the write land wherever it points. One left by a
    crash (or planted) is removed first; unlink removes a symlink itself, never its target."""
    try:
        return os.open(path, _CREATE_FLAGS, 0o666)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, _CREATE_FLAGS, 0o666)


def read_json(path: str | os.PathLike[str], expected_format: str, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Read a heartbeat or crash record; ValueError when it is not one (or not this version).

    Raises OSError when it cannot be read, and RefusedFileError (an OSError) when the path is not a
    regular file or is larger than ``max_bytes`` (by default the bound of ``expected_format``).
    """
    limit = max_bytes if max_bytes is not None else _MAX_BYTES.get(expected_format, HEARTBEAT_MAX_BYTES)
    raw = read_regular_file(path, limit)
    try:
        data = json.loads(raw)
    except RecursionError:
        # Deeply nested arrays exhaust the parser's stack: not a file the SDK wrote.
        raise ValueError(f"{os.fspath(path)}: not a {expected_format} file (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise ValueError(f"{os.fspath(path)}: not a {expected_format} file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not a {expected_format} file (format {found!r})")
    return data


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``; never blocks on it.

    It is looked at before it is opened (so a device is never opened), opened non-blocking (so a named
    pipe swapped in after the look cannot block), and looked at again through the open descriptor
    before a byte is read. Raises OSError (FileNotFoundError when missing) or RefusedFileError.
    """
    text = os.fspath(path)
    _refuse_unless_readable(text, os.stat(text), max_bytes)
    fd = os.open(text, _OPEN_FLAGS)
    try:
        _refuse_unless_readable(text, os.fstat(fd), max_bytes)
        data = read_up_to(fd, max_bytes + 1)  # one byte more tells a file that grew past the bound since the look
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise RefusedFileError(f"{text}: more than {_size(max_bytes)}, larger than a reader takes (not read)")
    return data


def read_up_to(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from ``fd``'s position on, in chunks of at most 1 MiB."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _refuse_unless_readable(path: str, st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFileError(f"{path}: {file_kind(st.st_mode)}, not a regular file (not read)")
    if st.st_size > max_bytes:
        raise RefusedFileError(f"{path}: {_size(st.st_size)}, larger than the {_size(max_bytes)} limit (not read)")


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words ("a named pipe"), from its ``st_mode``."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.4g} MiB"
    if size >= 1024:
        return f"{size / 1024:.4g} KiB"
    return "1 byte" if size == 1 else f"{size} bytes"


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
