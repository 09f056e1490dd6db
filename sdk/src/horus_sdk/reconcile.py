"""Reconcile with the broker: trust the broker, not your memory, item by item.

On every start (and on demand) the bot asks its broker for the open orders, the positions and the fills since
its last durable checkpoint, and compares them with what its order journal and its persisted positions say::

    result = await run_reconcile(fetch_open_orders, fetch_positions, fetch_fills_since, checkpoint,
                                 known_orders=journal_orders, known_positions=saved_positions,
                                 current_epoch=journal.epoch)
    for fill in result.fills_to_apply:        # fills made while the bot was down
        journal.record_fill(fill.client_order_id, fill.filled_quantity, fill.avg_price)
    for client_order_id in result.to_cancel:  # our orders from an older epoch, and ones the journal closed
        await exchange.cancel(client_order_id)
    result.adopt(control)                     # ends RECONCILING only if the report was complete
    control.exposure(reconcile=result.to_json())

Each difference is an :class:`Item` of one :class:`Kind`:

=============== ============================================================== ==================================
kind            what                                                           what happens
=============== ============================================================== ==================================
matched         an open order both sides know with the same remaining          nothing
                quantity; a position both agree on
fill_while_down a broker fill (or a higher cumulative filled quantity) of one  listed in ``fills_to_apply`` with
                of our orders that the journal does not have                   the new cumulative quantity
external        an open order with no client id of ours, or a position in a    reported and kept: never canceled,
                symbol we hold nothing in and have no order working in         never adopted (it may be the
                                                                               user's own)
stale_epoch     one of OUR open orders (our id format) from an older epoch     listed in ``to_cancel``
lost            an order the journal has working that the broker has not      listed: look it up by client id
                open, with no fill that explains it
mismatch        a position that differs once the fills are applied (the        the broker wins (its quantity is
                broker wins); an order the journal closed that the broker      in ``positions``; the order is in
                still works; an order whose filled quantity disagrees          ``to_cancel``), and an incident
=============== ============================================================== ==================================

An incomplete report (a fetcher that failed, timed out or said so itself, or an answer that does not make sense)
gives ``complete=False``, ``clean=False``, the reason, and nothing to act on: no cancel, no fill, no positions.
The bot must then stay in RECONCILING: do not call ``control.reconciled()`` (``adopt()`` does not), and try again.
It never becomes ACTIVE on partial knowledge.

Fills are fetched since the checkpoint the caller gives, not over a fixed window. An order's fills since the
checkpoint are summed into its cumulative filled quantity (an order the broker still has open reports its own),
and the journal's quantity is never lowered; so the checkpoint must come no later than the first fill of any
order the journal has not finished. A fill id seen twice counts once.

INTENT, SENT and UNRESOLVED orders count as possibly working: resolve them by client id first (the journal's
in-doubt orders), or those the broker has not open and no fill explains are reported lost. Our ids are told from
anyone else's by their format (``epoch_of``): two bots sharing one account need ids that tell them apart, or
each would cancel the other's orders as stale.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from horus_sdk.journal import epoch_of_client_order_id

__all__ = [
    "DIFFERENCES_LIMIT",
    "BrokerFill",
    "BrokerOrder",
    "BrokerReport",
    "Fetched",
    "FillToApply",
    "Item",
    "JournalOrder",
    "Kind",
    "KnownOrder",
    "Reconciles",
    "Reconciliation",
    "epoch_of_client_order_id",
    "reconcile",
    "run_reconcile",
]

DIFFERENCES_LIMIT = 50
"""``to_json()`` lists at most this many differences (and orders to cancel); the counts cover them all."""

# The journal's id: "h" + base36(epoch) + "-" + base36(counter), at most 32 characters in all.
_FINAL_STATES = frozenset({"FILLED", "REJECTED", "CANCELED", "CANCELLED"})
_SIDES = {"buy": 1.0, "sell": -1.0}
_PROBLEMS_SHOWN = 3


class Kind(StrEnum):
    """What one item of a reconciliation is (see the table in the module docstring)."""

    MATCHED = "matched"
    FILL_WHILE_DOWN = "fill_while_down"
    EXTERNAL = "external"
    STALE_EPOCH = "stale_epoch"
    LOST = "lost"
    MISMATCH = "mismatch"


class JournalOrder(Protocol):
    """What reconcile reads of an order in the bot's journal (:class:`KnownOrder` is one)."""

    @property
    def client_order_id(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def quantity(self) -> float: ...
    @property
    def state(self) -> Any: ...
    @property
    def filled_quantity(self) -> float: ...


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """An order as the bot's journal has it. ``state``: INTENT, SENT, ACKED, PARTIALLY_FILLED, FILLED, REJECTED,
    CANCELED or UNRESOLVED (text or an enum of those names); anything not final may still be working."""

    client_order_id: str
    epoch: int
    symbol: str
    side: str
    quantity: float
    state: Any
    filled_quantity: float


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An open order as the broker reports it; ``filled_quantity`` is cumulative."""

    client_order_id: str | None
    order_id: str | None
    symbol: str
    side: str
    quantity: float
    filled_quantity: float
    status: str

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BrokerOrder:
        """From a broker's JSON (the paper exchange's order, for one); numbers may be decimal text."""
        return cls(
            _optional_text(data.get("client_order_id")),
            _optional_text(data.get("order_id")),
            data["symbol"],
            data["side"],
            _number(data["quantity"]),
            _number(data.get("filled_quantity", 0.0)),
            data.get("status", "open"),
        )


@dataclass(frozen=True, slots=True)
class BrokerFill:
    """One execution as the broker reports it; ``quantity`` is this fill's, not the order's cumulative."""

    fill_id: str
    client_order_id: str | None
    symbol: str
    side: str
    quantity: float
    price: float | None
    at: float | None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BrokerFill:
        """From a broker's JSON; numbers may be decimal text."""
        price, at = data.get("price"), data.get("at")
        return cls(
            str(data["fill_id"]),
            _optional_text(data.get("client_order_id")),
            data["symbol"],
            data["side"],
            _number(data["quantity"]),
            None if price is None else _number(price),
            None if at is None else _number(at),
        )


@dataclass(frozen=True, slots=True)
class BrokerReport:
    """Everything the broker said. ``complete=False`` (with the reason) when any part of it may be missing."""

    open_orders: list[BrokerOrder]
    positions: dict[str, float]
    fills: list[BrokerFill]
    complete: bool = True
    incomplete_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a fetcher may return to say how much it got: ``Fetched(fills, complete=False, reason="...")``."""

    value: Any
    complete: bool = True
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One finding. ``ours`` and ``theirs`` are the two sides' quantities: remaining for an open order, the
    cumulative filled quantity for a fill, the position for a position (None where a side knows nothing)."""

    kind: Kind
    symbol: str
    client_order_id: str | None
    detail: str
    ours: float | None
    theirs: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "detail": self.detail,
            "ours": self.ours,
            "theirs": self.theirs,
        }


@dataclass(frozen=True, slots=True)
class FillToApply:
    """Record this in the journal: the order's new cumulative ``filled_quantity`` (it had ``previous_quantity``);
    ``avg_price`` when the fills cover all of it, else None."""

    client_order_id: str
    symbol: str
    side: str
    filled_quantity: float
    previous_quantity: float
    avg_price: float | None


class Reconciles(Protocol):
    """What ``adopt()`` needs of the control plane (:class:`horus_sdk.control.Control` is one)."""

    def reconciled(self, positions: Mapping[str, float] | None = None, *, report: Any = None) -> None: ...

    def reconcile_incomplete(self, report: Any) -> None: ...


@dataclass(frozen=True)
class Reconciliation:
    """The outcome. ``positions`` is the broker's, which the bot should adopt (None when the report was
    incomplete); positions that are not the bot's are in ``external_positions`` instead."""

    items: tuple[Item, ...]
    positions: dict[str, float] | None
    external_positions: dict[str, float]
    to_cancel: tuple[str, ...]
    fills_to_apply: tuple[FillToApply, ...]
    complete: bool
    incomplete_reason: str | None = None
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        counted = Counter(item.kind for item in self.items)
        object.__setattr__(self, "counts", {kind.value: counted[kind] for kind in Kind})

    @property
    def clean(self) -> bool:
        """No mismatch, no lost order, and the report was complete: Horus may call the recovery confirmed."""
        return self.complete and self.counts[Kind.MISMATCH] == 0 and self.counts[Kind.LOST] == 0

    @property
    def incident(self) -> bool:
        """A mismatch was found: the broker won, and an incident should say what differed."""
        return self.counts[Kind.MISMATCH] > 0

    @property
    def differences(self) -> tuple[Item, ...]:
        return tuple(item for item in self.items if item.kind is not Kind.MATCHED)

    def adopt(self, control: Reconciles) -> bool:
        """End RECONCILING with the broker's positions if the report was complete (a mismatch latches
        REDUCING, see ``Control.reconciled``); an incomplete one is only shown in status.json and the bot stays
        in RECONCILING. Returns whether RECONCILING ended."""
        if not self.complete or self.positions is None:
            control.reconcile_incomplete(self)
            return False
        control.reconciled(self.positions, report=self)
        return True

    def summary(self) -> str:
        """One line for a person."""
        if not self.complete:
            return (
                f"not reconciled: the broker's report is incomplete ({self.incomplete_reason}); staying in RECONCILING"
            )
        n = self.counts
        parts = [
            f"{n[Kind.MATCHED]} matched",
            _plural(n[Kind.FILL_WHILE_DOWN], "fill while down applied", "fills while down applied"),
            f"{n[Kind.EXTERNAL]} external kept",
            _plural(n[Kind.STALE_EPOCH], "stale order canceled", "stale orders canceled"),
            _plural(n[Kind.MISMATCH], "mismatch", "mismatches"),
        ]
        if n[Kind.LOST]:
            parts.append(_plural(n[Kind.LOST], "lost order", "lost orders"))
        return "reconciled: " + ", ".join(parts)

    def to_json(self, limit: int = DIFFERENCES_LIMIT) -> dict[str, Any]:
        """For status.json: the counts, and the first ``limit`` differences and orders to cancel."""
        differences = self.differences
        return {
            "complete": self.complete,
            "clean": self.clean,
            "incident": self.incident,
            "incomplete_reason": self.incomplete_reason,
            "summary": self.summary(),
            "counts": dict(self.counts),
            "differences": [item.to_json() for item in differences[:limit]],
            "differences_left_off": max(0, len(differences) - limit),
            "positions": None if self.positions is None else dict(self.positions),
            "external_positions": dict(self.external_positions),
            "to_cancel": list(self.to_cancel[:limit]),
            "to_cancel_left_off": max(0, len(self.to_cancel) - limit),
            "fills_to_apply": len(self.fills_to_apply),
        }


def reconcile(
    known_orders: Iterable[JournalOrder],
    known_positions: Mapping[str, float],
    report: BrokerReport,
    *,
    current_epoch: int,
    tolerance: float = 1e-9,
    epoch_of: Callable[[str], int | None] = epoch_of_client_order_id,
) -> Reconciliation:
    """Compare the journal (``known_orders``, any states) and the persisted positions with the broker's report.

    Pure: no I/O, no clock. ``current_epoch``: the journal's epoch now; our open orders from an older one are to
    cancel. ``tolerance``: quantities within ``tolerance * max(1, |a|, |b|)`` are equal. ``epoch_of``: reads the
    epoch in one of our client order ids, None for anyone else's. An incomplete report gives an incomplete
    result with nothing to act on: the caller stays in RECONCILING and does not call ``control.reconciled()``.
    """
    if not report.complete:
        return _incomplete(report.incomplete_reason or "the broker said its report is incomplete")
    problem = _problem(report, tolerance)
    if problem is not None:
        return _incomplete(problem)

    def same(a: float, b: float) -> bool:
        return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))

    journal = {order.client_order_id: order for order in known_orders}
    items: list[Item] = []
    to_cancel: list[str] = []
    applied: list[FillToApply] = []
    expected: dict[str, float] = {str(s): float(q) for s, q in known_positions.items()}
    ours_symbols = {symbol for symbol, quantity in expected.items() if not same(quantity, 0.0)}
    foreign_fills: Counter[str] = Counter()

    fills_of: dict[str, list[BrokerFill]] = {}
    seen: set[str] = set()
    for fill in report.fills:
        if fill.fill_id in seen:
            continue  # a broker's pages can overlap
        seen.add(fill.fill_id)
        if fill.client_order_id is not None and fill.client_order_id in journal:
            fills_of.setdefault(fill.client_order_id, []).append(fill)
        else:
            foreign_fills[fill.symbol] += 1
    open_of = {o.client_order_id: o for o in report.open_orders if o.client_order_id in journal}

    # What each of our orders has really filled: the most any side knows (fills only ever add).
    filled: dict[str, float] = {}
    for cid, order in journal.items():
        before = float(order.filled_quantity)
        fills = fills_of.get(cid, ())
        from_fills = math.fsum(f.quantity for f in fills)
        broker_order = open_of.get(cid)
        now = max(before, from_fills, broker_order.filled_quantity if broker_order else 0.0)
        filled[cid] = now
        if _state(order.state) not in _FINAL_STATES:
            ours_symbols.add(order.symbol)
        if same(now, before) or now < before:
            continue
        priced = [f for f in fills if f.price is not None]
        avg = None
        if fills and len(priced) == len(fills) and same(from_fills, now):
            avg = math.fsum(f.quantity * (f.price or 0.0) for f in fills) / from_fills
        side = order.side.lower()
        applied.append(FillToApply(cid, order.symbol, side, now, before, avg))
        expected[order.symbol] = expected.get(order.symbol, 0.0) + _SIDES.get(side, 0.0) * (now - before)
        ours_symbols.add(order.symbol)
        items.append(
            Item(
                Kind.FILL_WHILE_DOWN,
                order.symbol,
                cid,
                f"{cid} ({side} {_n(order.quantity)} {order.symbol}) has filled {_n(now)} in all at the broker; "
                f"the journal had {_n(before)}",
                before,
                now,
            )
        )

    for broker_order in report.open_orders:
        their_id = broker_order.client_order_id
        symbol = broker_order.symbol
        remaining = broker_order.quantity - broker_order.filled_quantity
        what = f"{broker_order.side.lower()} {_n(broker_order.quantity)} {symbol}"
        mine = journal.get(their_id) if their_id is not None else None
        if mine is None or their_id is None:
            epoch = epoch_of(their_id) if their_id is not None else None
            if their_id is not None and epoch is not None and epoch < current_epoch:
                to_cancel.append(their_id)
                ours_symbols.add(symbol)
                detail = f"{their_id} ({what}) is ours from epoch {epoch}, which is over; the journal no longer has it"
                items.append(Item(Kind.STALE_EPOCH, symbol, their_id, detail + "; to cancel", None, remaining))
            else:
                whose = (
                    "has no client order id"
                    if their_id is None
                    else f"{their_id} has our id format but an epoch this journal has not reached"
                    if epoch is not None
                    else f"{their_id} is not one of our ids"
                )
                detail = f"an open {what} order ({_n(remaining)} remaining) {whose}: kept, not ours to cancel"
                items.append(Item(Kind.EXTERNAL, symbol, their_id, detail, None, remaining))
            continue
        ours_symbols.add(symbol)
        ours_remaining = float(mine.quantity) - filled[their_id]
        state = _state(mine.state)
        if state in _FINAL_STATES:
            to_cancel.append(their_id)
            detail = (
                f"{their_id} ({what}) is open at the broker with {_n(remaining)} remaining, "
                f"but the journal has it {state}"
            )
            items.append(Item(Kind.MISMATCH, symbol, their_id, detail + "; to cancel", None, remaining))
        elif mine.epoch < current_epoch:
            to_cancel.append(their_id)
            detail = f"{their_id} ({what}) is open from epoch {mine.epoch}, which is over; to cancel"
            items.append(Item(Kind.STALE_EPOCH, symbol, their_id, detail, ours_remaining, remaining))
        elif broker_order.filled_quantity < float(mine.filled_quantity) and not same(
            broker_order.filled_quantity, float(mine.filled_quantity)
        ):
            detail = (
                f"{their_id} ({what}) has filled {_n(broker_order.filled_quantity)} at the broker, "
                f"less than the {_n(mine.filled_quantity)} the journal has"
            )
            items.append(Item(Kind.MISMATCH, symbol, their_id, detail, ours_remaining, remaining))
        elif same(ours_remaining, remaining):
            detail = f"{their_id} ({what}) is open on both sides with {_n(remaining)} remaining"
            items.append(Item(Kind.MATCHED, symbol, their_id, detail, ours_remaining, remaining))
        else:
            detail = (
                f"{their_id} ({what}) has {_n(remaining)} remaining at the broker, {_n(ours_remaining)} in the journal"
            )
            items.append(Item(Kind.MISMATCH, symbol, their_id, detail, ours_remaining, remaining))

    for cid, order in journal.items():
        if cid in open_of or _state(order.state) in _FINAL_STATES:
            continue
        quantity = float(order.quantity)
        if filled[cid] > quantity or same(filled[cid], quantity):
            continue  # it filled while the bot was down: the fill above explains it
        detail = (
            f"{cid} ({order.side.lower()} {_n(quantity)} {order.symbol}) is {_state(order.state)} in the journal with "
            f"{_n(quantity - filled[cid])} remaining, but it is not open at the broker and no fill explains it; "
            "look it up by its client id"
        )
        items.append(Item(Kind.LOST, order.symbol, cid, detail, quantity - filled[cid], None))

    positions: dict[str, float] = {}
    external_positions: dict[str, float] = {}
    for symbol in [*expected, *(s for s in report.positions if s not in expected)]:
        ours = expected.get(symbol, 0.0)
        theirs = float(report.positions.get(symbol, 0.0))
        if same(ours, theirs):
            if symbol in known_positions or not same(theirs, 0.0):
                positions[symbol] = theirs
            if not same(theirs, 0.0):
                items.append(Item(Kind.MATCHED, symbol, None, f"{symbol}: {_n(theirs)} on both sides", ours, theirs))
        elif same(ours, 0.0) and symbol not in ours_symbols:
            external_positions[symbol] = theirs
            detail = f"{symbol}: the broker has {_n(theirs)}, which the bot did not place: kept, not adopted"
            items.append(Item(Kind.EXTERNAL, symbol, None, detail, None, theirs))
        else:
            positions[symbol] = theirs
            held = float(known_positions.get(symbol, 0.0))
            how = f" ({_n(held)} held, {_signed(ours - held)} filled while down)" if not same(ours, held) else ""
            others = foreign_fills[symbol]
            note = (
                f"; {_plural(others, 'fill', 'fills')} not of ours in {symbol} since the checkpoint" if others else ""
            )
            detail = f"{symbol}: we expected {_n(ours)}{how}, the broker has {_n(theirs)}; the broker wins{note}"
            items.append(Item(Kind.MISMATCH, symbol, None, detail, ours, theirs))

    return Reconciliation(tuple(items), positions, external_positions, tuple(to_cancel), tuple(applied), complete=True)


async def run_reconcile(
    fetch_open_orders: Callable[[], Awaitable[Any]],
    fetch_positions: Callable[[], Awaitable[Any]],
    fetch_fills_since: Callable[[Any], Awaitable[Any]],
    checkpoint: Any,
    known_orders: Iterable[JournalOrder],
    known_positions: Mapping[str, float],
    current_epoch: int,
    timeout: float = 30.0,
    *,
    tolerance: float = 1e-9,
    epoch_of: Callable[[str], int | None] = epoch_of_client_order_id,
) -> Reconciliation:
    """Fetch the broker's side (the three fetchers at once, each under ``timeout`` seconds) and :func:`reconcile`.

    ``fetch_open_orders()`` returns the open orders, ``fetch_positions()`` a mapping of symbol to signed
    quantity, ``fetch_fills_since(checkpoint)`` the fills since the checkpoint: as :class:`BrokerOrder` /
    :class:`BrokerFill` or as mappings with their fields. A fetcher that raises or times out, one that returns
    something with ``complete`` false (:class:`Fetched`), or an answer that does not make sense, makes the
    report incomplete: the result says why and the bot stays in RECONCILING. Never raises for the broker's sake.
    """
    (orders, orders_problem), (positions, positions_problem), (fills, fills_problem) = await asyncio.gather(
        _fetch("fetch_open_orders", fetch_open_orders, (), timeout, BrokerOrder),
        _fetch("fetch_positions", fetch_positions, (), timeout, None),
        _fetch("fetch_fills_since", fetch_fills_since, (checkpoint,), timeout, BrokerFill),
    )
    problems = [p for p in (orders_problem, positions_problem, fills_problem) if p is not None]
    if problems:
        report = BrokerReport([], {}, [], False, "; ".join(problems))
    else:
        report = BrokerReport(orders, positions, fills)
    return reconcile(
        known_orders, known_positions, report, current_epoch=current_epoch, tolerance=tolerance, epoch_of=epoch_of
    )


async def _fetch(
    name: str,
    fetcher: Callable[..., Any],
    args: tuple[Any, ...],
    timeout: float,
    kind: type[BrokerOrder] | type[BrokerFill] | None,
) -> tuple[Any, str | None]:
    """(the answer in our shapes, None) or (None, why it cannot be trusted as whole)."""
    try:
        answer = fetcher(*args)
        if inspect.isawaitable(answer):
            answer = await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        return None, f"{name} did not answer within {timeout:g} s"
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled: not the broker's doing
        return None, f"{name} was cancelled before it answered"
    except Exception as exc:
        return None, f"{name} failed: {type(exc).__name__}: {exc}"
    if hasattr(answer, "complete"):
        if answer.complete is not True:
            reason = getattr(answer, "reason", None) or getattr(answer, "incomplete_reason", None)
            return None, f"{name} says its answer is incomplete: {reason or 'no reason given'}"
        answer = getattr(answer, "value", answer)
    try:
        if kind is None:
            if not isinstance(answer, Mapping):
                raise TypeError(f"a mapping of symbol to quantity was expected, got {type(answer).__name__}")
            return {symbol: _number(quantity) for symbol, quantity in answer.items()}, None
        if isinstance(answer, str | bytes | Mapping):
            raise TypeError(f"a list was expected, got {type(answer).__name__}")
        return [entry if isinstance(entry, kind) else kind.from_mapping(entry) for entry in answer], None
    except Exception as exc:
        return None, f"{name} answered something that does not make sense: {type(exc).__name__}: {exc}"


def _incomplete(reason: str) -> Reconciliation:
    return Reconciliation((), None, {}, (), (), complete=False, incomplete_reason=reason)


def _problem(report: BrokerReport, tolerance: float) -> str | None:
    """What in the report cannot be true (the first few), or None."""
    problems: list[str] = []

    def check(where: str, symbol: Any, side: Any, quantity: Any, *, allow_zero: bool = False) -> None:
        if not isinstance(symbol, str) or not symbol:
            problems.append(f"{where}: the symbol {symbol!r} is not a name")
        if not isinstance(side, str) or side.lower() not in _SIDES:
            problems.append(f"{where}: the side {side!r} is neither buy nor sell")
        if not _real(quantity) or quantity < 0 or (quantity == 0 and not allow_zero):
            problems.append(f"{where}: the quantity {quantity!r} is not a positive number")

    for n, order in enumerate(report.open_orders):
        where = f"open order {n} ({order.client_order_id or order.order_id})"
        check(where, order.symbol, order.side, order.quantity)
        if order.client_order_id is not None and not isinstance(order.client_order_id, str):
            problems.append(f"{where}: the client order id {order.client_order_id!r} is not text")
        if not _real(order.filled_quantity) or order.filled_quantity < 0:
            problems.append(f"{where}: the filled quantity {order.filled_quantity!r} is not a number of 0 or more")
        elif _real(order.quantity) and order.filled_quantity > order.quantity * (1 + tolerance) + tolerance:
            problems.append(
                f"{where}: the filled quantity {order.filled_quantity!r} is more than its quantity {order.quantity!r}"
            )
    for n, fill in enumerate(report.fills):
        where = f"fill {n} ({fill.fill_id})"
        check(where, fill.symbol, fill.side, fill.quantity)
        if not isinstance(fill.fill_id, str) or not fill.fill_id:
            problems.append(f"{where}: the fill id {fill.fill_id!r} is not text")
        if fill.price is not None and (not _real(fill.price) or fill.price < 0):
            problems.append(f"{where}: the price {fill.price!r} is not a number of 0 or more")
    if not isinstance(report.positions, Mapping):
        problems.append(f"the positions are not a mapping of symbol to quantity: {type(report.positions).__name__}")
    else:
        for symbol, quantity in report.positions.items():
            if not isinstance(symbol, str) or not symbol:
                problems.append(f"a position's symbol {symbol!r} is not a name")
            elif not _real(quantity):
                problems.append(f"the position in {symbol} is not a number: {quantity!r}")
    if not problems:
        return None
    more = len(problems) - _PROBLEMS_SHOWN
    return "; ".join(problems[:_PROBLEMS_SHOWN]) + (f"; and {more} more" if more > 0 else "")


def _state(state: Any) -> str:
    """A journal state as its upper-case name, whether it is text or an enum."""
    name = getattr(state, "name", None)
    return str(name if isinstance(name, str) else state).upper().replace(" ", "_")


def _real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _number(value: Any) -> Any:
    """Brokers often send quantities as decimal text ("0.00100000"): read it; leave anything else for the checks."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _n(quantity: Any) -> str:
    return f"{float(quantity):.10g}"


def _signed(quantity: float) -> str:
    return f"{quantity:+.10g}"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"
