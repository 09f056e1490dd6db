"""Sending an order so that a retry can never double a position: journal first, never resend blindly.

::

    entry = await submit(journal, exchange.send, exchange.lookup, symbol="BTC-USD", side="buy",
                         quantity=0.1, control=control)
    if entry.state is OrderState.UNRESOLVED:
        ...   # the control plane is REDUCING until the order is resolved and an operator resumes

The protocol, for one order:

1. ``journal.intend(...)``: the INTENT is committed, with a new client order id.
2. With ``control``, ``control.permit(order)``: a denial is recorded as REJECTED with its reason and nothing
   is sent.
3. ``journal.mark_sent(cid)``, committed, then ``await send(cid, symbol, side, quantity, type, price)`` under
   ``send_timeout``.
4. A definitive answer (a dict like the paper exchange's: ``status`` filled, partially_filled, open,
   rejected or cancelled, with ``filled_quantity``, ``avg_price``, ``order_id``, ``reason``) is recorded.
5. Anything else is *ambiguous*: a timeout, a dropped connection, any exception, or an answer that cannot
   be read. The order may exist, so it is **never sent again**: it is looked up by its client id, up to
   ``lookups`` times, ``lookup_interval`` apart. The first readable answer is recorded. None ("the exchange
   does not know it") is not an answer for an order that was sent: the order may still arrive. With no
   answer, the order is UNRESOLVED and, with ``control``, ``control.order_unresolved(cid, why)`` puts the
   bot in REDUCING until an operator resumes.

``submit`` does not count rejects or errors toward the control's trips: the bot does, from the entry it
gets back (``entry.state``, ``entry.reason``).

At start, before trading, :func:`resolve_in_doubt` looks up every order a previous run left INTENT, SENT or
UNRESOLVED.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from horus_sdk.control import Order, Permit
from horus_sdk.journal import IN_DOUBT_STATES, JournalEntry, OrderJournal, OrderState

__all__ = ["Lookup", "OrderGate", "Send", "resolve_in_doubt", "submit"]

logger = logging.getLogger("horus_sdk")

GIVE_UP_AFTER_SECONDS = 600.0
"""How long after it was sent an order the exchange still does not know is taken as never received."""

Send = Callable[[str, str, str, float, str, float | None], Awaitable[Any]]
"""``send(client_order_id, symbol, side, quantity, type, price)``: the exchange's answer, or it raises."""
Lookup = Callable[[str], Awaitable[Any]]
"""``lookup(client_order_id)``: the order as the exchange has it (an answer like ``send``'s), or None when
the exchange does not know it."""

_STATUSES = {
    "filled": OrderState.FILLED,
    "partially_filled": OrderState.PARTIALLY_FILLED,
    "open": OrderState.ACKED,
    "new": OrderState.ACKED,
    "rejected": OrderState.REJECTED,
    "cancelled": OrderState.CANCELED,
    "canceled": OrderState.CANCELED,
}


class OrderGate(Protocol):
    """What ``control=`` needs (:class:`horus_sdk.Control` is one)."""

    def permit(self, order: Any) -> Permit: ...

    def order_unresolved(self, client_order_id: str, why: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _Answer:
    state: OrderState
    filled_quantity: float
    avg_price: float | None
    exchange_order_id: str | None
    reason: str | None


async def submit(
    journal: OrderJournal,
    send: Send,
    lookup: Lookup,
    *,
    symbol: str,
    side: str,
    quantity: float,
    type: str = "market",
    price: float | None = None,
    control: OrderGate | None = None,
    lookups: int = 3,
    lookup_interval: float = 1.0,
    send_timeout: float = 10.0,
) -> JournalEntry:
    """Journal, permit, send once, and record what became of the order (see the module's docstring).

    Returns the order's journal entry as it stands at the end. Raises what ``journal.intend`` raises (a
    bad order: ValueError; the journal cannot be written: JournalError) before anything is sent; after the
    send, a failure of the journal itself still raises, and the order stays SENT for the next start's
    :func:`resolve_in_doubt`."""
    if isinstance(lookups, bool) or not isinstance(lookups, int) or lookups < 1:
        raise ValueError(f"lookups must be a whole number of 1 or more, got {lookups!r}")
    for name, value in (("lookup_interval", lookup_interval), ("send_timeout", send_timeout)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be 0 or more seconds, got {value!r}")
    entry = journal.intend(symbol, side, quantity, type, price)
    cid = entry.client_order_id
    if control is not None:
        permit = control.permit(Order(symbol, side, quantity, client_order_id=cid))
        if not permit:
            logger.info("orders.denied client_order_id=%s reason=%s", cid, permit.reason)
            return journal.mark_rejected(cid, f"not permitted: {permit.reason}")
    journal.mark_sent(cid)
    logger.info("orders.sending client_order_id=%s %s %s %s", cid, side, quantity, symbol)
    try:
        reply = await asyncio.wait_for(send(cid, symbol, side, quantity, type, price), send_timeout)
    except Exception as exc:  # whatever went wrong, the order may have reached the exchange
        why = _ambiguous(exc, send_timeout)
    else:
        try:
            return _record(journal, cid, _read(reply, cid))
        except ValueError as exc:
            why = f"the answer could not be read ({exc})"
    logger.warning("orders.ambiguous client_order_id=%s why=%s (looking it up, never resending)", cid, why)
    for attempt in range(lookups):
        if attempt:
            await asyncio.sleep(lookup_interval)
        answer = await _look_up(journal, lookup, cid, send_timeout)
        if answer is not None:
            return _record(journal, cid, answer)
    return _unresolved(journal, control, cid, f"{why}; {lookups} lookup(s) found no answer")


async def resolve_in_doubt(
    journal: OrderJournal,
    lookup: Lookup,
    *,
    control: OrderGate | None = None,
    lookup_timeout: float = 10.0,
    give_up_after: float | None = GIVE_UP_AFTER_SECONDS,
    clock: Callable[[], float] = time.time,
) -> list[JournalEntry]:
    """Look up every INTENT, SENT and UNRESOLVED order once, by its client id, and record what is found.

    Found: its state is recorded. Not found and still INTENT (it was never sent: ``submit`` marks an order
    sent before it sends it): CANCELED "never sent". Not found and SENT or UNRESOLVED: UNRESOLVED (not
    found can be lag), and with ``control``, ``control.order_unresolved``; but one the exchange still does
    not know ``give_up_after`` seconds (10 minutes) after it was written is CANCELED "the exchange never
    had it": no exchange takes that long to show an order, and without this an order whose request was
    lost would trip REDUCING again at every restart, with nothing an operator could do about it. (Should it
    ever appear after all, the next reconcile sees an open order the journal has closed: a mismatch, and it
    is canceled.) A lookup that fails leaves the order as it was. Returns those orders as they stand now,
    oldest first; call it at start, before trading.
    """
    resolved: list[JournalEntry] = []
    for entry in journal.in_doubt():
        cid = entry.client_order_id
        try:
            reply = await asyncio.wait_for(lookup(cid), lookup_timeout)
        except Exception as exc:
            journal.record_lookup(cid, f"failed: {_ambiguous(exc, lookup_timeout)}")
            if entry.state is not OrderState.INTENT:
                entry = _unresolved(
                    journal, control, cid, f"still in doubt at start: {_ambiguous(exc, lookup_timeout)}"
                )
            resolved.append(journal.get(cid) or entry)
            continue
        if reply is None:
            journal.record_lookup(cid, "not found")
            age = clock() - entry.created_at
            if entry.state is OrderState.INTENT:
                resolved.append(journal.mark_canceled(cid, "never sent"))
            elif give_up_after is not None and age >= give_up_after:
                why = f"the exchange never had it: still unknown {age:.0f} s after it was sent"
                resolved.append(journal.mark_canceled(cid, why))
            else:
                resolved.append(_unresolved(journal, control, cid, "sent, and the exchange does not know it at start"))
            continue
        try:
            answer = _read(reply, cid)
        except ValueError as exc:
            journal.record_lookup(cid, f"unreadable: {exc}")
            resolved.append(_unresolved(journal, control, cid, f"the lookup's answer could not be read ({exc})"))
            continue
        journal.record_lookup(cid, f"found {answer.state}")
        resolved.append(_record(journal, cid, answer))
    return resolved


async def _look_up(journal: OrderJournal, lookup: Lookup, cid: str, timeout: float) -> _Answer | None:
    try:
        reply = await asyncio.wait_for(lookup(cid), timeout)
    except Exception as exc:
        journal.record_lookup(cid, f"failed: {_ambiguous(exc, timeout)}")
        return None
    if reply is None:
        journal.record_lookup(cid, "not found")
        return None
    try:
        answer = _read(reply, cid)
    except ValueError as exc:
        journal.record_lookup(cid, f"unreadable: {exc}")
        return None
    journal.record_lookup(cid, f"found {answer.state}")
    return answer


def _unresolved(journal: OrderJournal, control: OrderGate | None, cid: str, why: str) -> JournalEntry:
    entry = journal.mark_unresolved(cid, why)
    logger.error("orders.unresolved client_order_id=%s why=%s", cid, why)
    if control is not None:
        control.order_unresolved(cid, why)
    return entry


def _read(reply: Any, cid: str) -> _Answer:
    """The exchange's answer about order ``cid``; ValueError when it cannot be read as one."""
    if not isinstance(reply, Mapping):
        raise ValueError(f"not an object but {type(reply).__name__}")
    named = reply.get("client_order_id")
    if named is not None and named != cid:
        raise ValueError(f"it is about order {named!r}, not {cid!r}")
    status = reply.get("status")
    state = _STATUSES.get(status) if isinstance(status, str) else None
    if state is None:
        raise ValueError(f"status {status!r} is none of {', '.join(_STATUSES)}")
    filled = reply.get("filled_quantity", 0.0)
    if filled is None:
        filled = 0.0
    if not _number(filled) or filled < 0:
        raise ValueError(f"filled_quantity {filled!r} is not a number of 0 or more")
    avg = reply.get("avg_price")
    if avg is not None and (not _number(avg) or avg <= 0):
        raise ValueError(f"avg_price {avg!r} is not a price")
    if state is OrderState.FILLED and (filled == 0 or avg is None):
        raise ValueError("it says filled, with nothing filled or no price")
    order_id = reply.get("order_id")
    reason = reply.get("reason")
    return _Answer(
        state=state,
        filled_quantity=float(filled),
        avg_price=None if avg is None else float(avg),
        exchange_order_id=None if order_id is None else str(order_id),
        reason=None if reason is None else str(reason),
    )


def _record(journal: OrderJournal, cid: str, answer: _Answer) -> JournalEntry:
    """Write the answer in one transaction: the journal shows all of it, or none of it."""
    with journal.transaction():
        entry = journal.get(cid)
        assert entry is not None
        if answer.state is OrderState.REJECTED and answer.filled_quantity == 0:
            entry = journal.mark_rejected(cid, answer.reason or "rejected by the exchange")
        else:
            if entry.state in IN_DOUBT_STATES:
                entry = journal.mark_acked(cid, answer.exchange_order_id)
            if answer.filled_quantity > 0:
                entry = journal.record_fill(cid, answer.filled_quantity, answer.avg_price)
            if answer.state in (OrderState.CANCELED, OrderState.REJECTED) and not entry.final:
                entry = journal.mark_canceled(cid, answer.reason)
    logger.info("orders.recorded client_order_id=%s state=%s", cid, entry.state)
    return entry


def _ambiguous(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
