"""The ``artifact_growth`` check: output, not liveness. A service that passes every liveness check and
produces nothing is failing; this check proves that what it produces (files, bytes, rows) keeps growing."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import sqlite3
import stat
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.freshness import FreshnessTracker
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.errors import ProbeError

__all__ = ["ArtifactGrowthCheck", "ArtifactGrowthOptions"]

# Look again just after a deadline rather than on it, so the window has really passed.
DEADLINE_MARGIN_SECONDS = 0.05
# A recursive glob descends at most this many directory levels below `directory`: output trees are
# shallow, and a deeper walk is more likely a mistake (a glob over / or a symlink farm) than a need.
MAX_GLOB_DEPTH = 8
# How long a query waits for a lock held by the service's own writer. In WAL mode readers never wait;
# in rollback mode a commit holds the file for milliseconds. Longer than this and Horus cannot look now.
SQLITE_BUSY_TIMEOUT_SECONDS = 1.0
# The history keeps samples at least window/SAMPLE_SLOTS apart, so a one-day window probed every second
# still holds a few hundred samples; the cost is deciding up to window/SAMPLE_SLOTS late.
SAMPLE_SLOTS = 256
# A latest timestamp further ahead than this is named in the reason: probably local time read as UTC.
FUTURE_TOLERANCE_SECONDS = 60.0


def _file_pattern(pattern: str) -> str:
    if not pattern:
        raise ValueError("must not be empty")
    if "/" in pattern:
        raise ValueError("matches file names, so it cannot contain '/'; set recursive: true to look in subdirectories")
    return pattern


_STATEMENT_START = re.compile(r"(SELECT|WITH)\b", re.IGNORECASE)


def _single_select(query: str) -> str:
    body = query.strip()
    body = body[:-1].rstrip() if body.endswith(";") else body
    if not _STATEMENT_START.match(body):
        raise ValueError("must be one SELECT statement (it may start with WITH)")
    if ";" in body:
        raise ValueError("must be one statement: ';' is allowed only at the end")
    return body


class GlobSource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    directory: AbsolutePath
    pattern: Annotated[str, AfterValidator(_file_pattern)] = "*"
    recursive: bool = False


class SqliteSource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    database: AbsolutePath
    query: Annotated[str, AfterValidator(_single_select)]
    measure: Literal["count", "latest"] = "count"


class ArtifactGrowthOptions(CheckOptions):
    type: Literal["artifact_growth"]
    glob: GlobSource | None = None
    file_size: AbsolutePath | None = None
    sqlite: SqliteSource | None = None
    min_growth: int = Field(1, ge=1)
    window_seconds: PositiveSeconds

    @model_validator(mode="after")
    def _one_source(self) -> ArtifactGrowthOptions:
        given = [key for key in ("glob", "file_size", "sqlite") if getattr(self, key) is not None]
        if len(given) != 1:
            found = f"; got {' and '.join(given)}" if given else ""
            raise ValueError(f"set exactly one source of output: glob, file_size or sqlite{found}")
        if self.sqlite is not None and self.sqlite.measure == "latest" and "min_growth" in self.model_fields_set:
            raise ValueError("min_growth does not apply to measure: latest, whose limit is window_seconds")
        return self


class ArtifactGrowthCheck(Check[ArtifactGrowthOptions]):
    """Unhealthy when the service's output has not grown by ``min_growth`` within ``window_seconds``.

    A process can be running, its port open and its log moving while it produces nothing. This check
    watches what it produces, from exactly one source:

    - ``glob: {directory: /srv/out, pattern: "*.json", recursive: false}``: the number of regular files
      matching ``pattern`` (file names only; like a shell glob, ``*`` does not match names starting with a
      dot). Symlinks are neither counted nor followed; ``recursive`` descends into subdirectories except
      hidden ones, at most 8 levels deep.
    - ``file_size: /srv/out/trades.csv``: the file's size in bytes.
    - ``sqlite: {database: /srv/bot/bot.db, query: "SELECT count(*) FROM trades"}``: one number the query
      returns. With ``measure: latest`` the query returns the newest timestamp instead (epoch seconds or
      milliseconds, or ISO-8601 text, read as UTC when it has no offset, as SQLite's CURRENT_TIMESTAMP
      writes it), and the check is unhealthy when that is older than ``window_seconds``. The database is
      opened read-only and never created; only one SELECT (or WITH) statement is accepted. On a WAL
      database that no other connection has open, SQLite itself creates the ``-wal`` and ``-shm`` files
      beside it (owned by the database's owner); the service's next connection uses them as usual.

    Until it has watched for a whole window (after Horus starts, say) the check cannot say "no growth":
    it stays healthy, says how long it has watched, and looks again the moment the window completes. A
    missing directory, file or database, or a query that fails, is unhealthy at once. A value that
    shrinks (a file truncated or rotated, files removed, rows deleted) starts a new baseline: neither
    growth nor a failure by itself. Files are counted, not named: a directory that another process
    empties as fast as files arrive looks still, so watch what that process writes instead. A healthy
    result says how much grew in how long ("3 new files in 4 min"), with ``growth``, ``value`` and
    ``observed_seconds`` in its details.
    """

    options_model = ArtifactGrowthOptions
    inline = True

    def __init__(self, options: ArtifactGrowthOptions) -> None:
        super().__init__(options)
        self._history = _History(options.window_seconds)
        self._freshness = FreshnessTracker()
        self._latest_seen: float | None = None
        self._window_text = humanize.duration(options.window_seconds)
        self._source: _Source
        if options.glob is not None:
            self._source = _GlobCount(options.glob)
        elif options.file_size is not None:
            self._source = _FileSize(options.file_size)
        else:
            assert options.sqlite is not None
            self._source = _SqliteValue(options.sqlite)
            # A query's cost is the service's table size: it gets its own thread under the monitor's
            # timeout, rather than holding up every file check queued behind it on the filesystem thread.
            self.inline = False

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        # Off the event loop: a scan of a large directory or a query can take a while.
        if self.inline:
            return await asyncio.to_thread(self.probe_inline, ctx)
        interrupter = _Interrupter()
        try:
            return await asyncio.to_thread(self._probe, ctx, interrupter)
        except asyncio.CancelledError:
            # The runner's timeout: stop the query, or its thread would run on (and hold Horus's exit).
            interrupter.interrupt()
            raise

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        return self._probe(ctx, None)

    def growth_since(self, since_monotonic: float) -> tuple[float, float] | None:
        """``(growth, seconds)``: how much the output grew since ``since_monotonic`` (a heal, say), measured
        from the last sample at or before it, and over how long. None until a probe after it has run.

        Only what this instance observed counts; samples older than a window are forgotten, so growth
        since an older moment is measured from the oldest sample kept (an undercount, never more).
        """
        return self._history.growth_since(since_monotonic)

    def _probe(self, ctx: ProbeContext, interrupter: _Interrupter | None) -> CheckResult:
        reading = self._source.read(interrupter)
        if isinstance(reading, CheckResult):
            return reading
        now = ctx.clock.monotonic()
        self._history.add(now, reading.value)
        if reading.latest_text is not None:
            return self._judge_latest(ctx, now, reading)
        return self._judge_growth(now, reading.value)

    def _judge_growth(self, now: float, value: float) -> CheckResult:
        window = self.options.window_seconds
        need = self.options.min_growth
        history = self._history
        start_at, start_value = history.baseline()
        growth = history.current - start_value
        span = now - start_at
        details: dict[str, Any] = {
            "source": self._source.where,
            "value": _number(value),
            "growth": _number(growth),
            "observed_seconds": round(span, 3),
            "window_seconds": window,
            "min_growth": need,
        }
        shrank = ""
        if history.rebased_at is not None and now - history.rebased_at <= span:
            shrank = f"; {self._source.shrank} {humanize.duration(now - history.rebased_at)} ago"
            details["shrank_seconds_ago"] = round(now - history.rebased_at, 3)
        if growth >= need:
            deadline = history.stall_deadline(need) + window
            return CheckResult.healthy(
                self._source.growing(growth, span, value) + shrank,
                recheck_in=max(0.0, deadline - now) + DEADLINE_MARGIN_SECONDS,
                **details,
            )
        if start_at > now - window:
            # Not watched a whole window yet: too early to call it "no growth", and too early to call it
            # working (after a restart of Horus the window starts from nothing).
            return CheckResult.unknown(
                f"{self._source.watching(value)}, watching for {humanize.duration(span)} of {self._window_text} window",
                recheck_in=start_at + window - now + DEADLINE_MARGIN_SECONDS,
                watching=True,
                **details,
            )
        return CheckResult.unhealthy(self._source.stalled(growth, span, value, need) + shrank, **details)

    def _judge_latest(self, ctx: ProbeContext, now: float, reading: _Reading) -> CheckResult:
        limit = self.options.window_seconds
        wall_age = ctx.clock.wall() - reading.value
        if self._latest_seen is not None and reading.value < self._latest_seen:
            # The newest rows were deleted: the older timestamp is not news, so its age is not capped.
            self._freshness = FreshnessTracker()
        self._latest_seen = reading.value
        # Measured on the monotonic clock after the first look, so a wall clock jump cannot age it.
        age = self._freshness.age(reading.value, wall_age, now)
        label = self._source.label
        reason = f"{label}: latest row {reading.latest_text} is {humanize.duration(age)} old, limit {self._window_text}"
        if wall_age < -FUTURE_TOLERANCE_SECONDS:
            reason = (
                f"{label}: latest row {reading.latest_text} is {humanize.duration(-wall_age)} in the future "
                "(local time read as UTC? add an offset such as +02:00)"
            )
        details: dict[str, Any] = {
            "source": self._source.where,
            "value": reading.value,
            "latest": reading.latest_text,
            "age_seconds": round(age, 3),
            "window_seconds": limit,
        }
        growth = self._history.growth_since(now - limit)
        if growth is not None and growth[1] > 0:
            details["growth"] = round(growth[0], 3)  # how far the latest timestamp moved, in seconds
            details["observed_seconds"] = round(growth[1], 3)
        if age > limit:
            return CheckResult.unhealthy(reason, **details)
        return CheckResult.healthy(reason, recheck_in=limit - age + DEADLINE_MARGIN_SECONDS, **details)


class _History:
    """(monotonic time, value) samples of one check, with one kept at or before the window's start.

    Values only grow here: when the source shrinks, an offset keeps the sequence level, so the new
    value becomes the baseline without counting as growth and without restarting the window.
    """

    def __init__(self, window: float) -> None:
        self._window = window
        self._spacing = window / SAMPLE_SLOTS
        self._samples: deque[tuple[float, float]] = deque()
        self._offset = 0.0
        self.rebased_at: float | None = None

    @property
    def current(self) -> float:
        return self._samples[-1][1]

    def add(self, now: float, raw: float) -> None:
        samples = self._samples
        value = raw + self._offset
        if samples and value < samples[-1][1]:
            self._offset += samples[-1][1] - value
            value = samples[-1][1]
            self.rebased_at = now
        if len(samples) >= 2 and now - samples[-2][0] < self._spacing:
            samples[-1] = (now, value)  # too close to the one before: move the newest sample forward
        else:
            samples.append((now, value))
        while len(samples) >= 2 and samples[1][0] <= now - self._window:
            samples.popleft()

    def baseline(self) -> tuple[float, float]:
        """The last sample at or before the window's start, or the first one while the window fills."""
        return self._samples[0]

    def stall_deadline(self, need: int) -> float:
        """When the window's start passes the first sample within ``need`` of the current value: from then
        on, with no more growth, the growth within the window is less than ``need``."""
        threshold = self.current - need
        when = self._samples[-1][0]
        for at, value in reversed(self._samples):
            if value <= threshold:
                break
            when = at
        return when

    def growth_since(self, since: float) -> tuple[float, float] | None:
        samples = self._samples
        if not samples or samples[-1][0] <= since:
            return None
        base = samples[0]
        for sample in samples:
            if sample[0] > since:
                break
            base = sample
        last = samples[-1]
        return last[1] - base[1], last[0] - base[0]


@dataclass(frozen=True, slots=True)
class _Reading:
    value: float
    latest_text: str | None = None  # set for measure: latest, as the reason shows the timestamp


class _Source(ABC):
    """One source of output: how to read it (a missing source is an unhealthy result), and how to say
    what it did."""

    where: str  # the path, for details
    label: str  # the name a reason starts with
    shrank: str  # what a shrink means here, for a reason

    @abstractmethod
    def read(self, interrupter: _Interrupter | None) -> _Reading | CheckResult: ...

    @abstractmethod
    def watching(self, value: float) -> str: ...

    @abstractmethod
    def growing(self, growth: float, span: float, value: float) -> str: ...

    @abstractmethod
    def stalled(self, growth: float, span: float, value: float, need: int) -> str: ...


class _GlobCount(_Source):
    shrank = "files were removed"

    def __init__(self, glob: GlobSource) -> None:
        self._directory = os.fspath(glob.directory)
        self._match = re.compile(fnmatch.translate(glob.pattern)).match
        self._hidden_too = glob.pattern.startswith(".")
        self._recursive = glob.recursive
        self.where = self._directory
        self.label = glob.directory.name or self._directory
        below = " and below" if glob.recursive else ""
        self._matching = f"matching {glob.pattern} in {self._directory}{below}"

    def read(self, interrupter: _Interrupter | None) -> _Reading | CheckResult:
        try:
            count = self._count()
        except FileNotFoundError:
            return CheckResult.unhealthy(f"output directory {self._directory} does not exist", source=self.where)
        except NotADirectoryError:
            return CheckResult.unhealthy(f"{self._directory} is not a directory", source=self.where)
        except OSError as exc:
            raise ProbeError(f"cannot read {self._directory}: {exc.strerror or exc}") from exc
        return _Reading(count)

    def _count(self) -> int:
        """Matching regular files, counted as the directory is read: nothing is listed or sorted, and
        ``DirEntry`` answers the type from the directory itself, without a stat per file."""
        count = 0
        pending = [(self._directory, 0)]
        while pending:
            directory, depth = pending.pop()
            descend = self._recursive and depth < MAX_GLOB_DEPTH
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        name = entry.name
                        if name.startswith(".") and not self._hidden_too:
                            continue
                        if descend and entry.is_dir(follow_symlinks=False):
                            pending.append((entry.path, depth + 1))
                        elif self._match(name) and entry.is_file(follow_symlinks=False):
                            count += 1
            except OSError:
                if depth == 0:
                    raise
                # A subdirectory removed while walking, or one Horus may not read (lost+found): skipped.
        return count

    def watching(self, value: float) -> str:
        return f"{_plural(value, 'file')} {self._matching}"

    def growing(self, growth: float, span: float, value: float) -> str:
        return f"{_plural(growth, 'new file')} in {humanize.duration(span)} ({_number(value)} {self._matching})"

    def stalled(self, growth: float, span: float, value: float, need: int) -> str:
        if growth <= 0:
            return f"no new files {self._matching} in the last {humanize.duration(span)} (still {_number(value)})"
        return (
            f"{_plural(growth, 'new file')} {self._matching} in the last {humanize.duration(span)}, "
            f"need {need} (now {_number(value)})"
        )


class _FileSize(_Source):
    shrank = "truncated or replaced"

    def __init__(self, path: Path) -> None:
        self._path = os.fspath(path)
        self.label = path.name or self._path
        self.where = self._path

    def read(self, interrupter: _Interrupter | None) -> _Reading | CheckResult:
        try:
            st = os.stat(self._path)
        except (FileNotFoundError, NotADirectoryError):
            return CheckResult.unhealthy(f"{self.label} does not exist ({self._path})", source=self.where)
        except OSError as exc:
            raise ProbeError(f"cannot read {self._path}: {exc.strerror or exc}") from exc
        if stat.S_ISDIR(st.st_mode):
            return CheckResult.unhealthy(f"{self.label} is a directory, not a file ({self._path})", source=self.where)
        return _Reading(st.st_size)

    def watching(self, value: float) -> str:
        return f"{self.label} is {_bytes(value)}"

    def growing(self, growth: float, span: float, value: float) -> str:
        return f"{self.label} grew by {_bytes(growth)} in {humanize.duration(span)} (now {_bytes(value)})"

    def stalled(self, growth: float, span: float, value: float, need: int) -> str:
        if growth <= 0:
            return f"{self.label} did not grow in the last {humanize.duration(span)} (still {_bytes(value)})"
        return (
            f"{self.label} grew by {_bytes(growth)} in the last {humanize.duration(span)}, "
            f"need {_bytes(need)} (now {_bytes(value)})"
        )


_FIRST_TABLE = re.compile(r"\bFROM\s+[\"`\[]?([A-Za-z_][\w.]*)", re.IGNORECASE)


class _SqliteValue(_Source):
    shrank = "rows were deleted"

    def __init__(self, source: SqliteSource) -> None:
        self._path = os.fspath(source.database)
        # file: URIs need an absolute, percent-encoded path; mode=ro opens read-only and never creates.
        self._uri = Path(os.path.abspath(self._path)).as_uri() + "?mode=ro"
        self._query = source.query
        self._latest = source.measure == "latest"
        table = _FIRST_TABLE.search(source.query)
        self.label = table.group(1) if table else source.database.name
        self.where = self._path

    def read(self, interrupter: _Interrupter | None) -> _Reading | CheckResult:
        try:
            os.stat(self._path)
        except (FileNotFoundError, NotADirectoryError):
            return CheckResult.unhealthy(f"database {self._path} does not exist", source=self.where)
        except OSError as exc:
            raise ProbeError(f"cannot read {self._path}: {exc.strerror or exc}") from exc
        try:
            row = self._fetch(interrupter)
        except sqlite3.Error as exc:
            return self._failed(exc)
        value = row[0] if row else None
        if value is None:
            what = "no rows yet" if self._latest else "no value"
            return CheckResult.unhealthy(f"{self.label}: the query returned {what} ({self._path})", source=self.where)
        if self._latest:
            return _latest_reading(value, self.label)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProbeError(f"{self.label}: the query must return one number for measure: count, got {value!r}")
        return _Reading(value)

    def _fetch(self, interrupter: _Interrupter | None) -> Any:
        connection = sqlite3.connect(
            self._uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            if interrupter is not None and not interrupter.attach(connection):
                raise sqlite3.OperationalError("interrupted")
            try:
                return connection.execute(self._query).fetchone()
            finally:
                if interrupter is not None:
                    interrupter.detach()
        finally:
            connection.close()

    def _failed(self, exc: sqlite3.Error) -> CheckResult:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_INTERRUPT", "SQLITE_PERM", "SQLITE_AUTH")):
            raise ProbeError(f"{self.label}: cannot query {self._path} now: {exc}") from exc
        if name.startswith("SQLITE_READONLY") or (
            name.startswith("SQLITE_CANTOPEN") and not os.access(self._path, os.R_OK)
        ):
            # A WAL database needs its -shm file: with no other connection open, the reader must create it.
            raise ProbeError(
                f"{self.label}: cannot open {self._path} read-only: {exc} (Horus needs read access to the "
                "database and, for a WAL database, to its -shm file or write access to its directory)"
            ) from exc
        return CheckResult.unhealthy(f"{self.label}: query failed on {self._path}: {exc}", source=self.where)

    def watching(self, value: float) -> str:
        return f"{self.label}: count {_number(value)}"

    def growing(self, growth: float, span: float, value: float) -> str:
        return f"{self.label}: count {_number(value)}, +{_number(growth)} in {humanize.duration(span)}"

    def stalled(self, growth: float, span: float, value: float, need: int) -> str:
        return (
            f"{self.label}: count {_number(value)}, +{_number(growth)} in the last {humanize.duration(span)}, "
            f"need +{need}"
        )


def _latest_reading(value: object, label: str) -> _Reading:
    """A timestamp as epoch seconds: a number of seconds (or milliseconds), or ISO-8601 text."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ProbeError(f"{label}: the query must return a timestamp, got {value!r}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # SQLite's CURRENT_TIMESTAMP and datetime('now') are UTC
            return _Reading(moment.timestamp(), text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProbeError(f"{label}: the query must return a timestamp, got {value!r}")
    seconds = float(value)
    # Seconds since the epoch pass 1e11 only in the year 5138: a bigger number is in smaller units.
    if abs(seconds) >= 1e17:
        seconds /= 1e9
    elif abs(seconds) >= 1e14:
        seconds /= 1e6
    elif abs(seconds) >= 1e11:
        seconds /= 1e3
    try:
        shown = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        raise ProbeError(f"{label}: the query must return a timestamp, got {value!r}") from None
    return _Reading(seconds, shown)


class _Interrupter:
    """Lets the event loop stop a query running on another thread (``sqlite3.Connection.interrupt`` is
    the one call SQLite allows from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._interrupted = False

    def attach(self, connection: sqlite3.Connection) -> bool:
        with self._lock:
            if self._interrupted:
                return False
            self._connection = connection
            return True

    def detach(self) -> None:
        with self._lock:
            self._connection = None

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if self._connection is not None:
                self._connection.interrupt()


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


def _plural(count: float, noun: str) -> str:
    shown = _number(count)
    return f"{shown} {noun}" if shown == 1 else f"{shown} {noun}s"


def _bytes(size: float) -> str:
    shown = _number(size)
    return "1 byte" if shown == 1 else f"{shown:,} bytes"
