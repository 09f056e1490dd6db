"""What every SQLite file of Horus shares (the state, the notification outbox, the incidents): how it is
opened, migrated and written.

- WAL, so readers (``horus status``, ``horus kb search``) never block the daemon;
- ``synchronous=FULL``, so what was committed survives a power cut, not only a kill -9;
- migrations as an append-only list of scripts, tracked in ``PRAGMA user_version``;
- every write in one ``BEGIN IMMEDIATE`` transaction; every SQLite error translated to StoreError,
  naming the file;
- at the daemon's start, :func:`move_aside_if_damaged`: a file that is empty, not SQLite, fails
  ``PRAGMA quick_check`` or holds tables other than its migrations make is renamed to
  ``<name>.damaged-<UTC time>`` (with its -wal and -shm) and a new one is created, never silently reused
  nor taken for a fresh start without a word.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from horus.errors import StoreError
from horus.log import get_logger

__all__ = ["Damage", "connect", "migrate", "move_aside_if_damaged", "open_migrated", "transaction"]

log = get_logger("horus.store")

SQLITE_HEADER = b"SQLite format 3\x00"
# quick_check reads every page; on a huge incident database it may take long. Past this, the file is
# taken as it is (a warning says so) rather than holding the daemon's start.
QUICK_CHECK_SECONDS = 20.0
# quick_check stops after this many problems: one is enough to know, a few say what kind of damage.
QUICK_CHECK_ERRORS = 3
# SQLite's primary result codes that mean "this file is damaged", as opposed to busy, locked or denied.
_DAMAGE_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


@dataclass(frozen=True)
class Damage:
    """A database file found damaged at start and moved aside; a new one takes its place."""

    what: str
    path: Path
    reason: str
    moved_to: Path

    def sentence(self) -> str:
        return f"the {self.what} {self.path} was damaged ({self.reason}); it was moved to {self.moved_to}"


def connect(path: Path, *, what: str) -> sqlite3.Connection:
    """Open ``path`` (creating its directory, private to its owner) the way Horus uses SQLite.
    ``what`` names the file in errors ("state database", "incident database"...)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create_private(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    return db


def _create_private(path: Path) -> None:
    """Create a missing database file empty and 0600, whatever the umask: SQLite would create it 0644, and
    it gives the -wal and -shm files it makes beside it the database file's own mode."""
    try:
        path.touch(mode=0o600, exist_ok=False)
    except FileExistsError:
        return
    path.chmod(0o600)  # touch's mode passes through the umask, which may have taken the owner's bits


def open_migrated(path: Path, migrations: Sequence[str], *, what: str) -> sqlite3.Connection:
    """:func:`connect`, then :func:`migrate`; the connection is closed again when the migration fails."""
    db = connect(path, what=what)
    try:
        migrate(db, migrations, what=what, path=path)
    except StoreError:
        db.close()
        raise
    except (OSError, sqlite3.Error) as exc:
        db.close()
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    return db


def migrate(db: sqlite3.Connection, migrations: Sequence[str], *, what: str, path: Path) -> None:
    """Bring the schema up to date, one committed migration at a time. Never edit a released entry of
    ``migrations``: append a new one."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > len(migrations):
        raise StoreError(f"{what} {path} has schema v{version}, newer than this Horus understands")
    for number, script in enumerate(migrations[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def statements(script: str) -> Iterator[str]:
    """The statements of a migration script; a trigger's body keeps its own semicolons."""
    pending = ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


@contextmanager
def transaction(db: sqlite3.Connection, *, what: str, path: Path) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"{what} {path}: write failed: {exc}") from exc


def move_aside_if_damaged(path: Path, migrations: Sequence[str], *, what: str) -> Damage | None:
    """Check ``path`` before it is opened for good: when it is damaged, rename it (and its -wal and -shm)
    to ``<name>.damaged-<UTC time>``, log ``store.damaged_moved_aside`` and say what was found. A file
    that is missing, healthy, busy or merely unreadable (permissions) is left alone: :func:`connect`
    reports those. A schema newer than ``migrations`` is not damage either (a newer Horus wrote it)."""
    reason = _damage(path, migrations)
    if reason is None:
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    moved_to = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while moved_to.exists():
        n += 1
        moved_to = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        # The -wal and -shm go with it: left behind, SQLite would replay the old WAL into the new file.
        for suffix in ("-wal", "-shm"):
            beside = path.with_name(path.name + suffix)
            if beside.exists():
                os.replace(beside, moved_to.with_name(moved_to.name + suffix))
        os.replace(path, moved_to)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the renames must survive a power cut
        finally:
            os.close(directory)
    except OSError as exc:
        raise StoreError(f"the {what} {path} is damaged ({reason}) and cannot be moved aside: {exc}") from exc
    log.warning("store.damaged_moved_aside", what=what, path=str(path), reason=reason, moved_to=str(moved_to))
    return Damage(what=what, path=path, reason=reason, moved_to=moved_to)


def _damage(path: Path, migrations: Sequence[str]) -> str | None:
    """Why ``path`` is damaged, or None when it is missing, healthy, or cannot be judged."""
    try:
        # Only a regular file is read: opening a FIFO put there would block the daemon's start.
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError:  # missing, a directory, not ours to read: connect() reports what matters
        return None
    if not header:
        return "it is empty"
    if header != SQLITE_HEADER:
        return "it is not an SQLite database"
    try:
        # Read-only, so the check changes nothing (a read-write connection, on closing, would fold or
        # delete the very WAL being judged); as_uri() quotes a path holding '?', '#' or '%'.
        uri = f"{path.absolute().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            deadline = time.monotonic() + QUICK_CHECK_SECONDS
            db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > len(migrations):
                return None
            rows = [row[0] for row in db.execute(f"PRAGMA quick_check({QUICK_CHECK_ERRORS})")]
            if rows != ["ok"]:
                return "PRAGMA quick_check: " + "; ".join(str(row) for row in rows)
            tables = _tables(db)
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            log.warning("store.check_skipped", path=str(path), why=f"quick_check took over {QUICK_CHECK_SECONDS} s")
            return None
        return _damage_reason(exc)
    except sqlite3.DatabaseError as exc:
        return _damage_reason(exc)
    expected = _tables_made_by(migrations[:version])
    if tables.keys() - expected.keys():
        return "it holds tables Horus does not make: " + ", ".join(sorted(tables.keys() - expected.keys()))
    if expected.keys() - tables.keys():
        return "tables are missing: " + ", ".join(sorted(expected.keys() - tables.keys()))
    changed = sorted(name for name in tables if tables[name] != expected[name])
    if changed:
        return "tables have other columns than Horus makes: " + ", ".join(changed)
    return None


def _damage_reason(exc: sqlite3.Error) -> str | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _DAMAGE_CODES:
        return str(exc)
    return None  # busy, locked or denied: connect() says so


def _tables(db: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    """Each table's columns, SQLite's own tables (sqlite_sequence) aside."""
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    names = [row[0] for row in rows if not row[0].startswith("sqlite_")]
    # A damaged or foreign file may hold any table name: quoted as an identifier.
    return {
        name: tuple(column[1] for column in db.execute(f'PRAGMA table_info("{name.replace(chr(34), chr(34) * 2)}")'))
        for name in names
    }


def _tables_made_by(migrations: Sequence[str]) -> dict[str, tuple[str, ...]]:
    with closing(sqlite3.connect(":memory:")) as db:
        for script in migrations:
            for statement in statements(script):
                db.execute(statement)
        return _tables(db)
