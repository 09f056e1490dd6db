"""The ``log_staleness`` check: a service that stopped writing its log has probably stopped working."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Literal

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.freshness import FreshnessTracker
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.errors import ProbeError

# Look again just after the deadline rather than on it, so the file is really past its limit.
DEADLINE_MARGIN_SECONDS = 0.05
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
    the limit, whatever the monitor's interval. Rotation is not a false alarm: after a rename the
    writer's old file is followed until the new one is written, and copytruncate counts as a write.
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
        self._writer_file: tuple[int, int] | None = None  # (device, inode) the service is writing
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
            raise ProbeError(f"cannot observe {self._path_text}: {_kind(current.st_mode)}, not a log file")
        candidates = [current] if current is not None else []
        rotated_to: Path | None = None
        if self._writer_file is not None and (current is None or _identity(current) != self._writer_file):
            found = _find_inode(path.parent, self._writer_file, exclude=path.name)
            if found is not None:
                old_path, old = found
                if current is not None and current.st_mtime_ns >= old.st_mtime_ns:
                    # The service has moved on to the new file; stop following the rotated one.
                    self._writer_file = _identity(current)
                else:
                    rotated_to = old_path
                    candidates.append(old)
            elif current is not None:
                self._writer_file = _identity(current)
        elif current is not None:
            self._writer_file = _identity(current)

        if not candidates:
            return CheckResult.unhealthy(f"{path.name} does not exist ({path})", path=self._path_text)

        signature: tuple[object, ...]
        if len(candidates) == 1:  # the usual case, kept cheap
            c = candidates[0]
            signature = (c.st_dev, c.st_ino, c.st_size, c.st_mtime_ns)
            newest_mtime = c.st_mtime
        else:
            signature = tuple(sorted((c.st_dev, c.st_ino, c.st_size, c.st_mtime_ns) for c in candidates))
            newest_mtime = max(c.st_mtime for c in candidates)
        age = self._freshness.age(signature, ctx.clock.wall() - newest_mtime, ctx.clock.monotonic())
        where = path.name if rotated_to is None else f"{path.name} (rotated to {rotated_to.name})"
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


def _kind(mode: int) -> str:
    # A directory's mtime moves whenever a file is created in it, so it would pass for a log being written.
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _find_inode(directory: Path, identity: tuple[int, int], *, exclude: str) -> tuple[Path, os.stat_result] | None:
    """The file in ``directory`` that is the writer's old file, now under a rotated name."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        if entry.name == exclude or entry.inode() != identity[1]:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if _identity(st) == identity:
            return Path(entry.path), st
    return None
