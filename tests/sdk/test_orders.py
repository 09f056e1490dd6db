"""submit() and resolve_in_doubt() against a real paper exchange over loopback HTTP, with a real journal and
a real Control: an ambiguous outcome is looked up, never sent twice."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.control import Control, Mode
from horus_sdk.control_files import issue_command, read_status
from horus_sdk.decisions import tail
from horus_sdk.journal import OrderJournal, OrderState
from horus_sdk.orders import resolve_in_doubt, submit
from tests.exchange_support import ExchangeClient, running_exchange
from tests.support import SilentServer, wait_until

SEND_TIMEOUT = 0.5


class Broker:
    """The bot's side of the exchange: send() and lookup() over urllib in a thread, as a stdlib bot does."""

    def __init__(self, url: str, lookup_url: str | None = None) -> None:
        self.client = ExchangeClient(url, timeout=3.0)
        self.lookup_url = lookup_url or url
        self.sent: list[str] = []
        self.looked_up: list[str] = []

    async def send(self, cid: str, symbol: str, side: str, quantity: float, type: str, price: float | None) -> Any:
        self.sent.append(cid)
        reply = await asyncio.to_thread(
            self.client.place, cid, symbol=symbol, side=side, quantity=quantity, type=type, price=price
        )
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {reply.body}")
        return reply.body

    async def lookup(self, cid: str) -> Any:
        self.looked_up.append(cid)
        reply = await asyncio.to_thread(ExchangeClient(self.lookup_url, timeout=2.0).get, f"/orders/{cid}")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {reply.body}")
        return reply.body


@pytest.fixture
def exchange() -> Iterator[Any]:
    with running_exchange({"BTC-USD": 50000.0}) as running:
        yield running


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[OrderJournal]:
    with OrderJournal(tmp_path / "orders.db") as opened:
        yield opened


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Control]:
    async with Control(tmp_path / "control", poll_interval=0.02) as running:
        running.reconciled({})
        yield running


def posts(exchange: Any, cid: str) -> list[dict[str, Any]]:
    """Every POST /orders the exchange received for this client order id."""
    return [entry for entry in exchange.orders_received() if entry["client_order_id"] == cid]


async def test_a_filled_order_is_journaled_from_intent_to_filled(exchange, journal, control) -> None:
    broker = Broker(exchange.url)
    entry = await submit(
        journal, broker.send, broker.lookup, symbol="BTC-USD", side="buy", quantity=0.5, control=control
    )
    assert entry.state is OrderState.FILLED
    assert (entry.filled_quantity, entry.avg_price) == (0.5, 50000.0)
    assert entry.exchange_order_id == exchange.order(entry.client_order_id)["order_id"]
    assert [e.state for e in journal.events(entry.client_order_id)] == [
        OrderState.INTENT,
        OrderState.SENT,
        OrderState.ACKED,
        OrderState.FILLED,
    ]
    assert len(posts(exchange, entry.client_order_id)) == 1 and broker.looked_up == []


async def test_a_partial_fill_and_a_resting_limit_order_are_open_orders(journal) -> None:
    with running_exchange({"BTC-USD": 50000.0}, max_fill=0.3) as exchange:
        broker = Broker(exchange.url)
        partial = await submit(journal, broker.send, broker.lookup, symbol="BTC-USD", side="buy", quantity=1.0)
        resting = await submit(
            journal, broker.send, broker.lookup, symbol="BTC-USD", side="buy", quantity=0.1, type="limit", price=1.0
        )
    assert partial.state is OrderState.PARTIALLY_FILLED and partial.filled_quantity == 0.3
    assert resting.state is OrderState.ACKED and resting.filled_quantity == 0
    assert [e.client_order_id for e in journal.open_orders()] == [partial.client_order_id, resting.client_order_id]


async def test_an_exchange_reject_is_recorded_with_its_words_and_not_looked_up(exchange, journal) -> None:
    exchange.inject("reject", count=1, reason="insufficient margin")
    broker = Broker(exchange.url)
    entry = await submit(journal, broker.send, broker.lookup, symbol="BTC-USD", side="buy", quantity=1.0)
    assert entry.state is OrderState.REJECTED and entry.reason == "insufficient margin"
    assert broker.looked_up == []


async def test_a_denied_permit_is_recorded_as_rejected_and_nothing_is_sent(exchange, journal, tmp_path) -> None:
    broker = Broker(exchange.url)
    async with Control(tmp_path / "unreconciled", poll_interval=0.02) as reconciling:
        entry = await submit(
            journal, broker.send, broker.lookup, symbol="BTC-USD", side="buy", quantity=1.0, control=reconciling
        )
    assert entry.state is OrderState.REJECTED
    assert entry.reason is not None and entry.reason.startswith("not permitted: reconciling")
    assert broker.sent == [] and exchange.orders_received() == []


async def test_the_intent_is_committed_before_the_send_begins(exchange, journal) -> None:
    broker = Broker(exchange.url)
    seen: list[Any] = []

    async def send_and_peek(cid: str, *order: Any) -> Any:
        # A second connection sees only what was committed: the order is on disk before it leaves.
        other = sqlite3.connect(journal.path)
        try:
            seen.append(other.execute("SELECT state FROM orders WHERE client_order_id = ?", (cid,)).fetchone())
            seen.append(
                other.execute("SELECT state FROM events WHERE client_order_id = ? ORDER BY id", (cid,)).fetchall()
            )
        finally:
            other.close()
        return await broker.send(cid, *order)

    entry = await submit(journal, send_and_peek, broker.lookup, symbol="BTC-USD", side="buy", quantity=1.0)
    assert seen == [("sent",), [("intent",), ("sent",)]]
    assert entry.state is OrderState.FILLED


async def test_a_hung_send_is_looked_up_and_found_and_never_resent(exchange, journal, control) -> None:
    exchange.inject("hang", count=1)
    broker = Broker(exchange.url)
    entry = await submit(
        journal,
        broker.send,
        broker.lookup,
        symbol="BTC-USD",
        side="buy",
        quantity=1.0,
        control=control,
        send_timeout=SEND_TIMEOUT,
        lookup_interval=0.05,
    )
    assert entry.state is OrderState.FILLED and entry.lookups == 1
    assert [p["outcome"] for p in posts(exchange, entry.client_order_id)] == ["hung"]
    assert control.mode is Mode.ACTIVE


async def test_a_hung_send_whose_lookups_also_hang_is_unresolved_and_the_bot_reduces(
    exchange, journal, control
) -> None:
    exchange.inject("hang", count=1)
    silent = SilentServer()  # the exchange's query API is down too
    try:
        broker = Broker(exchange.url, lookup_url=silent.url(""))
        entry = await submit(
            journal,
            broker.send,
            broker.lookup,
            symbol="BTC-USD",
            side="buy",
            quantity=1.0,
            control=control,
            send_timeout=SEND_TIMEOUT,
            lookups=3,
            lookup_interval=0.05,
        )
    finally:
        silent.close()
    cid = entry.client_order_id
    assert entry.state is OrderState.UNRESOLVED and entry.lookups == 3
    assert entry.reason == f"no answer within {SEND_TIMEOUT:g} s; 3 lookup(s) found no answer"
    assert broker.sent == [cid] and [p["outcome"] for p in posts(exchange, cid)] == ["hung"]
    assert control.mode is Mode.REDUCING
    assert control.cause is not None and control.cause.name == "unresolved_order"
    assert control.cause.reason.startswith(f"order {cid} is unresolved (no answer within")
    assert [c.name for c in control.causes if c.latched] == ["unresolved_order"]
    assert journal.in_doubt()[0].client_order_id == cid
    # The exchange did take it: only a lookup, never a second send, can find that out.
    assert exchange.order(cid)["status"] == "filled"


async def test_a_dropped_connection_is_looked_up_not_resent_and_stays_unresolved(exchange, journal, control) -> None:
    exchange.inject("disconnect", count=1)
    broker = Broker(exchange.url)
    entry = await submit(
        journal,
        broker.send,
        broker.lookup,
        symbol="BTC-USD",
        side="buy",
        quantity=1.0,
        control=control,
        lookups=3,
        lookup_interval=0.05,
    )
    cid = entry.client_order_id
    assert broker.sent == [cid] and broker.looked_up == [cid, cid, cid]
    assert [p["outcome"] for p in posts(exchange, cid)] == ["disconnected"]
    # "Not found" right after a lost answer can be lag, so it is not taken as "never placed".
    assert entry.state is OrderState.UNRESOLVED and entry.lookups == 3
    assert control.mode is Mode.REDUCING


async def test_an_answer_that_cannot_be_read_is_looked_up(exchange, journal) -> None:
    broker = Broker(exchange.url)

    async def send_then_garble(cid: str, *order: Any) -> Any:
        await broker.send(cid, *order)
        return {"status": "mostly fine"}

    entry = await submit(
        journal, send_then_garble, broker.lookup, symbol="BTC-USD", side="sell", quantity=0.2, lookup_interval=0.05
    )
    assert entry.state is OrderState.FILLED and entry.lookups == 1
    assert len(posts(exchange, entry.client_order_id)) == 1


async def test_an_answer_about_another_order_is_not_believed(exchange, journal) -> None:
    broker = Broker(exchange.url)
    other = ExchangeClient(exchange.url).place("someone-else", quantity=3.0).body

    async def send_wrong_answer(cid: str, *order: Any) -> Any:
        await broker.send(cid, *order)
        return other

    entry = await submit(
        journal, send_wrong_answer, broker.lookup, symbol="BTC-USD", side="buy", quantity=0.2, lookup_interval=0.05
    )
    assert entry.state is OrderState.FILLED and entry.filled_quantity == 0.2 and entry.lookups == 1


async def test_resolve_in_doubt_records_what_the_exchange_knows_and_cancels_what_was_never_sent(
    exchange, tmp_path, control
) -> None:
    path = tmp_path / "orders.db"
    client = ExchangeClient(exchange.url)
    with OrderJournal(path) as before_the_crash:
        never_sent = before_the_crash.intend("BTC-USD", "buy", 1.0).client_order_id
        landed = before_the_crash.intend("BTC-USD", "buy", 0.4).client_order_id
        before_the_crash.mark_sent(landed)
        client.place(landed, quantity=0.4)
        lost = before_the_crash.intend("BTC-USD", "sell", 0.1).client_order_id
        before_the_crash.mark_sent(lost)
        resting = before_the_crash.intend("BTC-USD", "buy", 0.2, "limit", 100.0).client_order_id
        before_the_crash.mark_sent(resting)
        before_the_crash.mark_unresolved(resting, "no answer")
        client.place(resting, quantity=0.2, type="limit", price=100.0)
    broker = Broker(exchange.url)
    with OrderJournal(path) as journal:
        resolved = await resolve_in_doubt(journal, broker.lookup, control=control)
        states = {e.client_order_id: e.state for e in resolved}
        assert states == {
            never_sent: OrderState.CANCELED,
            landed: OrderState.FILLED,
            lost: OrderState.UNRESOLVED,
            resting: OrderState.ACKED,
        }
        assert journal.get(never_sent).reason == "never sent"  # type: ignore[union-attr]
        assert [e.client_order_id for e in journal.in_doubt()] == [lost]
    assert broker.sent == []
    assert control.mode is Mode.REDUCING and control.cause is not None
    assert control.cause.reason.startswith(f"order {lost} is unresolved")


async def test_resolve_in_doubt_leaves_an_order_whose_lookup_fails_in_doubt(tmp_path) -> None:
    with OrderJournal(tmp_path / "orders.db") as journal:
        intent = journal.intend("BTC-USD", "buy", 1.0).client_order_id

        async def broken_lookup(cid: str) -> Any:
            raise ConnectionRefusedError("the exchange is down")

        resolved = await resolve_in_doubt(journal, broken_lookup)
        assert [(e.client_order_id, e.state) for e in resolved] == [(intent, OrderState.INTENT)]
        assert journal.get(intent).lookups == 1  # type: ignore[union-attr]


async def test_an_order_the_exchange_still_does_not_know_long_after_it_was_sent_is_taken_as_never_received(
    tmp_path,
) -> None:
    with OrderJournal(tmp_path / "orders.db") as journal:
        sent = journal.intend("BTC-USD", "buy", 1.0).client_order_id
        journal.mark_sent(sent)
        written = journal.get(sent).created_at  # type: ignore[union-attr]

        async def unknown(cid: str) -> Any:
            return None

        soon = await resolve_in_doubt(journal, unknown, clock=lambda: written + 5)
        assert [e.state for e in soon] == [OrderState.UNRESOLVED], "not found can be lag"
        later = await resolve_in_doubt(journal, unknown, clock=lambda: written + 700)
        assert [e.state for e in later] == [OrderState.CANCELED]
        assert later[0].reason == "the exchange never had it: still unknown 700 s after it was sent"
        assert journal.in_doubt() == []


# -- Control.order_unresolved -------------------------------------------------------------------------------


async def test_order_unresolved_reduces_once_per_order_latches_through_a_restart_until_a_resume(tmp_path) -> None:
    directory = tmp_path / "control"
    async with Control(directory, poll_interval=0.02) as control:
        control.reconciled({"BTC-USD": 1.0})
        control.order_unresolved("h1-a", "no answer within 10 s")
        control.order_unresolved("h1-a", "asked again")
        assert control.mode is Mode.REDUCING
        assert [c.reason for c in control.causes] == [
            "order h1-a is unresolved (no answer within 10 s): only orders that reduce a position until it is resolved"
        ]
        control.order_unresolved("h1-a0", "another order")  # an id that begins like the first is another order
        assert len(control.causes) == 2
        assert not control.permit({"symbol": "BTC-USD", "side": "buy", "quantity": 1.0})
        assert control.permit({"symbol": "BTC-USD", "side": "sell", "quantity": 1.0})
    trips = [r for r in tail(directory / "decisions.jsonl", 100) if r["kind"] == "control.trip"]
    assert [r["trip"]["name"] for r in trips] == ["unresolved_order", "unresolved_order"]
    assert [c["name"] for c in read_status(directory)["latched"]] == ["unresolved_order", "unresolved_order"]

    async with Control(directory, poll_interval=0.02) as restarted:
        restarted.reconciled({"BTC-USD": 1.0})
        restarted.order_unresolved("h1-a", "still unknown")  # restored: not a second cause
        assert restarted.mode is Mode.REDUCING and len(restarted.causes) == 2
        issue_command(directory, "resume", "order h1-a found filled at the exchange", "test")
        await wait_until(lambda: restarted.mode is Mode.ACTIVE, timeout=5.0)


def test_the_silent_lookup_server_really_never_answers() -> None:
    """The UNRESOLVED test rests on this: a GET to it times out instead of answering."""
    silent = SilentServer()
    try:
        with pytest.raises(TimeoutError):
            urllib.request.urlopen(silent.url("/orders/x"), timeout=0.2)
    finally:
        silent.close()
