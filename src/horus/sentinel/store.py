"""The incident store: incidents, their append-only timelines, snapshots, heal attempts and patterns.

An incident opens when a monitor starts failing and closes when it has recovered (or was given up on).
Its life, with the timeline entry each step records in the same transaction::

    open_incident() ──> open ──mark_recovering()──> recovering ──close_incident()──> closed
      "detected"         │  ^  "recovery_confirmed"     │         "closed"
                         │  └────────reopen()───────────┘
                         │           "reopened"
                         └──────────close_incident()─────────────────────────────> closed

Methods that change an incident record their own timeline entry, in the same transaction:
``open_incident`` ("detected"), ``mark_recovering`` ("recovery_confirmed"), ``reopen`` ("reopened"),
``close_incident`` ("closed"), ``add_snapshot`` ("snapshot_taken"), ``add_heal_attempt`` ("heal_started") and
``finish_heal_attempt`` ("heal_finished" or "heal_failed"). The engine appends the events that change
nothing else (observation_failed, not_recovered, notified, quarantined, resumed, suppressed_as_symptom)
with :meth:`SqliteIncidentStore.append`. A closed incident never absorbs new events.

Times are wall-clock seconds since the epoch (UTC). :class:`IncidentStore` is the interface another
backend (PostgreSQL) would implement; :class:`SqliteIncidentStore` keeps it in ``<state_dir>/incidents.db``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from horus.errors import IncidentStateError, StoreError
from horus.store import sqlite

__all__ = [
    "DB_NAME",
    "MAX_SNAPSHOT_BYTES",
    "TIMELINE_KINDS",
    "HealAttempt",
    "Incident",
    "IncidentStateError",
    "IncidentStatus",
    "IncidentStore",
    "Pattern",
    "PruneResult",
    "SearchHit",
    "Snapshot",
    "SqliteIncidentStore",
    "TimelineEntry",
]

DB_NAME = "incidents.db"
MAX_SNAPSHOT_BYTES = 256 * 1024
DAY = 86400.0

IncidentStatus = Literal["open", "recovering", "closed"]

TIMELINE_KINDS = frozenset(
    {
        "detected",
        "observation_failed",
        "snapshot_taken",
        "heal_started",
        "heal_finished",
        "heal_failed",
        "recovery_confirmed",
        "not_recovered",
        "notified",
        "reopened",
        "quarantined",
        "resumed",
        "suppressed_as_symptom",
        "closed",
        "note",
        # What a service's runner did (horus.engine.runner_watch): reloads, crash restarts, giving up.
        "reload_done",
        "reload_failed",
        "reload_rolled_back",
        "runner_restart",
        "runner_gave_up",
    }
)

# Each entry moves the schema one version forward; never edit a released entry, append a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE incidents (
        id                   INTEGER PRIMARY KEY AUTOINCREMENT,
        monitor              TEXT NOT NULL,
        status               TEXT NOT NULL CHECK (status IN ('open', 'recovering', 'closed')),
        opened_at            REAL NOT NULL,
        closed_at            REAL,
        fingerprint          TEXT NOT NULL,
        fingerprint_version  INTEGER NOT NULL,
        signature            TEXT NOT NULL DEFAULT '',
        check_type           TEXT NOT NULL,
        failure_kind         TEXT NOT NULL,
        reason               TEXT NOT NULL,
        root_cause           TEXT,
        root_cause_evidence  TEXT NOT NULL DEFAULT '[]',
        recovered            INTEGER CHECK (recovered IN (0, 1)),
        recovery_note        TEXT,
        upstream_incident_id INTEGER REFERENCES incidents (id) ON DELETE SET NULL,
        postmortem_path      TEXT,
        detect_seconds       REAL,
        heal_seconds         REAL,
        recover_seconds      REAL
    );
    CREATE INDEX incidents_by_monitor ON incidents (monitor, opened_at);
    CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint, opened_at);
    CREATE INDEX incidents_by_closed_at ON incidents (status, closed_at);
    -- A monitor has at most one incident in progress: a new failure belongs to it.
    CREATE UNIQUE INDEX incidents_one_in_progress ON incidents (monitor) WHERE status != 'closed';

    CREATE TABLE timeline (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        at          REAL NOT NULL,
        kind        TEXT NOT NULL,
        message     TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX timeline_by_incident ON timeline (incident_id, id);
    -- The timeline is the record of what happened: enforced append-only, whoever writes to the file.
    CREATE TRIGGER timeline_no_update BEFORE UPDATE ON timeline
    BEGIN SELECT RAISE(ABORT, 'the incident timeline is append-only'); END;
    CREATE TRIGGER timeline_no_delete BEFORE DELETE ON timeline
    WHEN EXISTS (SELECT 1 FROM incidents WHERE id = OLD.incident_id AND status != 'closed')
    BEGIN SELECT RAISE(ABORT, 'the timeline of an incident in progress cannot be deleted'); END;
    CREATE TRIGGER timeline_closed_incident BEFORE INSERT ON timeline
    WHEN EXISTS (SELECT 1 FROM incidents WHERE id = NEW.incident_id AND status = 'closed')
    BEGIN SELECT RAISE(ABORT, 'a closed incident never absorbs new events'); END;

    CREATE TABLE snapshots (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        taken_at    REAL NOT NULL,
        data        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        note        TEXT
    );
    CREATE INDEX snapshots_by_incident ON snapshots (incident_id, id);

    CREATE TABLE heal_attempts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        started_at  REAL NOT NULL,
        finished_at REAL,
        action      TEXT NOT NULL,
        step        INTEGER NOT NULL DEFAULT 0,
        ok          INTEGER CHECK (ok IN (0, 1)),
        summary     TEXT
    );
    CREATE INDEX heal_attempts_by_incident ON heal_attempts (incident_id, id);

    CREATE TABLE patterns (
        fingerprint    TEXT PRIMARY KEY,
        monitor        TEXT NOT NULL,
        failure_kind   TEXT NOT NULL,
        signature      TEXT NOT NULL,
        first_seen     REAL NOT NULL,
        last_seen      REAL NOT NULL,
        occurrences    INTEGER NOT NULL,
        recommendation TEXT
    );
    CREATE INDEX patterns_by_monitor ON patterns (monitor, last_seen);

    -- One row per incident (rowid = incident id), kept current by the store in the same transactions.
    CREATE VIRTUAL TABLE incident_search USING fts5 (
        monitor, reason, root_cause, signature, timeline, postmortem,
        tokenize = 'porter unicode61'
    );
    """,
)

# bm25 weights, in incident_search's column order: a match in the root cause or the reason says more
# about an incident than one somewhere in its timeline.
_SEARCH_WEIGHTS = "2.0, 3.0, 4.0, 2.0, 1.0, 1.5"
_SEARCH_WORD = re.compile(r"\w+")
# Left out of the any-word fallback: matching "the" or "in" alone would find every incident.
_STOPWORDS = frozenset(
    _SEARCH_WORD.findall(
        "a an and are as at be but by for from has have in is it its not of on or that the this to was"
    )
)
# A long incident repeats its failure on every check; each repeat would rewrite the incident's search
# row, and the reason it repeats is indexed already.
_UNSEARCHED_KINDS = frozenset({"observation_failed"})


@dataclass(frozen=True)
class Incident:
    id: int
    monitor: str
    status: IncidentStatus
    opened_at: float
    closed_at: float | None
    fingerprint: str
    fingerprint_version: int
    signature: str
    check_type: str
    failure_kind: str
    reason: str  # the first failure's reason
    root_cause: str | None
    root_cause_evidence: tuple[str, ...]
    recovered: bool | None  # None until closed
    recovery_note: str | None
    upstream_incident_id: int | None  # set when this one is a symptom of a failing dependency
    postmortem_path: str | None
    detect_seconds: float | None
    heal_seconds: float | None
    recover_seconds: float | None


@dataclass(frozen=True)
class TimelineEntry:
    id: int
    incident_id: int
    at: float
    kind: str
    message: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    id: int
    incident_id: int
    taken_at: float
    data: Mapping[str, Any]
    size: int  # bytes stored, after any truncation
    note: str | None  # says what was cut when the snapshot was too large


@dataclass(frozen=True)
class HealAttempt:
    id: int
    incident_id: int
    started_at: float
    finished_at: float | None
    action: str
    step: int  # index in the monitor's escalation ladder (0 for a single heal)
    ok: bool | None  # None while it runs
    summary: str | None


@dataclass(frozen=True)
class Pattern:
    """One failure mode (one fingerprint) as seen over time; kept when old incidents are pruned."""

    fingerprint: str
    monitor: str
    failure_kind: str
    signature: str
    first_seen: float
    last_seen: float
    occurrences: int
    recommendation: str | None


@dataclass(frozen=True)
class SearchHit:
    incident_id: int
    monitor: str
    opened_at: float
    snippet: str  # the best-matching passage, matches in [brackets]
    score: float  # higher is better (negated bm25)


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    # Post-mortem files of the deleted incidents: the store never touches files, the caller decides.
    postmortem_paths: tuple[str, ...]


class IncidentStore(Protocol):
    """What the engine, the CLI and the post-mortem writer need from an incident store."""

    def close(self) -> None: ...

    def open_incident(
        self,
        monitor: str,
        *,
        at: float,
        fingerprint: str,
        fingerprint_version: int,
        signature: str,
        check_type: str,
        failure_kind: str,
        reason: str,
        upstream_incident_id: int | None = None,
        message: str | None = None,
    ) -> Incident: ...

    def open_incident_for(self, monitor: str) -> Incident | None: ...

    def append(self, incident_id: int, kind: str, message: str, *, at: float, **data: Any) -> TimelineEntry: ...

    def add_snapshot(
        self, incident_id: int, data: Mapping[str, Any], *, at: float, message: str | None = None
    ) -> Snapshot: ...

    def add_heal_attempt(self, incident_id: int, *, action: str, step: int, at: float) -> HealAttempt: ...

    def finish_heal_attempt(self, attempt_id: int, *, ok: bool, summary: str, at: float) -> HealAttempt: ...

    def set_root_cause(self, incident_id: int, text: str | None, evidence: Sequence[str]) -> None: ...

    def set_recommendation(self, fingerprint: str, text: str | None) -> None: ...

    def mark_recovering(self, incident_id: int, *, at: float, message: str, **data: Any) -> Incident: ...

    def reopen(self, incident_id: int, *, at: float, reason: str) -> Incident: ...

    def close_incident(
        self,
        incident_id: int,
        *,
        at: float,
        recovered: bool,
        note: str,
        postmortem_path: str | Path | None = None,
        detect_seconds: float | None = None,
        heal_seconds: float | None = None,
        recover_seconds: float | None = None,
    ) -> Incident: ...

    def index_postmortem(self, incident_id: int, markdown: str, *, path: str | Path | None = None) -> None: ...

    def get(self, incident_id: int) -> Incident: ...

    def timeline(self, incident_id: int) -> list[TimelineEntry]: ...

    def snapshots(self, incident_id: int) -> list[Snapshot]: ...

    def heal_attempts(self, incident_id: int) -> list[HealAttempt]: ...

    def incidents(
        self,
        *,
        monitor: str | None = None,
        status: IncidentStatus | None = None,
        fingerprint: str | None = None,
        limit: int = 50,
    ) -> list[Incident]: ...

    def patterns(self, monitor: str | None = None) -> list[Pattern]: ...

    def pattern(self, fingerprint: str) -> Pattern | None: ...

    def prior_matching(
        self, fingerprint: str, *, before: float, within_days: float = 90, exclude_id: int | None = None
    ) -> int: ...

    def search(self, query: str, *, limit: int = 10) -> list[SearchHit]: ...

    def prune(self, *, now: float, keep_days: float, keep_max: int) -> PruneResult: ...


class SqliteIncidentStore:
    """The incident store in ``<state_dir>/incidents.db`` (WAL, synchronous=FULL).

    One connection, used from one thread at a time. Every write is one transaction; every SQLite or
    filesystem error comes out as :class:`~horus.errors.StoreError` naming the database file.
    Readers in other processes (``horus kb search`` beside a running daemon) are never blocked.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, *, max_snapshot_bytes: int) -> None:
        self._db = connection
        self.path = path
        self.max_snapshot_bytes = max_snapshot_bytes

    @classmethod
    def check(cls, state_dir: Path) -> sqlite.Damage | None:
        """At the daemon's start: move ``<state_dir>/incidents.db`` aside when it is damaged (see
        :func:`horus.store.sqlite.move_aside_if_damaged`), so that :meth:`open` starts a new one."""
        return sqlite.move_aside_if_damaged(state_dir / DB_NAME, _MIGRATIONS, what="incident database")

    @classmethod
    def open(cls, state_dir: Path, *, max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES) -> SqliteIncidentStore:
        """Open (creating or migrating) ``<state_dir>/incidents.db``."""
        path = state_dir / DB_NAME
        db = sqlite.connect(path, what="incident database")
        try:
            sqlite.migrate(db, _MIGRATIONS, what="incident database", path=path)
        except StoreError:
            db.close()
            raise
        except (OSError, sqlite3.Error) as exc:
            db.close()
            if "fts5" in str(exc):
                raise StoreError(
                    f"cannot open incident database {path}: this Python's SQLite ({sqlite3.sqlite_version}) "
                    "lacks the FTS5 extension that incident search needs"
                ) from exc
            raise StoreError(f"cannot open incident database {path}: {exc}") from exc
        return cls(db, path, max_snapshot_bytes=max_snapshot_bytes)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    # -- writing ------------------------------------------------------------------------------------

    def open_incident(
        self,
        monitor: str,
        *,
        at: float,
        fingerprint: str,
        fingerprint_version: int,
        signature: str,
        check_type: str,
        failure_kind: str,
        reason: str,
        upstream_incident_id: int | None = None,
        message: str | None = None,
    ) -> Incident:
        """Open an incident for ``monitor``, record "detected" (``message``, by default ``reason``), and
        count one more occurrence of its pattern.

        Raises :class:`IncidentStateError` if the monitor already has one in progress (see
        :meth:`open_incident_for`): a failure belongs to the incident already open.
        """
        with self._transaction() as db:
            current = db.execute(
                "SELECT id FROM incidents WHERE monitor = ? AND status != 'closed'", (monitor,)
            ).fetchone()
            if current is not None:
                raise IncidentStateError(f"{monitor} already has incident {current['id']} in progress")
            cursor = db.execute(
                "INSERT INTO incidents (monitor, status, opened_at, fingerprint, fingerprint_version, signature, "
                "check_type, failure_kind, reason, upstream_incident_id) VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    monitor,
                    at,
                    fingerprint,
                    fingerprint_version,
                    signature,
                    check_type,
                    failure_kind,
                    reason,
                    upstream_incident_id,
                ),
            )
            incident_id = _lastrowid(cursor)
            db.execute(
                "INSERT INTO incident_search (rowid, monitor, reason, root_cause, signature, timeline, postmortem) "
                "VALUES (?, ?, ?, '', ?, '', '')",
                (incident_id, monitor, reason, signature),
            )
            db.execute(
                """
                INSERT INTO patterns (fingerprint, monitor, failure_kind, signature, first_seen, last_seen, occurrences)
                VALUES (?, ?, ?, ?, ?, ?, 1)
                ON CONFLICT (fingerprint) DO UPDATE SET
                    first_seen = min(first_seen, excluded.first_seen),
                    last_seen = max(last_seen, excluded.last_seen),
                    occurrences = occurrences + 1
                """,
                (fingerprint, monitor, failure_kind, signature, at, at),
            )
            detected = {"check_type": check_type, "failure_kind": failure_kind}
            _append(db, incident_id, "detected", message or reason, at, detected)
            return _incident(db, incident_id)

    def append(self, incident_id: int, kind: str, message: str, *, at: float, **data: Any) -> TimelineEntry:
        """Add one event to the incident's timeline. ``kind`` is one of :data:`TIMELINE_KINDS`.

        Raises :class:`IncidentStateError` if the incident is closed: a closed incident never absorbs
        new events (a new failure opens a new incident).
        """
        with self._transaction() as db:
            _require(db, incident_id, "open", "recovering", doing=f"add {kind!r} to")
            return _append(db, incident_id, kind, message, at, data)

    def add_snapshot(
        self, incident_id: int, data: Mapping[str, Any], *, at: float, message: str | None = None
    ) -> Snapshot:
        """Keep what the service looked like (processes, ports, log tail...); records "snapshot_taken"
        with ``message`` (by default its size), plus a note of anything cut.

        A snapshot larger than the store's ``max_snapshot_bytes`` as JSON is cut down (long strings and
        lists clipped to their ends, or only its keys kept) and the snapshot's ``note`` says so.
        """
        text, note = _bounded_json(data, self.max_snapshot_bytes)
        size = len(text.encode())
        with self._transaction() as db:
            _require(db, incident_id, "open", "recovering", doing="add a snapshot to")
            cursor = db.execute(
                "INSERT INTO snapshots (incident_id, taken_at, data, size, note) VALUES (?, ?, ?, ?, ?)",
                (incident_id, at, text, size, note),
            )
            said = (message or f"snapshot taken ({_kib(size)})") + (f"; {note}" if note else "")
            _append(db, incident_id, "snapshot_taken", said, at, {"snapshot_id": cursor.lastrowid})
            row = db.execute("SELECT * FROM snapshots WHERE id = ?", (_lastrowid(cursor),)).fetchone()
            return _snapshot(row)

    def add_heal_attempt(self, incident_id: int, *, action: str, step: int, at: float) -> HealAttempt:
        """Record that a heal starts (before it acts); records "heal_started"."""
        with self._transaction() as db:
            _require(db, incident_id, "open", "recovering", doing="add a heal attempt to")
            cursor = db.execute(
                "INSERT INTO heal_attempts (incident_id, started_at, action, step) VALUES (?, ?, ?, ?)",
                (incident_id, at, action, step),
            )
            attempt_id = _lastrowid(cursor)
            _append(db, incident_id, "heal_started", f"{action} (step {step + 1})", at, {"attempt_id": attempt_id})
            return _heal_attempt(db.execute("SELECT * FROM heal_attempts WHERE id = ?", (attempt_id,)).fetchone())

    def finish_heal_attempt(self, attempt_id: int, *, ok: bool, summary: str, at: float) -> HealAttempt:
        """Record a heal's outcome; records "heal_finished" or "heal_failed" with the summary."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM heal_attempts WHERE id = ?", (attempt_id,)).fetchone()
            if row is None:
                raise IncidentStateError(f"heal attempt {attempt_id} does not exist")
            if row["finished_at"] is not None:
                raise IncidentStateError(f"heal attempt {attempt_id} has already finished")
            incident_id = row["incident_id"]
            _require(db, incident_id, "open", "recovering", doing="finish a heal attempt of")
            db.execute(
                "UPDATE heal_attempts SET finished_at = ?, ok = ?, summary = ? WHERE id = ?",
                (at, int(ok), summary, attempt_id),
            )
            kind = "heal_finished" if ok else "heal_failed"
            _append(db, incident_id, kind, f"{row['action']}: {summary}", at, {"attempt_id": attempt_id})
            return _heal_attempt(db.execute("SELECT * FROM heal_attempts WHERE id = ?", (attempt_id,)).fetchone())

    def set_root_cause(self, incident_id: int, text: str | None, evidence: Sequence[str]) -> None:
        """Set (or replace) the probable root cause and its evidence lines; allowed in any status."""
        with self._transaction() as db:
            _require(db, incident_id, "open", "recovering", "closed", doing="set the root cause of")
            db.execute(
                "UPDATE incidents SET root_cause = ?, root_cause_evidence = ? WHERE id = ?",
                (text, json.dumps(list(evidence)), incident_id),
            )
            db.execute(
                "UPDATE incident_search SET root_cause = ? WHERE rowid = ?",
                (" ".join([text or "", *evidence]), incident_id),
            )

    def set_recommendation(self, fingerprint: str, text: str | None) -> None:
        """Set the standing recommendation of a failure mode (shown by post-mortems and briefs)."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE patterns SET recommendation = ? WHERE fingerprint = ?", (text, fingerprint))
            if cursor.rowcount == 0:
                raise IncidentStateError(f"no pattern has fingerprint {fingerprint}")

    def mark_recovering(self, incident_id: int, *, at: float, message: str, **data: Any) -> Incident:
        """Recovery is confirmed; the incident waits to see that it holds. Records "recovery_confirmed".

        Only from "open". The engine closes it after a quiet period, or reopens it on a relapse.
        """
        with self._transaction() as db:
            _require(db, incident_id, "open", doing="mark as recovering")
            db.execute("UPDATE incidents SET status = 'recovering' WHERE id = ?", (incident_id,))
            _append(db, incident_id, "recovery_confirmed", message, at, data)
            return _incident(db, incident_id)

    def reopen(self, incident_id: int, *, at: float, reason: str) -> Incident:
        """A failure shortly after recovery: back to "open", recording "reopened" with ``reason``.

        Only from "recovering" (the engine decides what "shortly" means); a closed incident stays
        closed, and a new failure after it opens a new incident.
        """
        with self._transaction() as db:
            _require(db, incident_id, "recovering", doing="reopen")
            db.execute("UPDATE incidents SET status = 'open' WHERE id = ?", (incident_id,))
            _append(db, incident_id, "reopened", reason, at, {})
            return _incident(db, incident_id)

    def close_incident(
        self,
        incident_id: int,
        *,
        at: float,
        recovered: bool,
        note: str,
        postmortem_path: str | Path | None = None,
        detect_seconds: float | None = None,
        heal_seconds: float | None = None,
        recover_seconds: float | None = None,
    ) -> Incident:
        """Close the incident (from "open" or "recovering"), recording "closed" with ``note``.

        ``recovered`` says whether the service came back; ``note`` how that was confirmed ("artifact
        count resumed growth (3 new files in 4 minutes)") or why not. The timings are seconds from the
        failure's start to its detection, from detection to the end of the heal, and from detection to
        confirmed recovery.
        """
        with self._transaction() as db:
            _require(db, incident_id, "open", "recovering", doing="close")
            _append(db, incident_id, "closed", note, at, {"recovered": recovered})
            db.execute(
                "UPDATE incidents SET status = 'closed', closed_at = ?, recovered = ?, recovery_note = ?, "
                "postmortem_path = coalesce(?, postmortem_path), detect_seconds = ?, heal_seconds = ?, "
                "recover_seconds = ? WHERE id = ?",
                (
                    at,
                    int(recovered),
                    note,
                    None if postmortem_path is None else str(postmortem_path),
                    detect_seconds,
                    heal_seconds,
                    recover_seconds,
                    incident_id,
                ),
            )
            return _incident(db, incident_id)

    def index_postmortem(self, incident_id: int, markdown: str, *, path: str | Path | None = None) -> None:
        """Make the post-mortem's text searchable, and record where it was written when ``path`` is given."""
        with self._transaction() as db:
            _require(db, incident_id, "open", "recovering", "closed", doing="index the post-mortem of")
            db.execute("UPDATE incident_search SET postmortem = ? WHERE rowid = ?", (markdown, incident_id))
            if path is not None:
                db.execute("UPDATE incidents SET postmortem_path = ? WHERE id = ?", (str(path), incident_id))

    def prune(self, *, now: float, keep_days: float, keep_max: int) -> PruneResult:
        """Delete closed incidents closed more than ``keep_days`` ago, and all but the newest ``keep_max``
        closed ones, with their timelines, snapshots and heal attempts.

        Incidents in progress are never deleted; patterns (recurrence counts, recommendations) are kept.
        """
        cutoff = now - keep_days * DAY
        with self._transaction() as db:
            rows = db.execute(
                """
                SELECT id, postmortem_path FROM incidents WHERE status = 'closed' AND (
                    closed_at < ? OR id NOT IN (
                        SELECT id FROM incidents WHERE status = 'closed'
                        ORDER BY closed_at DESC, id DESC LIMIT ?))
                """,
                (cutoff, max(0, keep_max)),
            ).fetchall()
            ids = [(row["id"],) for row in rows]
            for table in ("timeline", "snapshots", "heal_attempts"):
                db.executemany(f"DELETE FROM {table} WHERE incident_id = ?", ids)  # noqa: S608 - fixed names
            db.executemany("DELETE FROM incident_search WHERE rowid = ?", ids)
            db.executemany("DELETE FROM incidents WHERE id = ?", ids)
        paths = tuple(row["postmortem_path"] for row in rows if row["postmortem_path"])
        return PruneResult(deleted=len(rows), postmortem_paths=paths)

    # -- reading ------------------------------------------------------------------------------------

    def open_incident_for(self, monitor: str) -> Incident | None:
        """The monitor's incident in progress ("open" or "recovering"), or None."""
        row = self._one("SELECT * FROM incidents WHERE monitor = ? AND status != 'closed'", (monitor,))
        return None if row is None else _incident_from_row(row)

    def get(self, incident_id: int) -> Incident:
        """The incident; :class:`IncidentStateError` if there is none with this id."""
        row = self._one("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        if row is None:
            raise IncidentStateError(f"incident {incident_id} does not exist")
        return _incident_from_row(row)

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        """Every entry of the incident's timeline, oldest first (by ``at``, then in the order appended)."""
        rows = self._all("SELECT * FROM timeline WHERE incident_id = ? ORDER BY at, id", (incident_id,))
        return [_timeline_entry(row) for row in rows]

    def snapshots(self, incident_id: int) -> list[Snapshot]:
        rows = self._all("SELECT * FROM snapshots WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [_snapshot(row) for row in rows]

    def heal_attempts(self, incident_id: int) -> list[HealAttempt]:
        rows = self._all("SELECT * FROM heal_attempts WHERE incident_id = ? ORDER BY id", (incident_id,))
        return [_heal_attempt(row) for row in rows]

    def incidents(
        self,
        *,
        monitor: str | None = None,
        status: IncidentStatus | None = None,
        fingerprint: str | None = None,
        limit: int = 50,
    ) -> list[Incident]:
        """Incidents, newest first, optionally only one monitor's, one status or one fingerprint."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("monitor", monitor), ("status", status), ("fingerprint", fingerprint)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(f"SELECT * FROM incidents{where} ORDER BY opened_at DESC, id DESC LIMIT ?", (*params, limit))  # noqa: S608
        return [_incident_from_row(row) for row in rows]

    def patterns(self, monitor: str | None = None) -> list[Pattern]:
        """Failure modes seen, most frequent first (then the most recent)."""
        where, params = (" WHERE monitor = ?", (monitor,)) if monitor is not None else ("", ())
        rows = self._all(f"SELECT * FROM patterns{where} ORDER BY occurrences DESC, last_seen DESC", params)  # noqa: S608
        return [_pattern(row) for row in rows]

    def pattern(self, fingerprint: str) -> Pattern | None:
        row = self._one("SELECT * FROM patterns WHERE fingerprint = ?", (fingerprint,))
        return None if row is None else _pattern(row)

    def prior_matching(
        self, fingerprint: str, *, before: float, within_days: float = 90, exclude_id: int | None = None
    ) -> int:
        """How many incidents with this fingerprint opened in the ``within_days`` days before ``before``
        (``exclude_id``, typically the incident being written up, is not counted)."""
        row = self._one(
            "SELECT count(*) FROM incidents WHERE fingerprint = ? AND opened_at < ? AND opened_at >= ? AND id IS NOT ?",
            (fingerprint, before, before - within_days * DAY, exclude_id),
        )
        assert row is not None
        return int(row[0])

    def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """Incidents matching the words of ``query``, best first (bm25).

        The query is plain words, never search syntax: ``"rate limit``, ``AND OR (`` and the like are
        taken as the words they contain. Incidents with all the words come first; when none has them
        all, those with any of them. An empty query finds nothing.
        """
        words = _SEARCH_WORD.findall(query)
        if not words:
            return []
        quoted = ['"' + word.replace('"', '""') + '"' for word in words]
        hits = self._search(" ".join(quoted), limit)
        meaningful = [q for q, word in zip(quoted, words, strict=True) if word.lower() not in _STOPWORDS]
        if not hits and len(meaningful) > 1:
            hits = self._search(" OR ".join(meaningful), limit)
        return hits

    def _search(self, expression: str, limit: int) -> list[SearchHit]:
        rows = self._all(
            f"""
            SELECT incidents.id, incidents.monitor, incidents.opened_at,
                   snippet(incident_search, -1, '[', ']', '…', 12) AS snippet,
                   bm25(incident_search, {_SEARCH_WEIGHTS}) AS rank
            FROM incident_search JOIN incidents ON incidents.id = incident_search.rowid
            WHERE incident_search MATCH ?
            ORDER BY rank, incidents.opened_at DESC LIMIT ?
            """,  # noqa: S608 - the weights are a constant
            (expression, limit),
        )
        return [
            SearchHit(
                incident_id=row["id"],
                monitor=row["monitor"],
                opened_at=row["opened_at"],
                snippet=" ".join(row["snippet"].split()),
                score=-float(row["rank"]),
            )
            for row in rows
        ]

    # -- plumbing -----------------------------------------------------------------------------------

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite.transaction(self._db, what="incident database", path=self.path)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        try:
            return cast("sqlite3.Row | None", self._db.execute(sql, params).fetchone())
        except sqlite3.Error as exc:
            raise StoreError(f"incident database {self.path}: read failed: {exc}") from exc

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"incident database {self.path}: read failed: {exc}") from exc


def _require(db: sqlite3.Connection, incident_id: int, *allowed: IncidentStatus, doing: str) -> None:
    row = db.execute("SELECT status FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise IncidentStateError(f"cannot {doing} incident {incident_id}: it does not exist")
    if row["status"] not in allowed:
        if row["status"] == "closed":
            raise IncidentStateError(
                f"cannot {doing} incident {incident_id}: it is closed, and a closed incident never absorbs new events"
            )
        raise IncidentStateError(
            f"cannot {doing} incident {incident_id}: it is {row['status']}, not {' or '.join(allowed)}"
        )


def _append(
    db: sqlite3.Connection, incident_id: int, kind: str, message: str, at: float, data: Mapping[str, Any]
) -> TimelineEntry:
    if kind not in TIMELINE_KINDS:
        raise ValueError(f"unknown timeline kind {kind!r}; known: {', '.join(sorted(TIMELINE_KINDS))}")
    encoded = json.dumps(dict(data), default=str, sort_keys=True)
    cursor = db.execute(
        "INSERT INTO timeline (incident_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
        (incident_id, at, kind, message, encoded),
    )
    if kind not in _UNSEARCHED_KINDS:
        db.execute(
            "UPDATE incident_search SET timeline = timeline || ? WHERE rowid = ?",
            (message + "\n", incident_id),
        )
    return TimelineEntry(_lastrowid(cursor), incident_id, at, kind, message, json.loads(encoded))


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    assert rowid is not None
    return rowid


def _incident(db: sqlite3.Connection, incident_id: int) -> Incident:
    return _incident_from_row(db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone())


def _incident_from_row(row: sqlite3.Row) -> Incident:
    return Incident(
        id=row["id"],
        monitor=row["monitor"],
        status=row["status"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        fingerprint=row["fingerprint"],
        fingerprint_version=row["fingerprint_version"],
        signature=row["signature"],
        check_type=row["check_type"],
        failure_kind=row["failure_kind"],
        reason=row["reason"],
        root_cause=row["root_cause"],
        root_cause_evidence=tuple(json.loads(row["root_cause_evidence"])),
        recovered=None if row["recovered"] is None else bool(row["recovered"]),
        recovery_note=row["recovery_note"],
        upstream_incident_id=row["upstream_incident_id"],
        postmortem_path=row["postmortem_path"],
        detect_seconds=row["detect_seconds"],
        heal_seconds=row["heal_seconds"],
        recover_seconds=row["recover_seconds"],
    )


def _timeline_entry(row: sqlite3.Row) -> TimelineEntry:
    return TimelineEntry(row["id"], row["incident_id"], row["at"], row["kind"], row["message"], json.loads(row["data"]))


def _snapshot(row: sqlite3.Row) -> Snapshot:
    return Snapshot(row["id"], row["incident_id"], row["taken_at"], json.loads(row["data"]), row["size"], row["note"])


def _heal_attempt(row: sqlite3.Row) -> HealAttempt:
    return HealAttempt(
        id=row["id"],
        incident_id=row["incident_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        action=row["action"],
        step=row["step"],
        ok=None if row["ok"] is None else bool(row["ok"]),
        summary=row["summary"],
    )


def _pattern(row: sqlite3.Row) -> Pattern:
    return Pattern(
        fingerprint=row["fingerprint"],
        monitor=row["monitor"],
        failure_kind=row["failure_kind"],
        signature=row["signature"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        occurrences=row["occurrences"],
        recommendation=row["recommendation"],
    )


def _kib(size: int) -> str:
    return f"{size} bytes" if size < 1024 else f"{size / 1024:.1f} KiB"


# Clipping steps for an oversized snapshot: strings to their last N characters (a log tail's newest
# lines matter most), lists to their last N items.
_CLIP_STEPS = ((131072, 5000), (32768, 1000), (8192, 200), (2048, 50), (512, 20), (128, 5))


def _bounded_json(data: Mapping[str, Any], limit: int) -> tuple[str, str | None]:
    """``data`` as JSON of at most ``limit`` bytes, and a note saying what was cut (None if nothing)."""
    text = json.dumps(dict(data), default=str, sort_keys=True)
    original = len(text.encode())
    if original <= limit:
        return text, None
    plain = json.loads(text)  # anything json could not encode is a string now
    for max_chars, max_items in _CLIP_STEPS:
        clipped = json.dumps(_clip(plain, max_chars, max_items), sort_keys=True)
        if len(clipped.encode()) <= limit:
            note = (
                f"truncated from {_kib(original)} to fit {_kib(limit)}: strings longer than {max_chars} "
                f"characters and lists longer than {max_items} items keep only their ends"
            )
            return clipped, note
    note = f"dropped: {_kib(original)} exceeds the {_kib(limit)} limit even when clipped; only its keys are kept"
    keys = [str(key) for key in plain][:1000] if isinstance(plain, dict) else []
    return json.dumps({"truncated": True, "keys": keys}), note


def _clip(value: Any, max_chars: int, max_items: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= max_chars else "…" + value[-max_chars:]
    if isinstance(value, list):
        kept = value if len(value) <= max_items else value[-max_items:]
        return [_clip(item, max_chars, max_items) for item in kept]
    if isinstance(value, dict):
        return {key: _clip(item, max_chars, max_items) for key, item in value.items()}
    return value
