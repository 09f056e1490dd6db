"""Reconcile with the broker: the broker is the truth, item by item, and partial knowledge is never taken as whole."""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.control import Control
from horus_sdk.control_files import Mode
from horus_sdk.reconcile import (
    BrokerFill,
    BrokerOrder,
    BrokerReport,
    Fetched,
    Kind,
    KnownOrder,
    Reconciliation,
    epoch_of_client_order_id,
    reconcile,
    run_reconcile,
)

EPOCH = 3


def known(cid: str, symbol: str = "BTC-USD", side: str = "buy", quantity: float = 1.0, **kw: Any) -> KnownOrder:
    epoch = kw.pop("epoch", epoch_of_client_order_id(cid))
    return KnownOrder(
        cid, epoch, symbol, side, quantity, kw.pop("state", "ACKED"), kw.pop("filled_quantity", 0.0), **kw
    )


def broker(cid: str | None, symbol: str = "BTC-USD", side: str = "buy", quantity: float = 1.0, filled: float = 0.0):
    return BrokerOrder(cid, f"X-{cid}", symbol, side, quantity, filled, "open" if not filled else "partially_filled")


def fill(fill_id: str, cid: str | None, quantity: float, symbol: str = "BTC-USD", side: str = "buy", price=100.0):
    return BrokerFill(fill_id, cid, symbol, side, quantity, price, 1_700_000_000.0)


def report(orders=(), positions: Mapping[str, float] | None = None, fills=()) -> BrokerReport:
    return BrokerReport(list(orders), dict(positions or {}), list(fills), True, None)


def kinds(result: Reconciliation) -> list[tuple[str, str | None, str | None]]:
    found = [(item.kind.value, item.symbol, item.client_order_id) for item in result.items]
    return sorted(found, key=lambda kind: (kind[0], kind[1], kind[2] or ""))


# -- the id format ---------------------------------------------------------------------------------------------


def test_our_ids_carry_their_epoch_and_anyone_elses_do_not() -> None:
    assert epoch_of_client_order_id("h3-1") == 3
    assert epoch_of_client_order_id("hz-a") == 35
    assert epoch_of_client_order_id("h10-zz") == 36
    for foreign in ("web-123", "h-1", "h3", "h3-", "x3-1", "h3-1-2", "h3_1", "", "h3-1 "):
        assert epoch_of_client_order_id(foreign) is None, foreign


# -- item by item ----------------------------------------------------------------------------------------------


def test_an_order_both_sides_know_with_the_same_remaining_and_an_agreed_position_are_matched() -> None:
    result = reconcile(
        [known("h3-1", filled_quantity=0.25, state="PARTIALLY_FILLED")],
        {"BTC-USD": 0.25},
        report([broker("h3-1", filled=0.25)], {"BTC-USD": 0.25}),
        current_epoch=EPOCH,
    )
    assert kinds(result) == [("matched", "BTC-USD", None), ("matched", "BTC-USD", "h3-1")]
    assert result.clean and result.complete
    assert result.positions == {"BTC-USD": 0.25}
    assert result.to_cancel == () and result.fills_to_apply == ()


def test_a_fill_made_while_the_bot_was_down_is_listed_to_apply_with_its_new_cumulative_quantity() -> None:
    # The order filled in two parts while the bot was down, so it is no longer open at the broker.
    result = reconcile(
        [known("h2-7", quantity=0.5, epoch=2)],
        {},
        report([], {"BTC-USD": 0.5}, [fill("f1", "h2-7", 0.2, price=100.0), fill("f2", "h2-7", 0.3, price=110.0)]),
        current_epoch=EPOCH,
    )
    assert kinds(result) == [("fill_while_down", "BTC-USD", "h2-7"), ("matched", "BTC-USD", None)]
    (applied,) = result.fills_to_apply
    assert (applied.client_order_id, applied.filled_quantity, applied.previous_quantity) == ("h2-7", 0.5, 0.0)
    assert applied.avg_price == pytest.approx(106.0)
    assert result.clean
    assert result.positions == {"BTC-USD": 0.5}


def test_a_partial_fill_on_an_order_still_open_comes_from_the_brokers_cumulative_quantity() -> None:
    result = reconcile(
        [known("h3-2", quantity=1.0, filled_quantity=0.1, state="PARTIALLY_FILLED")],
        {"BTC-USD": 0.1},
        report([broker("h3-2", filled=0.4)], {"BTC-USD": 0.4}),
        current_epoch=EPOCH,
    )
    assert ("fill_while_down", "BTC-USD", "h3-2") in kinds(result)
    assert ("matched", "BTC-USD", "h3-2") in kinds(result)  # the same remaining once the fill is applied
    (applied,) = result.fills_to_apply
    assert (applied.filled_quantity, applied.previous_quantity, applied.avg_price) == (0.4, 0.1, None)
    assert result.clean


def test_fills_the_journal_already_has_or_the_broker_repeats_are_not_applied_twice() -> None:
    # The checkpoint lags: f1 is already in the journal's 0.2; f2 is reported twice.
    result = reconcile(
        [known("h3-3", quantity=0.6, filled_quantity=0.2, state="PARTIALLY_FILLED")],
        {"BTC-USD": 0.2},
        report([], {"BTC-USD": 0.6}, [fill("f1", "h3-3", 0.2), fill("f2", "h3-3", 0.4), fill("f2", "h3-3", 0.4)]),
        current_epoch=EPOCH,
    )
    (applied,) = result.fills_to_apply
    assert applied.filled_quantity == pytest.approx(0.6)
    assert result.positions == {"BTC-USD": 0.6}
    assert result.clean, result.summary()

    again = reconcile(
        [known("h3-3", quantity=0.6, filled_quantity=0.6, state="FILLED")],
        {"BTC-USD": 0.6},
        report([], {"BTC-USD": 0.6}, [fill("f1", "h3-3", 0.2), fill("f2", "h3-3", 0.4)]),
        current_epoch=EPOCH,
    )
    assert again.fills_to_apply == ()
    assert kinds(again) == [("matched", "BTC-USD", None)]


def test_a_sell_filled_while_down_lowers_the_position_we_expect() -> None:
    result = reconcile(
        [known("h2-1", side="sell", quantity=0.3, epoch=2)],
        {"BTC-USD": 1.0},
        report([], {"BTC-USD": 0.7}, [fill("f1", "h2-1", 0.3, side="sell")]),
        current_epoch=EPOCH,
    )
    assert result.clean
    assert result.positions == {"BTC-USD": pytest.approx(0.7)}


def test_an_open_order_of_ours_from_an_older_epoch_is_to_cancel_whether_or_not_the_journal_still_has_it() -> None:
    result = reconcile(
        [known("h2-4", epoch=2), known("h3-5")],
        {},
        report([broker("h2-4"), broker("h1-9"), broker("h3-5")], {}),
        current_epoch=EPOCH,
    )
    assert result.to_cancel == ("h2-4", "h1-9")
    assert kinds(result) == [
        ("matched", "BTC-USD", "h3-5"),
        ("stale_epoch", "BTC-USD", "h1-9"),
        ("stale_epoch", "BTC-USD", "h2-4"),
    ]
    assert result.clean  # canceling them is the remedy; nothing is unknown


def test_an_order_or_a_position_the_bot_did_not_place_is_external_reported_and_kept() -> None:
    result = reconcile(
        [known("h3-1")],
        {"BTC-USD": 0.5},
        report(
            # the user's own order, another tool's id, one from an epoch this journal has not reached
            [broker("h3-1"), broker(None, "ETH-USD"), broker("web-123"), broker("h9-1")],
            {"BTC-USD": 0.5, "ETH-USD": 2.0},
        ),
        current_epoch=EPOCH,
    )
    assert result.to_cancel == ()
    external = [(i.symbol, i.client_order_id) for i in result.items if i.kind is Kind.EXTERNAL]
    assert sorted(external, key=str) == sorted(
        [("ETH-USD", None), ("BTC-USD", "web-123"), ("BTC-USD", "h9-1"), ("ETH-USD", None)], key=str
    )
    # The user's ETH is not the bot's to manage (or flatten): kept apart from the positions it adopts.
    assert result.positions == {"BTC-USD": 0.5}
    assert result.external_positions == {"ETH-USD": 2.0}
    assert result.clean


def test_a_position_that_differs_after_the_fills_goes_to_the_broker_and_is_flagged() -> None:
    result = reconcile(
        [known("h2-1", quantity=0.2, epoch=2)],
        {"BTC-USD": 1.0, "ETH-USD": 3.0},
        report([], {"BTC-USD": 1.5}, [fill("f1", "h2-1", 0.2)]),
        current_epoch=EPOCH,
    )
    mismatches = {i.symbol: i for i in result.items if i.kind is Kind.MISMATCH}
    assert set(mismatches) == {"BTC-USD", "ETH-USD"}
    btc = mismatches["BTC-USD"]
    assert (btc.ours, btc.theirs) == (pytest.approx(1.2), 1.5)
    assert "1.2" in btc.detail and "1.5" in btc.detail and "broker" in btc.detail
    # The broker wins: ETH we thought we held is gone, and adopting the result says so.
    assert result.positions == {"BTC-USD": 1.5, "ETH-USD": 0.0}
    assert not result.clean and result.complete
    assert result.incident


def test_a_position_in_a_symbol_we_have_an_order_working_in_is_ours_and_a_mismatch_not_external() -> None:
    result = reconcile(
        [known("h3-1", symbol="ETH-USD", state="SENT")],
        {},
        report([broker("h3-1", "ETH-USD", filled=0.5)], {"ETH-USD": 0.7}),
        current_epoch=EPOCH,
    )
    assert ("mismatch", "ETH-USD", None) in kinds(result)
    assert result.positions == {"ETH-USD": 0.7} and result.external_positions == {}


def test_an_order_the_journal_has_open_that_the_broker_has_not_and_no_fill_explains_is_lost() -> None:
    result = reconcile(
        [known("h3-1"), known("h3-2", quantity=1.0), known("h3-3", state="CANCELED")],
        {},
        report([], {"BTC-USD": 0.4}, [fill("f1", "h3-2", 0.4)]),
        current_epoch=EPOCH,
    )
    lost = sorted(i.client_order_id or "" for i in result.items if i.kind is Kind.LOST)
    # h3-2 filled 0.4 of 1.0 and the rest is not working: the fill is applied and the rest is lost too.
    assert lost == ["h3-1", "h3-2"]
    assert [a.client_order_id for a in result.fills_to_apply] == ["h3-2"]
    assert not result.clean and not result.incident  # an order to look up, not a position gone wrong


def test_an_order_the_journal_closed_but_the_broker_still_works_is_canceled_and_flagged() -> None:
    result = reconcile(
        [known("h3-1", state="CANCELED")],
        {},
        report([broker("h3-1")], {}),
        current_epoch=EPOCH,
    )
    assert result.to_cancel == ("h3-1",)
    assert kinds(result) == [("mismatch", "BTC-USD", "h3-1")]
    assert not result.clean


def test_an_incomplete_report_blocks_whatever_it_says() -> None:
    partial = BrokerReport([broker("h2-1")], {"BTC-USD": 9.0}, [], False, "fills: page 3 of 7 failed")
    result = reconcile([known("h2-1", epoch=2)], {"BTC-USD": 1.0}, partial, current_epoch=EPOCH)
    assert not result.complete and not result.clean
    assert result.incomplete_reason == "fills: page 3 of 7 failed"
    # Nothing from half a report is acted on: no cancel, no fill, no position to adopt.
    assert result.items == () and result.to_cancel == () and result.fills_to_apply == ()
    assert result.positions is None
    assert "RECONCILING" in result.summary() and "page 3 of 7" in result.summary()


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (report([broker("h3-1")], {"BTC-USD": float("nan")}), "BTC-USD"),
        (report([], {}, [fill("f1", "h3-1", 0.1, side="long")]), "side"),
        (report([BrokerOrder("h3-1", "X", "BTC-USD", "buy", 1.0, 2.0, "open")], {}), "filled"),
        (report([], {}, [fill("f1", "h3-1", -0.1)]), "quantity"),
    ],
)
def test_a_report_that_does_not_make_sense_is_incomplete_and_says_why(bad: BrokerReport, words: str) -> None:
    result = reconcile([known("h3-1")], {}, bad, current_epoch=EPOCH)
    assert not result.complete and not result.clean
    assert result.incomplete_reason is not None and words in result.incomplete_reason


def test_a_journal_state_may_be_an_enum_as_the_journal_keeps_it() -> None:
    class OrderState(enum.Enum):
        ACKED = "acked"
        FILLED = "filled"

    result = reconcile(
        [known("h3-1", state=OrderState.ACKED), known("h3-2", state=OrderState.FILLED, filled_quantity=1.0)],
        {"BTC-USD": 1.0},
        report([], {"BTC-USD": 1.0}),
        current_epoch=EPOCH,
    )
    # The ACKED one may be working and is not at the broker; the FILLED one is done.
    assert kinds(result) == [("lost", "BTC-USD", "h3-1"), ("matched", "BTC-USD", None)]


# -- what a person and status.json read ------------------------------------------------------------------------


def test_the_summary_is_one_line_with_each_count() -> None:
    result = reconcile(
        [known("h3-1"), known("h3-2"), known("h2-3", quantity=0.5, epoch=2), known("h2-4", epoch=2)],
        {"BTC-USD": 1.0},
        report(
            [broker("h3-1"), broker("h3-2"), broker("h2-4"), broker("web-1")],
            {"BTC-USD": 1.5},
            [fill("f1", "h2-3", 0.5)],
        ),
        current_epoch=EPOCH,
    )
    assert result.summary() == (
        "reconciled: 3 matched, 1 fill while down applied, 1 external kept, 1 stale order canceled, 0 mismatches"
    )
    assert result.clean


def test_the_summary_names_lost_orders_and_mismatches_when_there_are_some() -> None:
    result = reconcile([known("h3-1"), known("h3-2")], {"BTC-USD": 1.0}, report([], {}), current_epoch=EPOCH)
    assert result.summary() == (
        "reconciled: 0 matched, 0 fills while down applied, 0 external kept, 0 stale orders canceled, "
        "1 mismatch, 2 lost orders"
    )


def test_to_json_has_the_counts_and_the_differences_bounded() -> None:
    orders = [known(f"h3-{n:x}") for n in range(1, 121)]
    result = reconcile(orders, {}, report([], {}), current_epoch=EPOCH)
    data = json.loads(json.dumps(result.to_json()))
    assert data["complete"] is True and data["clean"] is False
    assert data["counts"]["lost"] == 120 and data["counts"]["matched"] == 0
    assert len(data["differences"]) == 50 and data["differences_left_off"] == 70
    first = data["differences"][0]
    assert first["kind"] == "lost" and first["client_order_id"] == "h3-1" and first["detail"]
    assert data["summary"] == result.summary()
    assert len(result.to_json(limit=5)["differences"]) == 5


def test_to_json_of_an_incomplete_report_names_the_reason() -> None:
    result = reconcile([], {}, BrokerReport([], {}, [], False, "positions: timed out"), current_epoch=EPOCH)
    data = result.to_json()
    assert data["complete"] is False and data["clean"] is False
    assert data["incomplete_reason"] == "positions: timed out" and data["positions"] is None


# -- the control plane ---------------------------------------------------------------------------------------


async def test_only_a_complete_reconciliation_ends_reconciling(tmp_path: Path) -> None:
    async with Control(tmp_path / "control") as control:
        incomplete = reconcile([], {}, BrokerReport([], {}, [], False, "timed out"), current_epoch=EPOCH)
        assert incomplete.adopt(control) is False
        assert control.mode is Mode.RECONCILING
        assert control.status()["reconcile"]["complete"] is False, "the status says why it still reconciles"

        mismatch = reconcile([], {"BTC-USD": 1.0}, report([], {"BTC-USD": 2.0}), current_epoch=EPOCH)
        assert mismatch.adopt(control) is True
        # The broker wins (its positions are adopted), and until a person looks, only reducing orders go out.
        assert control.mode is Mode.REDUCING
        assert control.cause is not None and control.cause.name == "reconcile_mismatch"
        assert control.status()["exposure"]["positions"] == {"BTC-USD": 2.0}
        assert control.status()["reconcile"]["incident"] is True


# -- run_reconcile ---------------------------------------------------------------------------------------------


class FakeBroker:
    """Async fetchers over plain data; one of them can be made to hang or raise."""

    def __init__(self, orders=(), positions=None, fills=()) -> None:
        self.orders = list(orders)
        self.positions_ = positions if positions is not None else {}
        self.fills = list(fills)
        self.since: list[Any] = []
        self.hang: set[str] = set()
        self.fail: dict[str, BaseException] = {}
        self.never = asyncio.Event()

    async def _call(self, name: str, value: Any) -> Any:
        if name in self.fail:
            raise self.fail[name]
        if name in self.hang:
            await self.never.wait()
        return value

    async def fetch_open_orders(self) -> Any:
        return await self._call("orders", self.orders)

    async def fetch_positions(self) -> Any:
        return await self._call("positions", self.positions_)

    async def fetch_fills_since(self, checkpoint: Any) -> Any:
        self.since.append(checkpoint)
        return await self._call("fills", self.fills)

    async def run(self, known_orders=(), known_positions=None, *, timeout: float = 5.0) -> Reconciliation:
        return await run_reconcile(
            self.fetch_open_orders,
            self.fetch_positions,
            self.fetch_fills_since,
            "cursor-41",
            list(known_orders),
            dict(known_positions or {}),
            EPOCH,
            timeout=timeout,
        )


async def test_run_reconcile_fetches_fills_since_the_checkpoint_and_reconciles() -> None:
    fake = FakeBroker([broker("h2-1")], {"BTC-USD": 0.5}, [fill("f1", "h3-1", 0.5)])
    result = await fake.run([known("h3-1", quantity=0.5, state="SENT"), known("h2-1", epoch=2)])
    assert fake.since == ["cursor-41"]
    assert result.complete and result.clean
    assert result.to_cancel == ("h2-1",)
    assert [a.client_order_id for a in result.fills_to_apply] == ["h3-1"]


async def test_run_reconcile_takes_the_brokers_own_shapes_as_mappings() -> None:
    # What the paper exchange answers for GET /orders?status=open and GET /positions.
    order = {
        "order_id": "7",
        "client_order_id": "h3-1",
        "symbol": "BTC-USD",
        "side": "buy",
        "type": "limit",
        "quantity": 1.0,
        "price": 1.0,
        "status": "open",
        "filled_quantity": 0.0,
        "remaining_quantity": 1.0,
    }
    a_fill = {"fill_id": "f9", "client_order_id": None, "symbol": "ETH-USD", "side": "sell", "quantity": 1.0}
    fake = FakeBroker([order], {"BTC-USD": 0.0}, [{**a_fill, "price": 3000.0, "at": 1.0}])
    result = await fake.run([known("h3-1")])
    assert result.complete, result.incomplete_reason
    assert kinds(result) == [("matched", "BTC-USD", "h3-1")]


async def test_a_fetcher_that_does_not_answer_in_time_makes_the_report_incomplete() -> None:
    fake = FakeBroker([broker("h2-1")], {"BTC-USD": 1.0})
    fake.hang.add("positions")
    started = time.monotonic()
    result = await fake.run([known("h2-1", epoch=2)], {"BTC-USD": 1.0}, timeout=0.2)
    assert time.monotonic() - started < 2.0
    assert not result.complete and not result.clean and result.to_cancel == ()
    assert result.incomplete_reason is not None
    assert "fetch_positions" in result.incomplete_reason and "0.2 s" in result.incomplete_reason


async def test_a_fetcher_that_raises_makes_the_report_incomplete_and_names_the_error() -> None:
    fake = FakeBroker()
    fake.fail["fills"] = ConnectionResetError("connection reset by peer")
    result = await fake.run()
    assert not result.complete
    assert result.incomplete_reason is not None
    assert "fetch_fills_since" in result.incomplete_reason and "connection reset by peer" in result.incomplete_reason


async def test_a_fetcher_cancelled_on_its_own_is_incomplete_but_cancelling_run_reconcile_cancels_it() -> None:
    fake = FakeBroker()
    fake.fail["orders"] = asyncio.CancelledError()
    result = await fake.run()
    assert not result.complete and "fetch_open_orders" in (result.incomplete_reason or "")

    fake = FakeBroker()
    fake.hang.add("fills")
    task = asyncio.create_task(fake.run())
    while not fake.since:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_fetcher_can_say_itself_that_its_answer_is_incomplete() -> None:
    fake = FakeBroker()
    fake.fills = Fetched([fill("f1", "h3-1", 0.1)], complete=False, reason="the broker keeps fills for 7 days only")
    result = await fake.run([known("h3-1")])
    assert not result.complete
    assert result.incomplete_reason is not None and "7 days" in result.incomplete_reason

    fake.fills = Fetched([], complete=True)
    assert (await fake.run()).complete


async def test_a_fetcher_that_answers_nonsense_makes_the_report_incomplete() -> None:
    fake = FakeBroker(orders=[{"client_order_id": "h3-1", "symbol": "BTC-USD"}])
    result = await fake.run()
    assert not result.complete
    assert result.incomplete_reason is not None and "fetch_open_orders" in result.incomplete_reason

    fake = FakeBroker(positions=["BTC-USD"])
    assert not (await fake.run()).complete


# -- how fast ------------------------------------------------------------------------------------------------


def test_a_thousand_open_orders_and_ten_thousand_fills_reconcile_well_under_a_second() -> None:
    orders = [known(f"h3-{n:x}", quantity=10.0, filled_quantity=1.0, state="PARTIALLY_FILLED") for n in range(1000)]
    stale = [broker(f"h2-{n:x}") for n in range(100)]
    open_orders = [broker(f"h3-{n:x}", quantity=10.0, filled=2.0) for n in range(1000)] + stale
    fills = [fill(f"f{n}", f"h3-{n % 1000:x}", 0.2) for n in range(10_000)]
    the_report = report(open_orders, {"BTC-USD": 2000.0}, fills)

    started = time.perf_counter()
    result = reconcile(orders, {"BTC-USD": 1000.0}, the_report, current_epoch=EPOCH)
    elapsed = time.perf_counter() - started
    print(f"reconcile: 1,000 open orders and 10,000 fills in {elapsed * 1000:.1f} ms")

    assert elapsed < 2.0
    assert len(result.fills_to_apply) == 1000 and len(result.to_cancel) == 100
    assert result.clean, result.summary()
