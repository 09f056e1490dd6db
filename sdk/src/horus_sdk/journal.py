"""The order journal: what the bot intended, sent and got back, and the state it must not forget, in one
SQLite file (WAL, ``synchronous=FULL``) that survives a kill -9 and a power cut.

Every intent is committed *before* its order is sent, so after any crash the journal lists every order that
may exist at the exchange; :func:`horus_sdk.orders.submit` is the protocol around it::

    journal = OrderJournal("/srv/bot/orders.db")      # a new epoch: ids of this run never repeat an old one
    entry = journal.intend("BTC-USD", "buy", 0.1)     # INTENT, committed; entry.client_order_id "h3-1k"
    journal.mark_sent(entry.client_order_id)          # committed before the bytes leave
    ...
    with journal.transaction():                       # several changes, one commit
        journal.record_fill(cid, 0.1, 50000.0)
        journal.put_state("positions", {"BTC-USD": 0.1})

An order's life (:class:`OrderState`)::

    INTENT --> SENT --> ACKED --> PARTIALLY_FILLED --> FILLED
      |         |        |  \\            |
      |         |        |   +------------+--> CANCELED
      |         +--------+--------------------> REJECTED
      |         +---> UNRESOLVED (sent, fate unknown) --> any state the exchange reports
      +--> REJECTED (the gate refused it) or CANCELED (never sent)

INTENT, SENT and UNRESOLVED are *in doubt*: a restart resolves them before it sends anything new
(:func:`horus_sdk.orders.resolve_in_doubt`). FILLED, REJECTED and CANCELED are final: nothing leaves them
except a fill correction (``record_fill`` with a larger cumulative quantity, or a new average price).
A SENT order is never marked sent again: that is how a blind resend is refused at the journal itself.

Client order ids are ``"h" + base36(epoch) + "-" + base36(counter)``: the epoch is a counter bumped and
committed every time the journal is opened, the counter is persisted with every id, so no id is ever
reused, within a run or across restarts. They are at most 32 of ``A-Za-z0-9_-``, which every major exchange
accepts.

Errors: :class:`JournalError` (an ``OSError``) when the file is damaged, not a journal, or cannot be
written; a journal is never silently replaced by a new empty one. ``ValueError`` for an illegal transition,
``KeyError`` for an unknown client order id. Thread-safe: one lock around every call.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeGuard

__all__ = [
    "DEFAULT_ID_PREFIX",
    "FINAL_STATES",
    "IN_DOUBT_STATES",
    "OPEN_STATES",
    "JournalEntry",
    "JournalError",
    "JournalEvent",
    "OrderJournal",
    "OrderState",
    "epoch_of_client_order_id",
    "format_client_order_id",
]

FORMAT = "horus-order-journal"
VERSION = 1
CLIENT_ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
DEFAULT_ID_PREFIX = "h"
_ID_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,7}")
_DEFAULT_ID = re.compile(r"h([0-9A-Za-z]{1,12})-([0-9A-Za-z]{1,19})")


def format_client_order_id(prefix: str, epoch: int, counter: int) -> str:
    """``h<epoch>-<counter>`` (base 36) with the default prefix, ``<prefix>_<epoch>-<counter>`` with another.

    Two services that trade on one account need distinct prefixes: each takes the other's ids for its own
    otherwise, and a reconcile cancels the other's open orders as stale. The ``_`` after a chosen prefix keeps
    every two prefixes apart (``bot_1-2`` is never ``bo``'s), and the default format has none.
    """
    head = prefix if prefix == DEFAULT_ID_PREFIX else f"{prefix}_"
    return f"{head}{_base36(epoch)}-{_base36(counter)}"


def epoch_of_client_order_id(client_order_id: str, prefix: str = DEFAULT_ID_PREFIX) -> int | None:
    """The epoch in one of this service's client order ids (see :func:`format_client_order_id`), or None
    when the id is not one of its own."""
    if not isinstance(client_order_id, str):
        return None
    if prefix == DEFAULT_ID_PREFIX:
        match = _DEFAULT_ID.fullmatch(client_order_id)
    elif client_order_id.startswith(f"{prefix}_"):
        match = _DEFAULT_ID.fullmatch("h" + client_order_id[len(prefix) + 1 :])
    else:
        match = None
    return int(match.group(1), 36) if match else None


"""What every major exchange accepts as a client order id."""
_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_SECONDS = 10.0
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class JournalError(OSError):
    """The journal cannot be used: its file is damaged, is not an order journal, or cannot be written.

    An ``OSError``, so a bot that already refuses to start when its files cannot be opened refuses this
    too. ``filename`` is the journal's path."""

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.filename = os.fspath(path)

    def __str__(self) -> str:
        return str(self.args[0])


class OrderState(enum.StrEnum):
    INTENT = "intent"  # written and committed; may or may not have been sent
    SENT = "sent"  # about to be sent, or sent: it may exist at the exchange
    ACKED = "acked"  # the exchange has it, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"  # by the exchange, or by the gate before it was sent
    CANCELED = "canceled"
    UNRESOLVED = "unresolved"  # sent, and no answer or lookup has told what became of it


FINAL_STATES = frozenset({OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELED})
OPEN_STATES = frozenset({OrderState.ACKED, OrderState.PARTIALLY_FILLED})
"""Working at the exchange."""
IN_DOUBT_STATES = frozenset({OrderState.INTENT, OrderState.SENT, OrderState.UNRESOLVED})
"""What a restart must resolve before it sends anything new."""

_S = OrderState
_NEXT: dict[OrderState, frozenset[OrderState]] = {
    _S.INTENT: frozenset(set(_S) - {_S.INTENT}),
    _S.SENT: frozenset({_S.ACKED, _S.PARTIALLY_FILLED, _S.FILLED, _S.REJECTED, _S.CANCELED, _S.UNRESOLVED}),
    _S.UNRESOLVED: frozenset({_S.ACKED, _S.PARTIALLY_FILLED, _S.FILLED, _S.REJECTED, _S.CANCELED, _S.UNRESOLVED}),
    _S.ACKED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.REJECTED, _S.CANCELED, _S.UNRESOLVED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.UNRESOLVED}),
    _S.FILLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.CANCELED: frozenset(),
}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    type TEXT NOT NULL,
    price REAL,
    state TEXT NOT NULL,
    filled_quantity REAL NOT NULL DEFAULT 0,
    avg_price REAL,
    exchange_order_id TEXT,
    reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    lookups INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX orders_by_state ON orders (state);
CREATE INDEX orders_by_epoch ON orders (epoch);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX events_by_order ON events (client_order_id);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE checkpoints (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID;
"""
_SELECT_ORDERS = (
    "SELECT client_order_id, epoch, symbol, side, quantity, type, price, state, filled_quantity, avg_price, "
    "exchange_order_id, reason, created_at, updated_at, lookups FROM orders"
)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One order as the journal knows it (a snapshot: the journal changes, this does not)."""

    client_order_id: str
    epoch: int
    symbol: str
    side: str
    quantity: float
    type: str
    price: float | None
    state: OrderState
    filled_quantity: float
    avg_price: float | None
    exchange_order_id: str | None
    reason: str | None
    created_at: float
    updated_at: float
    lookups: int

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def in_doubt(self) -> bool:
        return self.state in IN_DOUBT_STATES


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One change in an order's life, oldest first in ``OrderJournal.events(cid)``."""

    client_order_id: str
    at: float
    state: OrderState
    detail: dict[str, Any]


class OrderJournal:
    """The journal in the SQLite file at ``path``, created (0o600) if missing; opening it starts a new epoch.

    Raises :class:`JournalError` when the file is there but is not a whole order journal. ``clock``: wall
    time, for ``created_at``/``updated_at`` and the events. Use as a context manager, or ``close()`` it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        id_prefix: str = DEFAULT_ID_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _ID_PREFIX.fullmatch(id_prefix):
            raise ValueError(f"id_prefix must be a letter then up to 7 letters or digits, got {id_prefix!r}")
        self.id_prefix = id_prefix
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0  # transactions open, outermost first; each level past the first is a savepoint
        self._connection: sqlite3.Connection | None = None
        if not os.path.lexists(self.path):
            self._create()
        self._connection = self._open()
        try:
            with self.transaction():
                (epoch,) = self._one("UPDATE meta SET value = value + 1 WHERE key = 'epoch' RETURNING value")
        except BaseException:
            self.close()
            raise
        self.epoch: int = int(epoch)
        """This run's epoch: 1 for the journal's first run, one more for every open since."""

    # -- opening -------------------------------------------------------------------------------------------

    def _create(self) -> None:
        """Build the journal beside its path and link it into place whole: a path that exists is always a
        complete journal, so one that is not is damage to report, never a crash during creation."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        building = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}-{threading.get_ident()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(building)  # left by a crash of this pid long ago
        try:
            os.close(os.open(building, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
            connection = sqlite3.connect(building, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=DELETE")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("format", FORMAT), ("version", VERSION), ("epoch", 0), ("counter", 0)],
                )
                connection.execute("COMMIT")
            finally:
                connection.close()
            with contextlib.suppress(FileExistsError):  # never over a file another process just created
                os.link(building, self.path)
            _fsync_directory(self.path.parent)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot create the order journal {self.path}: {exc}", self.path) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(building)

    def _open(self) -> sqlite3.Connection:
        path = self.path
        try:
            # Checked before it is opened: opening a FIFO planted at the path would block the bot.
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise JournalError(f"the order journal {path} is not a regular file", path)
            with open(path, "rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except JournalError:
            raise
        except OSError as exc:
            raise JournalError(f"cannot read the order journal {path}: {exc.strerror or exc}", path) from exc
        if header != _SQLITE_HEADER:
            raise JournalError(
                f"{path} is not an order journal (not an SQLite database, or damaged): "
                "move it aside to start a new one, or restore it from a backup",
                path,
            )
        connection: sqlite3.Connection | None = None
        try:
            # mode=rw: SQLite must never create a new, empty journal in place of this one.
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,  # one lock guards it; the bot may call from a thread
                timeout=_BUSY_TIMEOUT_SECONDS,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            (check,) = connection.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()
            raise JournalError(
                f"the order journal {path} is damaged or not an order journal ({exc}): "
                "move it aside to start a new one, or restore it from a backup",
                path,
            ) from exc
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            connection.close()
            raise JournalError(
                f"{path} is an SQLite database but not a version {VERSION} order journal "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r})",
                path,
            )
        return connection

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def __enter__(self) -> OrderJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[OrderJournal]:
        """Every change inside the block commits together when it ends, or none does if it raises.

        Holds the journal's lock for the whole block, so keep it short and never ``await`` inside it: a
        coroutine on the same thread would join the transaction. Nested blocks are savepoints."""
        with self._lock:
            connection = self._live()
            depth = self._depth
            savepoint = f"level{depth}"
            try:
                connection.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            except sqlite3.Error as exc:
                raise self._error("cannot start a transaction", exc) from exc
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                with contextlib.suppress(sqlite3.Error):
                    if depth == 0:
                        connection.execute("ROLLBACK")
                    else:
                        connection.execute(f"ROLLBACK TO {savepoint}")
                        connection.execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            try:
                connection.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise self._error("cannot commit", exc) from exc

    def highest_epoch(self) -> int:
        """The largest epoch this journal has given out (to any run, this one included)."""
        with self._lock:
            (epoch,) = self._one("SELECT value FROM meta WHERE key = 'epoch'")
            return int(epoch)

    def begin_epoch(self, epoch: int) -> None:
        """From now on this run's ids carry ``epoch``, which must be larger than every epoch the journal
        has given out: a trading lease's epoch (:class:`horus_sdk.lease.Lease`), so that the fencing token
        and the ids agree. Raises ValueError for an epoch that is not larger (the ids could repeat)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ValueError(f"an epoch is a whole number, got {epoch!r}")
        with self.transaction():
            try:
                moved = (
                    self._live()
                    .execute(
                        "UPDATE meta SET value = ? WHERE key = 'epoch' AND value < ? RETURNING value", (epoch, epoch)
                    )
                    .fetchone()
                )
            except sqlite3.Error as exc:
                raise self._error("cannot write", exc) from exc
            if moved is None:
                raise ValueError(f"epoch {epoch} is not above the journal's highest ({self.highest_epoch()})")
        self.epoch = epoch

    # -- ids and intents -----------------------------------------------------------------------------------

    def epoch_of(self, client_order_id: str) -> int | None:
        """The epoch of one of this journal's ids (its prefix), or None: what ``reconcile(epoch_of=...)`` needs."""
        return epoch_of_client_order_id(client_order_id, self.id_prefix)

    def new_client_order_id(self) -> str:
        """A client order id never used before by this journal (the counter is committed with it)."""
        with self.transaction():
            return self._next_id()

    def intend(
        self, symbol: str, side: str, quantity: float, type: str = "market", price: float | None = None
    ) -> JournalEntry:
        """Write an INTENT with a new client order id and commit it: from here on, the order may exist."""
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if not _number(quantity) or not quantity > 0:
            raise ValueError(f"quantity must be a number more than 0, got {quantity!r}")
        if type not in ("market", "limit"):
            raise ValueError(f"type must be 'market' or 'limit', got {type!r}")
        if type == "limit" and (not _number(price) or not price > 0):
            raise ValueError(f"a limit order needs a price more than 0, got {price!r}")
        if type == "market" and price is not None:
            raise ValueError(f"a market order has no price, got {price!r}")
        with self.transaction():
            cid = self._next_id()
            now = self._clock()
            self._execute(
                "INSERT INTO orders (client_order_id, epoch, symbol, side, quantity, type, price, state, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, self.epoch, symbol, side, float(quantity), type, _float(price), _S.INTENT, now, now),
            )
            self._event(cid, now, _S.INTENT, {"symbol": symbol, "side": side, "quantity": quantity})
            return self._get(cid)

    def _next_id(self) -> str:
        (counter,) = self._one("UPDATE meta SET value = value + 1 WHERE key = 'counter' RETURNING value")
        cid = format_client_order_id(self.id_prefix, self.epoch, int(counter))
        assert CLIENT_ORDER_ID_PATTERN.fullmatch(cid), f"client order id {cid!r} is not 1-32 of A-Za-z0-9_-"
        return cid

    # -- an order's life -----------------------------------------------------------------------------------

    def mark_sent(self, client_order_id: str) -> JournalEntry:
        """Committed just before the order is sent. Only from INTENT: an order is never sent twice."""
        return self._move(client_order_id, _S.SENT, allowed_from={_S.INTENT})

    def mark_acked(self, client_order_id: str, exchange_order_id: str | None) -> JournalEntry:
        """The exchange has the order (nothing filled yet). Again with the same id changes nothing."""
        with self.transaction():
            entry = self._get(client_order_id)
            text = None if exchange_order_id is None else str(exchange_order_id)
            if entry.state is _S.ACKED and text in (None, entry.exchange_order_id):
                return entry
            return self._move(client_order_id, _S.ACKED, exchange_order_id=text or entry.exchange_order_id)

    def record_fill(self, client_order_id: str, cumulative_filled: float, avg_price: float | None) -> JournalEntry:
        """The exchange says ``cumulative_filled`` of the order has filled in all, at ``avg_price``.

        PARTIALLY_FILLED or FILLED by the quantity; never backwards (a smaller cumulative quantity is a
        ValueError). On a final order it is a fill correction: quantities change, and the state becomes
        FILLED if it is now complete. The same figures again change nothing."""
        if not _number(cumulative_filled) or cumulative_filled < 0:
            raise ValueError(f"cumulative_filled must be a number of 0 or more, got {cumulative_filled!r}")
        if avg_price is not None and (not _number(avg_price) or avg_price <= 0):
            raise ValueError(f"avg_price must be a number more than 0 or None, got {avg_price!r}")
        with self.transaction():
            entry = self._get(client_order_id)
            filled = float(cumulative_filled)
            price = _float(avg_price) if avg_price is not None else entry.avg_price
            if filled < entry.filled_quantity:
                raise ValueError(
                    f"order {client_order_id}: a fill never goes backwards "
                    f"({entry.filled_quantity:g} filled, now told {filled:g})"
                )
            if filled == entry.filled_quantity and price == entry.avg_price:
                return entry
            complete = filled >= entry.quantity * (1 - 1e-9)
            if filled == 0:
                return entry  # a price with nothing filled: nothing to record
            if entry.final:
                state = _S.FILLED if complete else entry.state
                detail: dict[str, Any] = {"correction": True}
            else:
                state = _S.FILLED if complete else _S.PARTIALLY_FILLED
                detail = {}
            if filled > entry.quantity * (1 + 1e-9):
                detail["overfilled"] = f"{filled:g} filled of an order for {entry.quantity:g}"
            return self._write(
                entry, state, {"filled_quantity": filled, "avg_price": price}, {**detail, "filled": filled}
            )

    def mark_rejected(self, client_order_id: str, reason: str) -> JournalEntry:
        return self._move(client_order_id, _S.REJECTED, reason=str(reason))

    def mark_canceled(self, client_order_id: str, reason: str | None = None) -> JournalEntry:
        return self._move(client_order_id, _S.CANCELED, reason=reason)

    def mark_unresolved(self, client_order_id: str, why: str) -> JournalEntry:
        """Sent, and nothing has told what became of it: a restart and the operator must resolve it."""
        return self._move(client_order_id, _S.UNRESOLVED, reason=str(why))

    def record_lookup(self, client_order_id: str, outcome: str) -> JournalEntry:
        """One lookup of the order at the exchange (``outcome``: what it said): counted in ``lookups``."""
        with self.transaction():
            entry = self._get(client_order_id)
            now = self._clock()
            self._execute(
                "UPDATE orders SET lookups = lookups + 1, updated_at = ? WHERE client_order_id = ?",
                (now, client_order_id),
            )
            self._event(client_order_id, now, entry.state, {"lookup": str(outcome)})
            return self._get(client_order_id)

    def _move(
        self,
        client_order_id: str,
        state: OrderState,
        *,
        allowed_from: frozenset[OrderState] | set[OrderState] | None = None,
        reason: str | None = None,
        exchange_order_id: str | None = None,
    ) -> JournalEntry:
        with self.transaction():
            entry = self._get(client_order_id)
            legal = state in _NEXT[entry.state] and (allowed_from is None or entry.state in allowed_from)
            if not legal:
                raise ValueError(
                    f"order {client_order_id}: {entry.state.name} -> {state.name} is not a legal transition"
                    + (" (a final state)" if entry.final else "")
                )
            changes: dict[str, Any] = {}
            detail: dict[str, Any] = {}
            if reason is not None:
                changes["reason"] = detail["reason"] = reason
            if exchange_order_id is not None:
                changes["exchange_order_id"] = detail["exchange_order_id"] = exchange_order_id
            return self._write(entry, state, changes, detail)

    def _write(
        self, entry: JournalEntry, state: OrderState, changes: dict[str, Any], detail: dict[str, Any]
    ) -> JournalEntry:
        now = self._clock()
        columns = {**changes, "state": str(state), "updated_at": now}
        assignments = ", ".join(f"{name} = ?" for name in columns)  # names are ours, never the caller's
        self._execute(
            f"UPDATE orders SET {assignments} WHERE client_order_id = ?",  # noqa: S608
            (*columns.values(), entry.client_order_id),
        )
        self._event(entry.client_order_id, now, state, detail)
        return self._get(entry.client_order_id)

    def _event(self, client_order_id: str, at: float, state: OrderState, detail: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO events (client_order_id, at, state, detail) VALUES (?, ?, ?, ?)",
            (client_order_id, at, str(state), json.dumps(detail, default=str)),
        )

    # -- queries -------------------------------------------------------------------------------------------

    def get(self, client_order_id: str) -> JournalEntry | None:
        with self._lock:
            rows = self._query(_SELECT_ORDERS + " WHERE client_order_id = ?", (client_order_id,))
        return _entry(rows[0]) if rows else None

    def open_orders(self) -> list[JournalEntry]:
        """ACKED and PARTIALLY_FILLED orders, oldest first."""
        return self._where_state(OPEN_STATES)

    def in_doubt(self) -> list[JournalEntry]:
        """INTENT, SENT and UNRESOLVED orders, oldest first: resolve them before sending anything new."""
        return self._where_state(IN_DOUBT_STATES)

    def orders(self, epoch: int | None = None) -> list[JournalEntry]:
        """Every order (of one epoch), oldest first."""
        with self._lock:
            if epoch is None:
                rows = self._query(_SELECT_ORDERS + " ORDER BY rowid")
            else:
                rows = self._query(_SELECT_ORDERS + " WHERE epoch = ? ORDER BY rowid", (epoch,))
        return [_entry(row) for row in rows]

    def events(self, client_order_id: str) -> list[JournalEvent]:
        """The order's life, oldest first."""
        with self._lock:
            rows = self._query(
                "SELECT client_order_id, at, state, detail FROM events WHERE client_order_id = ? ORDER BY id",
                (client_order_id,),
            )
        return [JournalEvent(row[0], row[1], OrderState(row[2]), json.loads(row[3] or "{}")) for row in rows]

    def _where_state(self, states: frozenset[OrderState]) -> list[JournalEntry]:
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._query(
                _SELECT_ORDERS + f" WHERE state IN ({marks}) ORDER BY rowid",
                tuple(str(s) for s in states),
            )
        return [_entry(row) for row in rows]

    def _get(self, client_order_id: str) -> JournalEntry:
        entry = self.get(client_order_id)
        if entry is None:
            raise KeyError(f"no order {client_order_id!r} in the order journal {self.path}")
        return entry

    # -- durable bot state ---------------------------------------------------------------------------------

    def put_state(self, key: str, value: Any) -> None:
        """Keep ``value`` (anything JSON can hold) under ``key``, committed (with the enclosing transaction)."""
        self._put("state", "key", str(key), _json(value, f"state {key!r}"))

    def _put(self, table: str, key_column: str, key: str, text: str) -> None:
        # table and key_column are this module's own names, never the caller's text.
        with self.transaction():
            self._execute(
                f"INSERT INTO {table} ({key_column}, value, updated_at) VALUES (?, ?, ?) "  # noqa: S608
                f"ON CONFLICT ({key_column}) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, text, self._clock()),
            )

    def get_state(self, key: str, default: Any = None) -> Any:
        with self._lock:
            rows = self._query("SELECT value FROM state WHERE key = ?", (str(key),))
        return json.loads(rows[0][0]) if rows else default

    def set_checkpoint(self, name: str, value: Any) -> None:
        """A named checkpoint, such as the time or id of the last fill applied durably (JSON value)."""
        self._put("checkpoints", "name", str(name), _json(value, f"checkpoint {name!r}"))

    def checkpoint(self, name: str) -> Any:
        """The checkpoint's value, None if it was never set."""
        with self._lock:
            rows = self._query("SELECT value FROM checkpoints WHERE name = ?", (str(name),))
        return json.loads(rows[0][0]) if rows else None

    # -- SQLite, behind one lock, its errors translated ----------------------------------------------------

    def _live(self) -> sqlite3.Connection:
        if self._connection is None:
            raise JournalError(f"the order journal {self.path} is closed", self.path)
        return self._connection

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> None:
        try:
            self._live().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from exc

    def _one(self, sql: str) -> tuple[Any, ...]:
        try:
            row = self._live().execute(sql).fetchone()
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from exc
        if row is None:
            raise JournalError(f"the order journal {self.path} is damaged: its meta table lost a row", self.path)
        return tuple(row)

    def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return [tuple(row) for row in self._live().execute(sql, parameters).fetchall()]
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from exc

    def _error(self, what: str, exc: sqlite3.Error) -> JournalError:
        return JournalError(f"the order journal {self.path}: {what}: {exc}", self.path)


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    return JournalEntry(
        client_order_id=row[0],
        epoch=int(row[1]),
        symbol=row[2],
        side=row[3],
        quantity=row[4],
        type=row[5],
        price=row[6],
        state=OrderState(row[7]),
        filled_quantity=row[8],
        avg_price=row[9],
        exchange_order_id=row[10],
        reason=row[11],
        created_at=row[12],
        updated_at=row[13],
        lookups=int(row[14]),
    )


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
        if number == 0:
            return digits


def _number(value: Any) -> TypeGuard[float]:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON (numbers, text, lists, objects): {exc}") from exc


def _fsync_directory(directory: Path) -> None:
    """The new journal's name must survive a power cut as well as its contents."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
