"""The durable outbox: every event is committed here before anything is sent, so a notification survives
a channel that is down, a Horus killed with -9 and a power cut.

``<state_dir>/notify.db`` (SQLite, WAL) holds one row per event and one *delivery* per event and channel:

    pending --mark_sent--> sent
       |  \\--mark_failed--> pending (attempts + 1, next_attempt_at later)
       \\--mark_dead--> dead (given up: permanent error, failing too long, channel removed)

A failed attempt also holds the whole channel until its retry: an event queued meanwhile waits and
leaves with the older ones, so a channel never gets "recovered" before the "down" it follows.

Each :class:`Outbox` owns one connection and is used from one thread; the daemon's writer and the delivery
worker each open their own. WAL lets one read while the other writes, and ``busy_timeout`` makes a writer
wait for the other rather than fail.

An event that cannot be written (the disk is full) is not dropped: :meth:`Outbox.enqueue` keeps it in
memory, in order, up to ``MAX_UNWRITTEN`` events, and writes it as soon as the disk takes it again
(retried every ``UNWRITTEN_RETRY_SECONDS``, and before every later event).

A heal whose event never reached the outbox (Horus was killed between the heal and the write) is found
again from the heal log at the next start: :func:`lost_heal_notices`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horus.errors import StoreError
from horus.log import get_logger
from horus.notify.events import PROBLEM_KINDS, Event, EventKind
from horus.store import sqlite
from horus.store.state import HealRecord

__all__ = [
    "OUTBOX_NAME",
    "REDERIVE_WITHIN_SECONDS",
    "ChannelHealth",
    "HealNotice",
    "Outbox",
    "lost_heal_notices",
    "on_late_write",
]

log = get_logger("horus.notify")

OUTBOX_NAME = "notify.db"

_DAY = 86400.0
# Events kept in memory while they cannot be written; past this the oldest go (and a log line says so),
# so a disk full for days cannot grow Horus without bound.
MAX_UNWRITTEN = 10_000
UNWRITTEN_RETRY_SECONDS = 2.0
# At start, heals this recent whose event is not in the outbox are announced (see lost_heal_notices);
# older ones are history, not news.
REDERIVE_WITHIN_SECONDS = 24 * 3600.0

# Who wants to know that events were written late (the delivery worker of the same outbox file, which
# otherwise would look again only at its next housekeeping).
_late_write_listeners: dict[Path, list[Callable[[], None]]] = {}
_listeners_lock = threading.Lock()


def on_late_write(path: Path, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (from any thread) whenever events kept in memory are written to the outbox at
    ``path``. Returns a function that removes it."""
    key = path.resolve()
    with _listeners_lock:
        _late_write_listeners.setdefault(key, []).append(callback)

    def remove() -> None:
        with _listeners_lock:
            callbacks = _late_write_listeners.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                _late_write_listeners.pop(key, None)

    return remove


@dataclass(frozen=True)
class _Unwritten:
    event: Event
    channels: list[str]
    not_before: float
    only_where_announced: bool


# Each entry moves the schema one version forward; never edit a released entry, append a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        severity    INTEGER NOT NULL,
        monitor     TEXT,
        created_at  REAL NOT NULL,
        payload     TEXT NOT NULL
    );
    CREATE INDEX events_by_monitor ON events (monitor, kind, created_at);
    CREATE INDEX events_by_time ON events (created_at);
    CREATE TABLE deliveries (
        event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        channel          TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  REAL NOT NULL,
        last_error       TEXT,
        sent_at          REAL,
        dead_at          REAL,
        PRIMARY KEY (event_id, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (status, channel, next_attempt_at);
    CREATE TABLE channels (
        channel               TEXT PRIMARY KEY,
        consecutive_failures  INTEGER NOT NULL DEFAULT 0,
        last_error            TEXT,
        last_sent_at          REAL,
        given_up              INTEGER NOT NULL DEFAULT 0,
        -- After a failed attempt nothing goes to the channel before this, so messages stay in order.
        retry_at              REAL
    );
    """,
)


@dataclass(frozen=True)
class ChannelHealth:
    """How one channel is doing, for ``horus status`` and the digest. Never holds a URL."""

    channel: str
    pending: int
    oldest_pending_age: float | None
    dead_in_last_day: int
    last_error: str | None
    last_sent_at: float | None
    consecutive_failures: int
    # The last outcome on this channel was giving up on a delivery, and nothing was sent since.
    given_up: bool


class Outbox:
    """Events and their deliveries in ``<state_dir>/notify.db``. One instance per thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        # The retry timer writes on its own thread: every use of the connection that writes holds this.
        self._lock = threading.RLock()
        self._unwritten: deque[_Unwritten] = deque()
        self._retry: threading.Timer | None = None
        self._closed = False

    @classmethod
    def open(cls, state_dir: Path) -> Outbox:
        path = state_dir / OUTBOX_NAME
        return cls(sqlite.open_migrated(path, _MIGRATIONS, what="notification outbox"), path)

    @classmethod
    def check(cls, state_dir: Path) -> sqlite.Damage | None:
        """At the daemon's start: move ``<state_dir>/notify.db`` aside when it is damaged (see
        :func:`horus.store.sqlite.move_aside_if_damaged`), so that :meth:`open` starts a new one."""
        return sqlite.move_aside_if_damaged(state_dir / OUTBOX_NAME, _MIGRATIONS, what="notification outbox")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._retry is not None:
                self._retry.cancel()
            if self._unwritten:
                self._write_unwritten()
            if self._unwritten:
                first = self._unwritten[0].event
                log.error(
                    "notify.dropped",
                    events=len(self._unwritten),
                    oldest=first.title,
                    why="they could not be written before Horus stopped (the disk is still full?)",
                )
                self._unwritten.clear()
            self._db.close()

    @property
    def unwritten(self) -> int:
        """How many events wait in memory because they could not be written."""
        return len(self._unwritten)

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return _locked(self._lock, sqlite.transaction(self._db, what="notification outbox", path=self.path))

    def _read(self, query: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._db.execute(query, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"notification outbox read failed: {exc}") from exc

    # -- writing -------------------------------------------------------------------------------------

    def enqueue(
        self, event: Event, channels: list[str], *, not_before: float, only_where_announced: bool = False
    ) -> list[str]:
        """Store ``event`` and a pending delivery per channel, due at ``not_before``, in one commit.

        Idempotent on ``event.id``: enqueueing the same event again creates nothing. With
        ``only_where_announced`` (for ``recovered``), a channel gets the event only if it holds a delivery,
        sent or still going out, of a problem event about the same monitor since its last ``recovered``
        for that monitor. Returns the channels a delivery was created for.

        When the event cannot be written (a full disk), it is kept in memory and written later, after
        the events kept before it; then nothing is returned yet.
        """
        item = _Unwritten(event, list(channels), not_before, only_where_announced)
        with self._lock:
            if self._unwritten:
                self._write_unwritten()
            if self._unwritten:  # still failing: this one waits behind them, so order holds
                self._keep(item, None)
                return []
            try:
                return self._enqueue(item)
            except StoreError as exc:
                self._keep(item, exc)
                return []

    def _keep(self, item: _Unwritten, error: StoreError | None) -> None:
        if error is not None:
            log.error(
                "notify.write_deferred",
                kind=str(item.event.kind),
                monitor=item.event.monitor,
                error=str(error),
                kept=len(self._unwritten) + 1,
                note="kept in memory, written when the disk takes it",
            )
        if len(self._unwritten) >= MAX_UNWRITTEN:
            lost = self._unwritten.popleft().event
            log.error(
                "notify.dropped", kind=str(lost.kind), monitor=lost.monitor, why=f"over {MAX_UNWRITTEN} unwritten"
            )
        self._unwritten.append(item)
        if self._retry is None and not self._closed:
            self._retry = threading.Timer(UNWRITTEN_RETRY_SECONDS, self._retry_unwritten)
            self._retry.name = "horus-outbox-retry"
            self._retry.daemon = True
            self._retry.start()

    def _retry_unwritten(self) -> None:
        with self._lock:
            self._retry = None
            if self._closed:
                return
            self._write_unwritten()
            if self._unwritten and self._retry is None:
                self._retry = threading.Timer(UNWRITTEN_RETRY_SECONDS, self._retry_unwritten)
                self._retry.name = "horus-outbox-retry"
                self._retry.daemon = True
                self._retry.start()

    def _write_unwritten(self) -> None:
        """Write the kept events, oldest first, until one fails again."""
        written = 0
        while self._unwritten:
            try:
                self._enqueue(self._unwritten[0])
            except StoreError:
                break
            self._unwritten.popleft()
            written += 1
        if written:
            log.warning("notify.written_late", events=written, still_unwritten=len(self._unwritten))
            with _listeners_lock:
                callbacks = list(_late_write_listeners.get(self.path.resolve(), ()))
            for callback in callbacks:
                callback()

    def _enqueue(self, item: _Unwritten) -> list[str]:
        event, not_before, only_where_announced = item.event, item.not_before, item.only_where_announced
        channels = item.channels
        created: list[str] = []
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO events (id, kind, severity, monitor, created_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    str(event.kind),
                    int(event.severity),
                    event.monitor,
                    event.created_at,
                    json.dumps(event.as_dict(), default=str),
                ),
            )
            for channel in dict.fromkeys(channels):
                if only_where_announced and not _announced(db, channel, event.monitor):
                    continue
                cursor = db.execute(
                    "INSERT OR IGNORE INTO deliveries (event_id, channel, status, next_attempt_at) "
                    "VALUES (?, ?, 'pending', ?)",
                    (event.id, channel, not_before),
                )
                if cursor.rowcount:
                    created.append(channel)
        return created

    def mark_sent(self, channel: str, event_ids: Collection[str], now: float) -> None:
        """The channel took these events. Also records a send that succeeded after it was given up on."""
        with self._transaction() as db:
            _update_many(
                db,
                "UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL "
                "WHERE channel = ? AND status != 'sent' AND event_id IN ({})",
                (now, channel),
                event_ids,
            )
            _upsert_channel(db, channel)
            db.execute(
                "UPDATE channels SET consecutive_failures = 0, last_sent_at = ?, given_up = 0, retry_at = NULL "
                "WHERE channel = ?",
                (now, channel),
            )

    def mark_failed(self, channel: str, event_ids: Collection[str], error: str, retry_at: float) -> None:
        """One attempt to send these events failed; the channel gets nothing more before ``retry_at``."""
        with self._transaction() as db:
            _update_many(
                db,
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                "WHERE channel = ? AND status = 'pending' AND event_id IN ({})",
                (error, retry_at, channel),
                event_ids,
            )
            _upsert_channel(db, channel)
            db.execute(
                "UPDATE channels SET consecutive_failures = consecutive_failures + 1, last_error = ?, retry_at = ? "
                "WHERE channel = ?",
                (error, retry_at, channel),
            )

    def mark_dead(self, channel: str, event_ids: Collection[str], error: str, now: float | None = None) -> None:
        """Give up on these deliveries: they are kept (for ``horus status``) and never sent again.
        ``now`` (default: the wall clock) dates it, for "given up in the last day"."""
        with self._transaction() as db:
            _update_many(
                db,
                "UPDATE deliveries SET status = 'dead', last_error = ?, dead_at = ? "
                "WHERE channel = ? AND status = 'pending' AND event_id IN ({})",
                (error, time.time() if now is None else now, channel),
                event_ids,
            )
            _upsert_channel(db, channel)
            db.execute("UPDATE channels SET given_up = 1, last_error = ? WHERE channel = ?", (error, channel))

    def abandon_channels_not_in(self, names: Collection[str], now: float) -> dict[str, int]:
        """Give up on pending deliveries to channels that are no longer configured. Returns how many, per
        channel."""
        error = "channel no longer configured"
        with self._transaction() as db:
            placeholders = ", ".join("?" * len(names))
            rows = db.execute(
                f"SELECT channel, COUNT(*) AS n FROM deliveries WHERE status = 'pending' "  # noqa: S608
                f"AND channel NOT IN ({placeholders}) GROUP BY channel",
                tuple(names),
            ).fetchall()
            for row in rows:
                db.execute(
                    "UPDATE deliveries SET status = 'dead', last_error = ?, dead_at = ? "
                    "WHERE status = 'pending' AND channel = ?",
                    (error, now, row["channel"]),
                )
                _upsert_channel(db, row["channel"])
                db.execute(
                    "UPDATE channels SET given_up = 1, last_error = ? WHERE channel = ?", (error, row["channel"])
                )
        return {row["channel"]: row["n"] for row in rows}

    def reschedule_later_than(self, latest: float) -> int:
        """Bring pending deliveries due after ``latest`` forward to it. Times here are wall-clock times,
        so after the wall clock jumps back, retries would otherwise wait out the jump too."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE status = 'pending' AND next_attempt_at > ?",
                (latest, latest),
            )
            db.execute("UPDATE channels SET retry_at = ? WHERE retry_at > ?", (latest, latest))
        return cursor.rowcount

    def prune(self, older_than: float) -> int:
        """Forget sent and dead deliveries of events created before ``older_than``, and those events once
        nothing is pending for them. Pending deliveries are never pruned. Returns the events removed."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM deliveries WHERE status IN ('sent', 'dead') "
                "AND event_id IN (SELECT id FROM events WHERE created_at < ?)",
                (older_than,),
            )
            cursor = db.execute(
                "DELETE FROM events WHERE created_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                (older_than,),
            )
        return cursor.rowcount

    # -- reading -------------------------------------------------------------------------------------

    def due(
        self, channel: str, now: float, *, ride_along: float = 0.0, limit: int | None = None
    ) -> list[tuple[Event, int]]:
        """Pending deliveries of ``channel`` due at ``now``, oldest event first, with their attempts so far;
        none while the channel waits for a retry.

        When anything is due, pending deliveries due within ``ride_along`` seconds come too, so events of
        one grouping window leave in one message even though each became due a moment after the first.
        """
        if not self._read(
            "SELECT 1 FROM deliveries WHERE status = 'pending' AND channel = ? AND next_attempt_at <= ? "
            "AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.channel = ? AND c.retry_at > ?) LIMIT 1",
            (channel, now, channel, now),
        ):
            return []
        rows = self._read(
            "SELECT e.payload, d.attempts FROM deliveries d JOIN events e ON e.id = d.event_id "
            "WHERE d.status = 'pending' AND d.channel = ? AND d.next_attempt_at <= ? "
            "ORDER BY e.created_at, e.rowid LIMIT ?",
            (channel, now + ride_along, -1 if limit is None else limit),
        )
        return [(Event.from_dict(json.loads(row["payload"])), row["attempts"]) for row in rows]

    def next_due_at(self, channels: Collection[str] | None = None) -> float | None:
        """When :meth:`due` next returns something, over all channels or only over ``channels``."""
        where = ""
        params: tuple[str, ...] = ()
        if channels is not None:
            if not channels:
                return None
            where = f"AND channel IN ({', '.join('?' * len(channels))})"
            params = tuple(channels)
        (row,) = self._read(
            "SELECT MIN(MAX(p.first_due, COALESCE(c.retry_at, p.first_due))) FROM ("  # noqa: S608
            f"  SELECT channel, MIN(next_attempt_at) AS first_due FROM deliveries WHERE status = 'pending' {where}"
            "   GROUP BY channel"
            ") p LEFT JOIN channels c ON c.channel = p.channel",
            params,
        )
        return None if row[0] is None else float(row[0])

    def health(self, now: float, channels: Iterable[str] = ()) -> list[ChannelHealth]:
        """Every channel the outbox knows, plus ``channels`` even if nothing was queued for them yet."""
        pending = {
            row["channel"]: row
            for row in self._read(
                "SELECT d.channel, COUNT(*) AS n, MIN(e.created_at) AS oldest FROM deliveries d "
                "JOIN events e ON e.id = d.event_id WHERE d.status = 'pending' GROUP BY d.channel"
            )
        }
        dead = {
            row["channel"]: row["n"]
            for row in self._read(
                "SELECT channel, COUNT(*) AS n FROM deliveries WHERE status = 'dead' AND dead_at >= ? GROUP BY channel",
                (now - _DAY,),
            )
        }
        known = {row["channel"]: row for row in self._read("SELECT * FROM channels")}
        names = sorted({*pending, *dead, *known, *channels})
        result = []
        for name in names:
            waiting = pending.get(name)
            state = known.get(name)
            result.append(
                ChannelHealth(
                    channel=name,
                    pending=waiting["n"] if waiting else 0,
                    oldest_pending_age=max(0.0, now - waiting["oldest"]) if waiting else None,
                    dead_in_last_day=dead.get(name, 0),
                    last_error=state["last_error"] if state else None,
                    last_sent_at=state["last_sent_at"] if state else None,
                    consecutive_failures=state["consecutive_failures"] if state else 0,
                    given_up=bool(state["given_up"]) if state else False,
                )
            )
        return result

    def recent_events(self, since: float) -> list[tuple[Event, dict[str, str]]]:
        """Events created at or after ``since``, oldest first, each with its delivery status per channel."""
        rows = self._read(
            "SELECT e.id, e.payload, d.channel, d.status FROM events e "
            "LEFT JOIN deliveries d ON d.event_id = e.id WHERE e.created_at >= ? "
            "ORDER BY e.created_at, e.rowid, d.channel",
            (since,),
        )
        result: dict[str, tuple[Event, dict[str, str]]] = {}
        for row in rows:
            if row["id"] not in result:
                result[row["id"]] = (Event.from_dict(json.loads(row["payload"])), {})
            if row["channel"] is not None:
                result[row["id"]][1][row["channel"]] = row["status"]
        return list(result.values())

    def heals_with_event(self, heals: Sequence[HealRecord]) -> set[int]:
        """Which of ``heals`` have an event in the outbox: one about the same monitor, created after the
        heal started, whose details name the heal's id."""
        if not heals:
            return set()
        rows = self._read(
            "SELECT monitor, created_at, json_extract(payload, '$.details.heal_id') AS heal_id FROM events "
            "WHERE created_at >= ? AND json_extract(payload, '$.details.heal_id') IS NOT NULL",
            (min(heal.started_at for heal in heals),),
        )
        found = {(row["heal_id"], row["monitor"]): row["created_at"] for row in rows}
        return {
            heal.id
            for heal in heals
            if (heal.id, heal.monitor) in found and found[(heal.id, heal.monitor)] >= heal.started_at
        }


@dataclass(frozen=True)
class HealNotice:
    """The notification a heal should have had, re-derived from the heal log."""

    heal_id: int
    kind: EventKind
    monitor: str
    title: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def lost_heal_notices(state_dir: Path, heals: Sequence[HealRecord]) -> list[HealNotice]:
    """The notifications of ``heals`` (from :meth:`StateStore.heals_to_announce`) that never reached the
    outbox: Horus was killed (or the machine stopped) after the heal and before its event was written.
    A heal that had not finished is told as interrupted, with its outcome unknown."""
    if not heals:
        return []
    with closing(Outbox.open(state_dir)) as outbox:
        written = outbox.heals_with_event(heals)
    return [_notice(heal) for heal in heals if heal.id not in written]


def _notice(heal: HealRecord) -> HealNotice:
    when = dt.datetime.fromtimestamp(heal.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    late = f" (Horus stopped before it could send this; found in its heal log, heal started {when})"
    facts: dict[str, Any] = {
        "reason": heal.reason,
        "action": heal.action,
        "summary": heal.summary,
        "heal_id": heal.id,
        "heal_started_at": heal.started_at,
        "rederived": True,
    }
    name, action = heal.monitor, heal.action
    if heal.finished_at is None:
        facts["summary"] = "interrupted: Horus stopped during the heal"
        return HealNotice(
            heal.id,
            EventKind.HEAL_FAILED,
            name,
            f"{name}: heal interrupted ({action})",
            f"Why: {heal.reason}. Horus stopped while {action} ran (killed, crashed or the machine went down), "
            f"so how it ended is not known.{late}",
            facts,
        )
    if heal.ok:
        return HealNotice(
            heal.id,
            EventKind.HEALED,
            name,
            f"{name} healed ({action})",
            f"Why: {heal.reason}. Done: {heal.summary}.{late}",
            facts,
        )
    if heal.details.get("refused"):
        return HealNotice(
            heal.id,
            EventKind.HEAL_REFUSED,
            name,
            f"{name}: heal refused ({action})",
            f"Why it was due: {heal.reason}. Nothing was done: {heal.summary}.{late}",
            facts,
        )
    return HealNotice(
        heal.id,
        EventKind.HEAL_FAILED,
        name,
        f"{name}: heal failed ({action})",
        f"Why: {heal.reason}. Tried {action}: {heal.summary}.{late}",
        facts,
    )


class _locked(AbstractContextManager[sqlite3.Connection]):
    """A transaction taken under the outbox's lock (the retry timer shares the connection)."""

    def __init__(self, lock: threading.RLock, inner: AbstractContextManager[sqlite3.Connection]) -> None:
        self._lock, self._inner = lock, inner

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            return self._inner.__enter__()
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: Any) -> bool | None:
        try:
            return self._inner.__exit__(*exc)
        finally:
            self._lock.release()


def _announced(db: sqlite3.Connection, channel: str, monitor: str | None) -> bool:
    """Whether ``channel`` was told (or is being told) of a problem with ``monitor`` since it last heard
    that the monitor recovered."""
    problem_kinds = sorted(str(kind) for kind in PROBLEM_KINDS)
    row = db.execute(
        f"""
        SELECT 1 FROM deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.channel = ? AND d.status != 'dead' AND e.monitor IS ?
          AND e.kind IN ({", ".join("?" * len(problem_kinds))})
          AND e.created_at > COALESCE((
              SELECT MAX(r.created_at) FROM deliveries rd JOIN events r ON r.id = rd.event_id
              WHERE rd.channel = ? AND r.monitor IS ? AND r.kind = ?
          ), -1e300)
        LIMIT 1
        """,  # noqa: S608 - only placeholders are formatted in
        (channel, monitor, *problem_kinds, channel, monitor, str(EventKind.RECOVERED)),
    ).fetchone()
    return row is not None


def _update_many(
    db: sqlite3.Connection, statement: str, params: tuple[object, ...], event_ids: Collection[str]
) -> None:
    ids = list(dict.fromkeys(event_ids))
    # SQLite limits the number of parameters in one statement; 500 ids per statement stays well below it.
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.execute(statement.format(", ".join("?" * len(chunk))), (*params, *chunk))


def _upsert_channel(db: sqlite3.Connection, channel: str) -> None:
    db.execute("INSERT OR IGNORE INTO channels (channel) VALUES (?)", (channel,))
