"""What the running daemon last knew about each monitor, for ``horus status``, in three files of the state dir.

- ``status.json``, the header, a few hundred bytes, rewritten every few seconds: the daemon is alive, and which
  monitors are overdue.
- ``status-monitors.json``, every monitor's row, rewritten only at start, at stop, when the set of monitors
  changes, and when the changes written since have cost as many bytes as rewriting it.
- ``status-changes.json``, the rows that changed since, rewritten only when a row changes.

A row changes when something a person reads changes (status, failures, reason while not healthy, heals,
quarantine), not on every healthy look: at 10,000 healthy monitors, rewriting every row every few seconds was
16 GB of disk writes a day.

A row is the monitor as of its ``last_check_at``. How recent its last check really is comes from the header: it
lists the overdue monitors (not checked within their ``due_within_seconds``), so any other monitor of a running
daemon was checked within ``due_within_seconds`` of the header being written; :func:`read_status` adds that
bound to each row as ``checked_within_seconds``.

Every file is written atomically (a temp file, fsync, rename), so a reader sees whole files; the changes name
the rows file they apply to, so a reader never applies them to another.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from horus.errors import StoreError

__all__ = ["CHANGES_NAME", "MAX_OVERDUE", "ROWS_NAME", "STATUS_NAME", "StatusWriter", "read_status"]

STATUS_NAME = "status.json"
ROWS_NAME = "status-monitors.json"
CHANGES_NAME = "status-changes.json"
# The header lists at most this many overdue monitors; past it, it says so and readers show each row's own
# last check, never a freshness the daemon did not vouch for.
MAX_OVERDUE = 1000
# Header fields that are bookkeeping between the writer and read_status, not part of the snapshot.
_INTERNAL = ("overdue", "overdue_more")
# Row fields that change on every look without a person needing a rewrite: the time of the look, and the
# cooldown, which counts down by itself (stored as the moment it ends instead).
_VOLATILE = ("last_check_at", "cooldown_until")


class StatusWriter:
    """Writes the files for one daemon; remembers what it wrote, to write only what changed. Thread-safe: the
    periodic write and the final one at stop may overlap."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        # Of the rows file; the changes file names the one it applies to. Counted on from the clock, so a
        # changes file left by an earlier daemon never names one of this daemon's rows files.
        self._generation = time.time_ns()
        self._rows_written = False
        self._written: dict[str, int] = {}  # name -> fingerprint of the row as last written
        self._changed: dict[str, dict[str, Any]] = {}  # rows changed since the rows file, newest
        self._rows_bytes = 0  # size of the rows file
        self._changes_bytes = 0  # bytes of changes files written since the rows file
        self.fleet: int | None = None  # the caller's digest of its monitors when the rows were last taken

    def write(
        self, header: dict[str, Any], rows: Callable[[], Iterable[dict[str, Any]]] | None, *, full: bool = False
    ) -> None:
        """Write the header; with ``rows`` (every monitor's row, afresh on each call), also what changed in them.
        ``full`` rewrites the rows file whatever changed (at stop, so what is left behind is one plain snapshot).
        Rows are taken one at a time: 10,000 of them are never all held in memory at once."""
        with self._lock:
            if rows is not None:
                self._take_rows(rows, float(header.get("written_at") or time.time()), full=full)
            _write_atomically(self.state_dir / STATUS_NAME, [json.dumps(header, default=str)])

    def _take_rows(self, rows: Callable[[], Iterable[dict[str, Any]]], written_at: float, *, full: bool) -> None:
        if full or not self._rows_written:
            self._write_rows(rows(), written_at)
            return
        fingerprints: dict[str, int] = {}
        newly = []
        for row in rows():
            stored = _stored_row(row, written_at)
            name = stored["name"]
            fingerprints[name] = _fingerprint(stored)
            if fingerprints[name] != self._written.get(name):
                newly.append(stored)
        if fingerprints.keys() != self._written.keys():
            self._write_rows(rows(), written_at)
            return
        if not newly:
            return
        self._written = fingerprints
        self._changed.update((row["name"], row) for row in newly)
        # The changes written since the rows file cost as much as rewriting it, or soon would (many rows
        # changed at once, as when a fresh daemon's first looks come in): fold them in.
        if self._changes_bytes >= self._rows_bytes or 8 * len(self._changed) > len(fingerprints):
            self._write_rows(rows(), written_at)
            return
        text = json.dumps({"base": self._generation, "monitors": list(self._changed.values())}, default=str)
        _write_atomically(self.state_dir / CHANGES_NAME, [text])
        self._changes_bytes += len(text)

    def _write_rows(self, rows: Iterable[dict[str, Any]], written_at: float) -> None:
        generation = self._generation + 1
        fingerprints: dict[str, int] = {}
        size = 0

        def chunks() -> Iterator[str]:
            nonlocal size
            head = json.dumps({"generation": generation, "written_at": written_at, "monitors": []})[:-2]
            yield head
            size += len(head)
            for index, row in enumerate(rows):
                stored = _stored_row(row, written_at)
                fingerprints[stored["name"]] = _fingerprint(stored)
                chunk = ("," if index else "") + json.dumps(stored, default=str)
                size += len(chunk)
                yield chunk
            yield "]}"

        _write_atomically(self.state_dir / ROWS_NAME, chunks())
        # The changes file left behind names an older rows file: readers ignore it, and it goes.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_dir / CHANGES_NAME)
        self._generation = generation
        self._rows_written = True
        self._written = fingerprints
        self._changed = {}
        self._rows_bytes = size
        self._changes_bytes = 0


def read_status(state_dir: Path, now: float | None = None) -> dict[str, Any] | None:
    """The daemon's last snapshot: the header's fields and ``monitors``, every row as of its last look, with
    ``cooldown_remaining_seconds`` and ``checked_within_seconds`` (None when the daemon vouches for no check
    newer than the row's ``last_check_at``) as of ``now``. None when no daemon ever wrote one here."""
    now = time.time() if now is None else now
    header = _read_json(state_dir / STATUS_NAME)
    if header is None:
        return None
    if "monitors" in header:
        return header  # one whole file, as Horus wrote it before the rows had files of their own
    try:
        return _merged(state_dir, header, now)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise StoreError(f"{state_dir}: the daemon's status files are not as Horus writes them ({exc!r})") from exc


def _merged(state_dir: Path, header: dict[str, Any], now: float) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for _attempt in range(3):
        base = _read_json(state_dir / ROWS_NAME) or {}
        changes = _read_json(state_dir / CHANGES_NAME) or {}
        rows = {row["name"]: row for row in base.get("monitors") or [] if isinstance(row, dict) and "name" in row}
        applies_to, generation = changes.get("base"), base.get("generation")
        if applies_to == generation:
            for row in changes.get("monitors") or []:
                if isinstance(row, dict) and "name" in row:
                    rows[row["name"]] = row
        # Changes newer than the rows just read: the rows file was replaced meanwhile, read it again. Older
        # ones are already in it.
        if not (isinstance(applies_to, int) and isinstance(generation, int) and applies_to > generation):
            break
    overdue = header.get("overdue") or {}
    vouched = bool(header.get("running")) and not header.get("overdue_more")
    written_at = float(header.get("written_at") or 0)
    monitors = []
    for row in rows.values():
        out = dict(row)
        until = out.pop("cooldown_until", None)
        out["cooldown_remaining_seconds"] = round(max(0.0, until - now), 1) if isinstance(until, int | float) else 0.0
        within = None
        if out["name"] in overdue:
            out["last_check_at"] = overdue[out["name"]]
        elif vouched and isinstance(out.get("due_within_seconds"), int | float):
            within = round(max(0.0, now - written_at) + out["due_within_seconds"], 1)
            last = out.get("last_check_at")
            if isinstance(last, int | float) and now - last <= within:
                within = None  # the row's own check is more recent than the bound
        out["checked_within_seconds"] = within
        monitors.append(out)
    snapshot = {key: value for key, value in header.items() if key not in _INTERNAL}
    snapshot["monitors"] = monitors
    return snapshot


def _stored_row(row: dict[str, Any], written_at: float) -> dict[str, Any]:
    """``row`` as the files keep it."""
    out = dict(row)
    remaining = out.pop("cooldown_remaining_seconds", None)
    out["cooldown_until"] = round(written_at + remaining, 1) if remaining else None
    return out


def _fingerprint(row: dict[str, Any]) -> int:
    """What a person reads in ``row``; the reason of a healthy look carries its latency or age, which change on
    every look, so it counts only while the monitor is not healthy. (Every row has the same keys in the same
    order, so the values alone say it; at 10,000 rows this runs on every write.)"""
    healthy = row.get("status") == "healthy"
    values = tuple(value for key, value in row.items() if key not in _VOLATILE and not (healthy and key == "reason"))
    try:
        return hash(values)
    except TypeError:  # a list or a dict among the values
        return hash(json.dumps(values, sort_keys=True, default=str))


def _write_atomically(target: Path, chunks: Iterable[str]) -> None:
    """Temp file, fsync, rename: a reader sees the old file or the new one, and a crash leaves one whole."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        # Owner-only whatever the umask, like every file in the state dir.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read the daemon's status: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path}: not a status file (a JSON object was expected)")
    return data
