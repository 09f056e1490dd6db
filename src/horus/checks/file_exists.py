"""The ``file_exists`` check: a job's output is there, big enough, and recent enough."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.freshness import FreshnessTracker
from horus.config.types import AbsolutePath, PositiveSeconds

# Look again just after the deadline rather than on it, so the file is really past its limit.
DEADLINE_MARGIN_SECONDS = 0.05


class FileExistsOptions(CheckOptions):
    type: Literal["file_exists"]
    path: AbsolutePath
    max_age_seconds: PositiveSeconds | None = None
    min_size: int | None = Field(default=None, ge=0)


class FileExistsCheck(Check[FileExistsOptions]):
    """Unhealthy when the file is missing, smaller than ``min_size`` bytes, or older than ``max_age_seconds``.

    Use it for what a job leaves behind: a nightly report, a heartbeat file, a backup. The age is
    watched, not polled: a file that goes stale is noticed just after it crosses the limit, whatever
    the monitor's interval, and a wall clock jump does not make it look fresh or stale. A directory
    at ``path`` is unhealthy, because a file was expected there. A path Horus cannot look at (through
    a regular file, a name too long, a directory it may not enter) is a probe error that says why.
    """

    options_model = FileExistsOptions
    inline = True

    def __init__(self, options: FileExistsOptions) -> None:
        super().__init__(options)
        self._freshness = FreshnessTracker()

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        # Off the event loop: a stat on a dead network mount can block for minutes.
        return await asyncio.to_thread(self.probe_inline, ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        path: Path = self.options.path
        name = path.name or str(path)
        st = _stat(path)
        if st is None:
            return CheckResult.unhealthy(f"{name} does not exist ({path})", path=str(path))
        if stat.S_ISDIR(st.st_mode):
            return CheckResult.unhealthy(f"{name} is a directory, not a file ({path})", path=str(path))

        details: dict[str, Any] = {"path": str(path), "size_bytes": st.st_size}
        problems: list[str] = []
        min_size = self.options.min_size
        if min_size is not None and st.st_size < min_size:
            problems.append(f"is {_bytes(st.st_size)}, minimum {min_size}")

        limit = self.options.max_age_seconds
        age: float | None = None
        if limit is not None:
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            age = self._freshness.age(signature, ctx.clock.wall() - st.st_mtime, ctx.clock.monotonic())
            details["age_seconds"] = round(age, 3)
            if age > limit:
                problems.append(f"last written {humanize.seconds(age)} ago, limit {humanize.seconds(limit)}")

        if problems:
            return CheckResult.unhealthy(f"{name} " + "; ".join(problems), **details)
        reason = f"{name} exists, {_bytes(st.st_size)}"
        if limit is None or age is None:
            return CheckResult.healthy(reason, **details)
        return CheckResult.healthy(
            f"{reason}, last written {humanize.seconds(age)} ago, limit {humanize.seconds(limit)}",
            recheck_in=limit - age + DEADLINE_MARGIN_SECONDS,
            **details,
        )


def _stat(path: Path) -> os.stat_result | None:
    """None when the file is missing. Any other OSError (a path through a regular file, a name too long,
    a directory Horus may not enter) says nothing about the file, so it is left to the runner to report
    as a probe error."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _bytes(size: int) -> str:
    return "1 byte" if size == 1 else f"{size} bytes"
