"""The decision log: one JSON line per decision, with what the service saw when it made it.

An incident needs to say what the bot saw, not only what it did: the signal, how old its price was, the
mode it was in and what the gate answered. ``Control.decision(kind, **context)`` writes here; the Horus
daemon quotes the newest lines (:func:`tail`) in an incident.

    log = DecisionLog("/srv/bot/control/decisions.jsonl", max_bytes=1024 * 1024, keep=3)
    log.write({"at": time.time(), "kind": "entry", "signal": 0.8, "price_age": 0.4})

Each line is one JSON object of at most :data:`MAX_LINE_BYTES`: a record too large for it has its long
values shortened, so a line is never broken and never unbounded. When the next line would take the file
past ``max_bytes``, it is rotated (``decisions.jsonl`` -> ``.1`` -> ... -> ``.<keep>``, the oldest
dropped), so the log never holds more than ``(keep + 1) * max_bytes``. Writing never raises into the
service: a failure (a full disk) is logged once per kind on the ``horus_sdk`` logger and the line is lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from horus_sdk.formats import RefusedFileError, file_kind, read_up_to

__all__ = ["DEFAULT_KEEP", "DEFAULT_MAX_BYTES", "MAX_LINE_BYTES", "TAIL_MAX_BYTES", "DecisionLog", "tail"]

logger = logging.getLogger("horus_sdk")

MAX_LINE_BYTES = 16 * 1024
"""Longest line written, newline included: a decision is a few hundred bytes; more is a value to shorten."""
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_KEEP = 3
TAIL_MAX_BYTES = 256 * 1024
"""The most :func:`tail` reads by default, across the current file and the newest rotated one."""

_OPEN_WRITE = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
)
_OPEN_READ = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_COMPACT = (",", ":")
# Each try keeps shorter texts and fewer items; the last resort keeps only what names the record.
_SHORTENING_LIMITS = (1024, 128, 16)
_MAX_DEPTH = 16
_IDENTIFYING_KEYS = ("at", "kind", "mode")
_REOPEN_CHECK_SECONDS = 1.0


class DecisionLog:
    """Appends JSON lines to ``path``, rotated at ``max_bytes`` with ``keep`` older files; thread-safe."""

    def __init__(
        self, path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be more than 0, got {max_bytes!r}")
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep!r}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.keep = int(keep)
        self.lines_written = 0
        self.lines_lost = 0
        """Lines that could not be written (each failure is also logged, once per kind)."""
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: int | None = None
        self._size = 0
        self._checked_at = 0.0
        self._warned: set[str] = set()

    def write(self, record: Mapping[str, Any]) -> bool:
        """Append ``record`` as one line; False (and a warning, once per kind) when it could not be written."""
        try:
            line = encode_line(record)
        except Exception as exc:  # a value whose str() raises, or worse: never the service's problem
            self._lost("encode", exc)
            return False
        with self._lock:
            try:
                self._write_line(line)
            except Exception as exc:
                self._close()  # opened afresh next time: the failure may have been the file's
                self._lost(f"write {type(exc).__name__} {getattr(exc, 'errno', '')}", exc)
                return False
        self.lines_written += 1
        return True

    def close(self) -> None:
        with self._lock:
            self._close()

    def _write_line(self, line: bytes) -> None:
        self._reopen_if_moved()
        if self._fd is None:
            self._open()
        if self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
            self._open()
        assert self._fd is not None
        # One write of one whole line to an O_APPEND file: a reader never sees half of it.
        written = os.write(self._fd, line)
        self._size += written
        if written != len(line):
            raise OSError(f"{self.path}: only {written} of {len(line)} bytes written")

    def _open(self) -> None:
        fd = os.open(self.path, _OPEN_WRITE, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RefusedFileError(f"{self.path}: {file_kind(st.st_mode)}, not a regular file (not written)")
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._inode, self._size = fd, st.st_ino, st.st_size
        self._checked_at = time.monotonic()

    def _reopen_if_moved(self) -> None:
        """Someone else rotated or removed the file: write to the path again, not to a file nobody reads."""
        if self._fd is None or time.monotonic() - self._checked_at < _REOPEN_CHECK_SECONDS:
            return
        self._checked_at = time.monotonic()
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self._inode:
            self._close()

    def _rotate(self) -> None:
        self._close()
        if self.keep == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        for index in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(_rotated(self.path, index), _rotated(self.path, index + 1))
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, _rotated(self.path, 1))

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _lost(self, kind: str, exc: BaseException) -> None:
        self.lines_lost += 1
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(
                "decisions.write_failed path=%s error=%r (said once; later lines may be lost)", self.path, exc
            )


def encode_line(record: Mapping[str, Any]) -> bytes:
    """``record`` as one JSON line of at most :data:`MAX_LINE_BYTES`, long values shortened to fit."""
    try:
        line = json.dumps(record, separators=_COMPACT, default=_json_default).encode() + b"\n"
    except (TypeError, ValueError, RecursionError):
        line = b""  # keys that are not texts, a cycle, nesting too deep: the plain copy below copes
    if line and len(line) <= MAX_LINE_BYTES:
        return line
    plain = _plain(record, 0)
    if not isinstance(plain, dict):
        plain = {"record": plain}
    original = len(line) or len(json.dumps(plain, separators=_COMPACT))
    for limit in _SHORTENING_LIMITS:
        line = json.dumps(_shorten(plain, limit), separators=_COMPACT).encode() + b"\n"
        if len(line) <= MAX_LINE_BYTES:
            return line
    named = {key: _shorten(plain[key], 64) for key in _IDENTIFYING_KEYS if key in plain}
    named["shortened"] = f"the record was {original} bytes, more than the {MAX_LINE_BYTES} a line may hold"
    return json.dumps(named, separators=_COMPACT).encode() + b"\n"


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A Permit is {"allowed", "reason", "mode"}, an Order its fields: what the decision saw.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _plain(value: Any, depth: int) -> Any:
    """A copy of ``value`` made only of what JSON holds, whatever it was (texts for the rest)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(key) if not isinstance(key, str) else key: _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, depth + 1) for item in value]
    if (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(value, enum.Enum):
        return _plain(_json_default(value), depth + 1)
    return _text(value)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"


def _shorten(value: Any, limit: int) -> Any:
    """``value`` with every text cut to ``limit`` characters and every list or object to a few items."""
    items = max(4, limit // 16)
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
    if isinstance(value, dict):
        kept = {_shorten(key, limit): _shorten(item, limit) for key, item in list(value.items())[:items]}
        if len(value) > items:
            kept["…"] = f"{len(value) - items} more"
        return kept
    if isinstance(value, list):
        kept_items = [_shorten(item, limit) for item in value[:items]]
        if len(value) > items:
            kept_items.append(f"… {len(value) - items} more")
        return kept_items
    return value


def _rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def tail(path: str | os.PathLike[str], lines: int = 50, max_bytes: int = TAIL_MAX_BYTES) -> list[dict[str, Any]]:
    """The newest ``lines`` records of the log at ``path``, oldest first, reading at most ``max_bytes``.

    When the current file holds fewer lines than asked (it was just rotated), the newest rotated file
    (``path.1``) gives the rest, within the same bound. Only regular files are read, and never blocked
    on. A line that is not a JSON object (a torn last line, another program's text) is skipped. A missing
    log is no records; one that cannot be read raises OSError (``RefusedFileError`` when it is not a
    regular file); a rotated file that cannot be read is passed over.
    """
    if lines <= 0 or max_bytes <= 0:
        return []
    base = Path(path)
    try:
        data, whole = _read_end(base, max_bytes)
    except FileNotFoundError:
        data, whole = b"", True
    records = _records(data, whole)
    left = max_bytes - len(data)
    if len(records) < lines and left > 0:
        try:
            older, older_whole = _read_end(_rotated(base, 1), left)
        except OSError:
            older, older_whole = b"", True
        records = _records(older, older_whole) + records
    return records[-lines:]


def _read_end(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The last ``max_bytes`` of ``path``, and whether that is the whole file (its first line complete)."""
    text = os.fspath(path)
    _refuse_unless_regular(text, os.stat(text))
    fd = os.open(text, _OPEN_READ)
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(text, st)
        start = max(0, st.st_size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        data = read_up_to(fd, max_bytes)
    finally:
        os.close(fd)
    return data, start == 0


def _refuse_unless_regular(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFileError(f"{path}: {file_kind(st.st_mode)}, not a regular file (not read)")


def _records(data: bytes, whole: bool) -> list[dict[str, Any]]:
    parts = data.split(b"\n")
    if not whole:
        parts = parts[1:]  # the read began inside a line
    parts = parts[:-1]  # after the last newline: empty, or a line still being written
    records = []
    for part in parts:
        try:
            record = json.loads(part)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
