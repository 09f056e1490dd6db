"""The ``log_staleness`` check: a service that stopped writing its log has probably stopped working."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path
from typing import Literal

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.freshness import FreshnessTracker
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.errors import ProbeError
from horus_sdk.formats import file_kind

# Look again just after the deadline rather than on it, so the file is really past its limit.
DEADLINE_MARGIN_SECONDS = 0.05
# A rotated log's directory is read at most this many entries deep: /var/log holds hundreds, and a
# directory another process fills must not make every look slower.
MAX_ROTATION_DIR_ENTRIES = 10_000
# The suffixes logrotate and Python's handlers give a rotated log: bot.log.1 (logrotate, RotatingFileHandler),
# bot.log-20261201 (dateext), bot.log.2026-12-01 or .2026-12-01_13-00-00 (TimedRotatingFileHandler). A
# compressed one (.gz, .xz...) is logrotate's copy, never the writer's file, and does not match.
_ROTATED_SUFFIX = re.compile(r"[._-][0-9][0-9._:T-]*")
# Of what was written since the last look, at most this much (the newest) is read for crash output.
CRASH_SCAN_BYTES = 16 * 1024
# How an uncaught error starts, in the runtimes services are written in (Python, Go, Java, Node).
CRASH_MARKERS = (
    b"Traceback (most recent call last):",
    b"\npanic: ",
    b'Exception in thread "',
    b"Uncaught Exception",
    b"UnhandledPromiseRejection",
)


class LogStalenessOptions(CheckOptions):
    type: Literal["log_staleness"]
    log_file: AbsolutePath
    max_age_seconds: PositiveSeconds


class LogStalenessCheck(Check[LogStalenessOptions]):
    """Unhealthy when the log file has not been written for longer than ``max_age_seconds``.

    The deadline is watched, not polled: a log that goes stale is noticed within a second of crossing
    the limit, whatever the monitor's interval. Rotation is not a false alarm: before the log is called
    stale, the writer is followed to where it may still be writing (a writer that has not reopened its
    log yet, after logrotate's ``create`` or a plain rename): the newest rotated sibling (``bot.log.1``,
    ``bot.log-20261201``, ``bot.log.2026-12-01``) or the writer's old file under any name in the same
    directory. copytruncate counts as a write, and so does Python's RotatingFileHandler,
    TimedRotatingFileHandler and WatchedFileHandler. A compressed copy is never taken for the writer.
    A missing log file is unhealthy; a path Horus cannot look at (through a regular file, a name too
    long, a directory it may not enter) or that is not a regular file is a probe error that says why.

    A log freshened by a crash proves nothing: what was written since the last look is scanned (its
    newest 16 KiB) for the start of an uncaught error (a Python traceback, a Go panic...). While a failing
    service is proving its recovery, such output breaks the proof, so a crash loop writing tracebacks to
    its own log is never "recovered".
    """

    options_model = LogStalenessOptions
    inline = True

    def __init__(self, options: LogStalenessOptions) -> None:
        super().__init__(options)
        self._freshness = FreshnessTracker()
        self._rotated_freshness = FreshnessTracker()  # of the rotated file the writer may still be writing
        self._writer_file: tuple[int, int] | None = None  # (device, inode) the service last wrote
        self._scanned: tuple[int, int, int] | None = None  # (device, inode, size) read for crash output
        # Computed once: this check runs every few seconds for years, on thousands of monitors.
        self._path_text = os.fspath(options.log_file)
        self._limit_text = humanize.seconds(options.max_age_seconds)

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        # Off the event loop: a stat on a dead network mount can block for minutes.
        return await asyncio.to_thread(self.probe_inline, ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        path: Path = self.options.log_file
        limit = self.options.max_age_seconds
        current = _stat(self._path_text)
        if current is not None and not stat.S_ISREG(current.st_mode):
            # A directory's mtime moves whenever a file is created in it: it would pass for a log being written.
            raise ProbeError(f"cannot observe {self._path_text}: {file_kind(current.st_mode)}, not a log file")
        now_wall, now_mono = ctx.clock.wall(), ctx.clock.monotonic()
        age: float | None = None
        if current is not None:
            signature = (current.st_dev, current.st_ino, current.st_size, current.st_mtime_ns)
            age = self._freshness.age(signature, now_wall - current.st_mtime, now_mono)
            if age <= limit and current.st_size > 0:
                # An empty file may be one logrotate just created, which the writer has not opened yet.
                self._writer_file = _identity(current)
        rotated_to: str | None = None
        if age is None or age > limit:
            # Stale or missing under its own name: the writer may still be writing the rotated file.
            found = _rotated_file(path, self._writer_file, current)
            if found is not None:
                name, st = found
                signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                rotated_age = self._rotated_freshness.age(signature, now_wall - st.st_mtime, now_mono)
                if age is None or rotated_age < age:
                    age, rotated_to = rotated_age, name
        if age is None:
            return CheckResult.unhealthy(f"{path.name} does not exist ({path})", path=self._path_text)

        where = path.name if rotated_to is None else f"{path.name} (rotated to {rotated_to})"
        reason = f"{where} last written {humanize.seconds(age)} ago, limit {self._limit_text}"
        if age > limit:
            return CheckResult.unhealthy(reason, path=self._path_text, age_seconds=round(age, 3))
        crashes = self._crash_output(current) if current is not None else 0
        return CheckResult.healthy(
            reason,
            recheck_in=limit - age + DEADLINE_MARGIN_SECONDS,
            path=self._path_text,
            age_seconds=round(age, 3),
            **({"crash_output": crashes} if crashes else {}),
        )

    def _crash_output(self, current: os.stat_result) -> int:
        """How many uncaught errors begin in what was written since the last look (0 on the first look)."""
        before, self._scanned = self._scanned, (current.st_dev, current.st_ino, current.st_size)
        if before is None or before[:2] != self._scanned[:2] or current.st_size <= before[2]:
            return 0
        start = max(before[2], current.st_size - CRASH_SCAN_BYTES)
        try:
            # Non-blocking, and checked again once open: a FIFO swapped in after the stat must not block.
            fd = os.open(self._path_text, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return 0
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return 0
            data = os.pread(fd, current.st_size - start, start)
        except OSError:
            return 0
        finally:
            os.close(fd)
        return sum(data.count(marker) for marker in CRASH_MARKERS)


def _stat(path: str) -> os.stat_result | None:
    """None when the log is missing; any other OSError is the runner's to report as a probe error."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _rotated_file(
    path: Path, writer: tuple[int, int] | None, current: os.stat_result | None
) -> tuple[str, os.stat_result] | None:
    """The most recently written file in the log's directory that the writer may still be writing: a
    rotated sibling by its name, or the file the writer last wrote (by inode), under whatever name."""
    base = path.name
    best: tuple[str, os.stat_result] | None = None
    try:
        with os.scandir(path.parent) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_ROTATION_DIR_ENTRIES:
                    break
                name = entry.name
                if name == base:
                    continue
                rotated = name.startswith(base) and _ROTATED_SUFFIX.fullmatch(name, len(base)) is not None
                if not rotated and (writer is None or entry.inode() != writer[1]):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or (not rotated and _identity(st) != writer):
                    continue
                if current is not None and _identity(st) == _identity(current):
                    continue  # a hard link to the log itself says nothing more
                if best is None or st.st_mtime_ns > best[1].st_mtime_ns:
                    best = (name, st)
    except OSError:
        return None
    return best
