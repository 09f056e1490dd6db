"""Durable monitor state: failure counters, last heal times and the heal log, in SQLite (WAL).

A heal is recorded *before* it acts, in a committed transaction, so that a Horus killed with -9 in
the middle of a heal still knows, when it comes back, that the cooldown has started.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import sqlite3
import stat
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from horus.errors import StateLockedError, StoreError
from horus.log import get_logger
from horus.store import sqlite

__all__ = ["HealRecord", "Instant", "StateDirLock", "StateStore", "StoredMonitorState", "prepare_state_dir"]

DB_NAME = "horus.db"
LOCK_NAME = "horus.lock"

_log = get_logger("horus.store")

# Each entry moves the schema one version forward; never edit a released entry, append a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE monitor_state (
        monitor              TEXT PRIMARY KEY,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        last_status          TEXT,
        last_reason          TEXT,
        last_check_at        REAL,
        failing_since        REAL,
        last_heal_wall       REAL,
        last_heal_mono       REAL,
        last_heal_boot       TEXT,
        updated_at           REAL NOT NULL
    );
    CREATE TABLE heals (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        monitor      TEXT NOT NULL,
        action       TEXT NOT NULL,
        reason       TEXT NOT NULL,
        started_at   REAL NOT NULL,
        finished_at  REAL,
        ok           INTEGER,
        summary      TEXT,
        details      TEXT
    );
    CREATE INDEX heals_by_monitor ON heals (monitor, started_at);
    """,
    # The heal budget and quarantine (issue 6), and `horus resume` requests to a running daemon.
    """
    ALTER TABLE monitor_state ADD COLUMN heals_in_streak INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE monitor_state ADD COLUMN quarantined_until_wall REAL;
    ALTER TABLE monitor_state ADD COLUMN quarantined_until_mono REAL;
    ALTER TABLE monitor_state ADD COLUMN quarantined_until_boot TEXT;
    CREATE TABLE resume_requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        monitor      TEXT NOT NULL,
        requested_at REAL NOT NULL
    );
    """,
    # Heals whose notification was settled without an event in the outbox (held back as a repeat, or no
    # channel wanted it): a restarted Horus re-derives the notification of every other recent heal whose
    # event it cannot find in the outbox (issue 12). Heals from before this version count as settled.
    """
    ALTER TABLE heals ADD COLUMN announced TEXT;
    UPDATE heals SET announced = 'before schema v3';
    """,
)
# Other files of a Horus state dir: when one exists but horus.db does not, horus.db was lost, not new.
_SIBLINGS = ("notify.db", "incidents.db")


@dataclass(frozen=True)
class Instant:
    """A moment on both clocks, and the boot it belongs to, so elapsed time survives wall clock jumps."""

    wall: float
    mono: float
    boot: str | None

    def seconds_until(self, later: Instant) -> float:
        if self.boot is not None and self.boot == later.boot:
            return later.mono - self.mono
        # Across a reboot the monotonic clocks are unrelated; only the wall clock links the two.
        return later.wall - self.wall

    def rebased(self, now: Instant) -> Instant:
        """The same moment expressed on ``now``'s boot, never later than ``now``."""
        if self.boot is not None and self.boot == now.boot:
            return self
        elapsed = max(0.0, now.wall - self.wall)
        return Instant(wall=self.wall, mono=now.mono - elapsed, boot=now.boot)


@dataclass(frozen=True)
class StoredMonitorState:
    monitor: str
    consecutive_failures: int
    last_status: str | None
    last_reason: str | None
    last_check_at: float | None
    failing_since: float | None
    last_heal: Instant | None
    heals_in_streak: int = 0
    quarantined_until: Instant | None = None


@dataclass(frozen=True)
class HealRecord:
    id: int
    monitor: str
    action: str
    reason: str
    started_at: float
    finished_at: float | None
    ok: bool | None
    summary: str | None
    details: Mapping[str, Any]


class StateDirLock:
    """An exclusive lock on the state dir: two daemons sharing state would heal everything twice.

    Taking it makes the state dir private first (:func:`prepare_state_dir`), or refuses the dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._file: TextIO | None = None

    def acquire(self) -> None:
        prepare_state_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            os.fchmod(fd, PRIVATE_FILE)  # whatever the umask, and a lock file an earlier Horus left 0644
        except OSError:
            os.close(fd)
            raise
        handle = os.fdopen(fd, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StateLockedError(f"{self.path.parent} is in use by Horus pid {holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
OPEN_TO_OTHERS = 0o077
# A state dir holds a handful of entries; past this many the rest keep their modes (the dir's own 0700
# already keeps every other user out) rather than holding the daemon's start.
MAX_ENTRIES_TIGHTENED = 1000


def prepare_state_dir(state_dir: Path) -> None:
    """Make ``state_dir`` private to the user Horus runs as, or refuse it with a StoreError saying why.

    A missing one is created 0700, whatever the umask. An existing one must belong to that user: whoever
    owns it could change the cooldowns and the heal log kept there. Its mode is set to 0700, and the
    entries in it (files and directories, never through a symlink) lose their group and other bits; each
    change that takes access away from other users is logged as ``state.permissions_tightened`` with
    ``path``, ``old_mode`` and ``new_mode``. A dir whose mode cannot be set is refused.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        info = os.stat(state_dir)
    except OSError as exc:
        raise StoreError(f"cannot create the state dir {state_dir}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"state dir {state_dir} is not a directory")
    me = os.geteuid()
    if info.st_uid != me:
        owner, horus = _user_name(info.st_uid), _user_name(me)
        raise StoreError(
            f"state dir {state_dir} belongs to {owner} (uid {info.st_uid}), not to {horus}, the user Horus runs "
            "as: its owner could change the cooldowns and the heal log Horus keeps there. Give it to "
            f"{horus} (chown) or set state_dir to a directory of {horus}'s own"
        )
    old = stat.S_IMODE(info.st_mode)
    if old != PRIVATE_DIR:
        try:
            os.chmod(state_dir, PRIVATE_DIR)
        except OSError as exc:
            openness = ", open to other users," if old & OPEN_TO_OTHERS else ""
            raise StoreError(
                f"state dir {state_dir} has mode {old:04o}{openness} and Horus cannot make it private "
                f"({PRIVATE_DIR:04o}): {exc.strerror or exc}"
            ) from exc
        if old & OPEN_TO_OTHERS:
            _log_tightened(state_dir, old, PRIVATE_DIR)
    _tighten_entries(state_dir, me)


def _tighten_entries(state_dir: Path, me: int) -> None:
    # The dir is private now, so no other user can swap an entry for a symlink between the look and the
    # chmod; entries of other users (a -shm file root's `horus status` made) are not Horus's to change.
    try:
        with os.scandir(state_dir) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_ENTRIES_TIGHTENED:
                    return
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind_ok = stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)
                old = stat.S_IMODE(info.st_mode)
                if not kind_ok or info.st_uid != me or not old & OPEN_TO_OTHERS:
                    continue
                new = old & ~OPEN_TO_OTHERS
                try:
                    os.chmod(entry.path, new)
                except OSError as exc:
                    _log.warning("state.permissions_not_tightened", path=entry.path, mode=f"{old:04o}", error=str(exc))
                    continue
                _log_tightened(Path(entry.path), old, new)
    except OSError as exc:  # the dir itself is checked by the lock and the databases that follow
        _log.warning("state.permissions_not_tightened", path=str(state_dir), error=str(exc))


def _log_tightened(path: Path, old: int, new: int) -> None:
    _log.warning("state.permissions_tightened", path=str(path), old_mode=f"{old:04o}", new_mode=f"{new:04o}")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class StateStore:
    """Monitor state and the heal log in ``<state_dir>/horus.db``. Not thread-safe: use from one thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        # Set by open(check=True): the damaged file moved aside, and whether the state Horus had (its
        # cooldowns) was lost, so that the daemon treats every cooldown as running from its start.
        self.damage: sqlite.Damage | None = None
        self.recovered_from_damage: str | None = None

    @classmethod
    def open(cls, state_dir: Path, *, check: bool = False) -> StateStore:
        """Open (creating or migrating) ``<state_dir>/horus.db``. With ``check`` (the daemon's start), a
        damaged file is moved aside first, and ``recovered_from_damage`` says why the state was lost: the
        file was damaged, or it is missing while the other databases of the state dir are there."""
        path = state_dir / DB_NAME
        damage = sqlite.move_aside_if_damaged(path, _MIGRATIONS, what="state database") if check else None
        lost: str | None = None
        if damage is not None:
            lost = damage.sentence()
        elif check and not path.exists():
            present = [name for name in _SIBLINGS if (state_dir / name).exists()]
            if present:
                others = " and ".join(present)
                lost = f"the state database {path} is missing, but {others} of an earlier Horus are there"
        store = cls(sqlite.open_migrated(path, _MIGRATIONS, what="state database"), path)
        store.damage, store.recovered_from_damage = damage, lost
        return store

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite.transaction(self._db, what="state database", path=self.path)

    def load(self, monitor: str) -> StoredMonitorState | None:
        row = self._db.execute("SELECT * FROM monitor_state WHERE monitor = ?", (monitor,)).fetchone()
        return _state_from_row(row) if row is not None else None

    def all_states(self) -> list[StoredMonitorState]:
        rows = self._db.execute("SELECT * FROM monitor_state ORDER BY monitor").fetchall()
        return [_state_from_row(row) for row in rows]

    def save(self, state: StoredMonitorState, *, now: float) -> None:
        with self._transaction() as db:
            _upsert(db, state, now)

    def save_many(self, states: Iterable[StoredMonitorState], *, now: float) -> None:
        """Save every state in one commit (one fsync, not one per monitor)."""
        with self._transaction() as db:
            for state in states:
                _upsert(db, state, now)

    def begin_heal(self, state: StoredMonitorState, *, action: str, reason: str) -> int:
        """Record, in one commit, that a heal is starting and that the monitor's cooldown runs from now."""
        if state.last_heal is None:
            raise ValueError("begin_heal needs the heal's start in state.last_heal")
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO heals (monitor, action, reason, started_at) VALUES (?, ?, ?, ?)",
                (state.monitor, action, reason, state.last_heal.wall),
            )
            _upsert(db, state, state.last_heal.wall)
        heal_id = cursor.lastrowid
        assert heal_id is not None
        return heal_id

    def finish_heal(
        self, heal_id: int, *, ok: bool, summary: str, details: Mapping[str, Any], finished_at: float
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE heals SET finished_at = ?, ok = ?, summary = ?, details = ? WHERE id = ?",
                (finished_at, int(ok), summary, json.dumps(details, default=str), heal_id),
            )

    def mark_announced(self, heal_id: int, how: str) -> None:
        """The heal's notification was settled without an event in the outbox (``how`` says why), so a
        restarted Horus does not re-derive it."""
        with self._transaction() as db:
            db.execute("UPDATE heals SET announced = ? WHERE id = ?", (how, heal_id))

    def heals_to_announce(self, *, since: float, limit: int = 1000) -> list[HealRecord]:
        """Heals started at or after ``since`` whose notification was not settled without an event: the
        caller looks for each one's event in the outbox. Oldest first."""
        rows = self._db.execute(
            "SELECT * FROM heals WHERE started_at >= ? AND announced IS NULL ORDER BY id DESC LIMIT ?", (since, limit)
        ).fetchall()
        return [_heal_from_row(row) for row in reversed(rows)]

    def request_resume(self, monitor: str, *, now: float) -> None:
        """``horus resume``: lift the quarantine in the store now (so a stopped daemon starts without it),
        and leave a request the running daemon picks up within a second."""
        with self._transaction() as db:
            db.execute(
                "UPDATE monitor_state SET quarantined_until_wall = NULL, quarantined_until_mono = NULL, "
                "quarantined_until_boot = NULL, heals_in_streak = 0 WHERE monitor = ?",
                (monitor,),
            )
            db.execute("INSERT INTO resume_requests (monitor, requested_at) VALUES (?, ?)", (monitor, now))

    def take_resume_requests(self) -> list[str]:
        """The monitors ``horus resume`` named since the last call; each request is handed out once."""
        with self._transaction() as db:
            rows = db.execute("SELECT id, monitor FROM resume_requests ORDER BY id").fetchall()
            if rows:
                db.execute("DELETE FROM resume_requests WHERE id <= ?", (rows[-1]["id"],))
        return list(dict.fromkeys(row["monitor"] for row in rows))

    def heals(self, monitor: str | None = None, *, limit: int = 50, since: float | None = None) -> list[HealRecord]:
        """The newest heals first; only those started at or after ``since`` (wall time) when given."""
        clauses: list[str] = []
        params: list[Any] = []
        if monitor is not None:
            clauses.append("monitor = ?")
            params.append(monitor)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT * FROM heals{where} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()  # noqa: S608
        return [_heal_from_row(row) for row in rows]


def _heal_from_row(row: sqlite3.Row) -> HealRecord:
    return HealRecord(
        id=row["id"],
        monitor=row["monitor"],
        action=row["action"],
        reason=row["reason"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        ok=None if row["ok"] is None else bool(row["ok"]),
        summary=row["summary"],
        details=json.loads(row["details"]) if row["details"] else {},
    )


def _upsert(db: sqlite3.Connection, state: StoredMonitorState, now: float) -> None:
    heal = state.last_heal
    quarantine = state.quarantined_until
    db.execute(
        """
        INSERT INTO monitor_state (monitor, consecutive_failures, last_status, last_reason,
            last_check_at, failing_since, last_heal_wall, last_heal_mono, last_heal_boot, updated_at,
            heals_in_streak, quarantined_until_wall, quarantined_until_mono, quarantined_until_boot)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (monitor) DO UPDATE SET
            heals_in_streak = excluded.heals_in_streak,
            quarantined_until_wall = excluded.quarantined_until_wall,
            quarantined_until_mono = excluded.quarantined_until_mono,
            quarantined_until_boot = excluded.quarantined_until_boot,
            consecutive_failures = excluded.consecutive_failures,
            last_status = excluded.last_status,
            last_reason = excluded.last_reason,
            last_check_at = excluded.last_check_at,
            failing_since = excluded.failing_since,
            last_heal_wall = excluded.last_heal_wall,
            last_heal_mono = excluded.last_heal_mono,
            last_heal_boot = excluded.last_heal_boot,
            updated_at = excluded.updated_at
        """,
        (
            state.monitor,
            state.consecutive_failures,
            state.last_status,
            state.last_reason,
            state.last_check_at,
            state.failing_since,
            heal.wall if heal else None,
            heal.mono if heal else None,
            heal.boot if heal else None,
            now,
            state.heals_in_streak,
            quarantine.wall if quarantine else None,
            quarantine.mono if quarantine else None,
            quarantine.boot if quarantine else None,
        ),
    )


def _state_from_row(row: sqlite3.Row) -> StoredMonitorState:
    heal = None
    if row["last_heal_wall"] is not None:
        heal = Instant(wall=row["last_heal_wall"], mono=row["last_heal_mono"], boot=row["last_heal_boot"])
    quarantine = None
    if row["quarantined_until_wall"] is not None:
        quarantine = Instant(
            wall=row["quarantined_until_wall"], mono=row["quarantined_until_mono"], boot=row["quarantined_until_boot"]
        )
    return StoredMonitorState(
        heals_in_streak=row["heals_in_streak"],
        quarantined_until=quarantine,
        monitor=row["monitor"],
        consecutive_failures=row["consecutive_failures"],
        last_status=row["last_status"],
        last_reason=row["last_reason"],
        last_check_at=row["last_check_at"],
        failing_since=row["failing_since"],
        last_heal=heal,
    )
