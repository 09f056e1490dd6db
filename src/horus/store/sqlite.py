"""What every SQLite file of Horus shares (the state, the notification outbox, the incidents): how it is
opened, migrated and written.

- WAL, so readers (``horus status``, ``horus kb search``) never block the daemon;
- ``synchronous=FULL``, so what was committed survives a power cut, not only a kill -9;
- migrations as an append-only list of scripts, tracked in ``PRAGMA user_version``;
- every write in one ``BEGIN IMMEDIATE`` transaction; every SQLite error translated to StoreError,
  naming the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from horus.errors import StoreError

__all__ = ["connect", "migrate", "open_migrated", "transaction"]


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
