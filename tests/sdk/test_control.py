"""The trading control: commands through real files, the gate, the trips and the flatten, in one process."""

from __future__ import annotations

import asyncio
import math
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from horus_sdk import Control, Mode, Order, Permit, Trips
from horus_sdk.control_files import Command, control_path, issue_command, read_status, status_path
from horus_sdk.decisions import tail
from horus_sdk.formats import write_json_atomic
from tests.support import wait_until

POLL = 0.02


class Clock:
    """Real time plus a jump the test controls, for the trips that need minutes or a day to pass."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class PaperBook:
    """The bot's hooks over a book of positions: each flatten order fills ``fill`` of its quantity.

    Its orders go through ``control.permit`` like a bot's would, so a test sees what the gate let out.
    ``scripted`` makes successive flatten calls fail: an exception is raised, "hang" never returns.
    """

    def __init__(self, positions: Mapping[str, float], fill: float = 1.0) -> None:
        self.book = dict(positions)
        self.fill = fill
        self.control: Control | None = None
        self.cancels = 0
        self.flattens = 0
        self.sent: list[Order] = []
        self.refused: list[Permit] = []
        self.scripted: list[BaseException | str] = []

    async def positions(self) -> Mapping[str, float]:
        return dict(self.book)

    async def cancel_all(self) -> None:
        self.cancels += 1

    async def flatten(self, positions: Mapping[str, float]) -> None:
        self.flattens += 1
        if self.scripted:
            failure = self.scripted.pop(0)
            if failure == "hang":
                await asyncio.Event().wait()
            assert isinstance(failure, BaseException)
            raise failure
        assert self.control is not None
        for symbol, quantity in positions.items():
            order = Order(symbol, "sell" if quantity > 0 else "buy", abs(quantity))
            permit = self.control.permit(order)
            if not permit:
                self.refused.append(permit)
                continue
            self.sent.append(order)
            self.book[symbol] = quantity * (1 - self.fill)


class FakeHeartbeat:
    def __init__(self) -> None:
        self.ages: dict[str, float] = {}

    def channel_ages(self, now_monotonic: float) -> Mapping[str, float]:
        return dict(self.ages)


def status_of(control_dir: Path) -> dict[str, Any]:
    return read_status(control_dir)


async def until_status(control_dir: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> None:
    await wait_until(lambda: predicate(status_of(control_dir)), timeout=timeout)


def make(control_dir: Path, **options: Any) -> Control:
    options.setdefault("poll_interval", POLL)
    options.setdefault("flatten_pause", 0.0)
    return Control(control_dir, **options)


@pytest.fixture
def control_dir(tmp_path: Path) -> Path:
    return tmp_path / "control"


@pytest.fixture
async def active(control_dir: Path) -> AsyncIterator[Control]:
    """A started Control whose bot has confirmed it holds no position."""
    async with make(control_dir) as control:
        control.reconciled({})
        yield control


BUY = Order("BTC-USD", "buy", 0.1)


# -- start, reconcile, status ---------------------------------------------------------------------------


async def test_a_new_control_reconciles_first_and_denies_every_order_until_then(control_dir: Path) -> None:
    async with make(control_dir) as control:
        assert stat.S_IMODE(control_dir.stat().st_mode) == 0o700
        status = status_of(control_dir)
        assert status["mode"] == "reconciling"
        assert status["cause"]["source"] == "start"
        permit = control.permit(BUY)
        assert not permit and permit.reason == "reconciling: positions not confirmed yet"

        control.reconciled({"BTC-USD": 0.5})
        assert control.mode is Mode.ACTIVE
        assert control.permit(BUY)
        status = status_of(control_dir)
        assert status["mode"] == "active" and status["cause"] is None
        assert status["exposure"]["positions"] == {"BTC-USD": 0.5}
        counters = control.status()["counters"]  # the file has them by the next routine write
        assert counters["permitted"] == 1 and counters["denied"] == 1


async def test_status_holds_every_key_the_daemon_reads(active: Control, control_dir: Path) -> None:
    active.exposure(notional_usd=1500.0, open_orders=2)
    active.broker_connected()
    await active.cycle()
    status = status_of(control_dir)
    assert set(status) >= {
        "format",
        "pid",
        "boot_id",
        "started_at",
        "updated_at",
        "monotonic",
        "mode",
        "cause",
        "causes",
        "applied_seq",
        "control",
        "control_error",
        "last_cycle_at",
        "last_cycle_monotonic",
        "broker",
        "counters",
        "recent_failures",
        "exposure",
        "flatten",
        "daily_loss",
        "stale_feeds",
        "latched",
        "decision_log",
    }
    assert status["pid"] == os.getpid()
    assert status["exposure"] == {"notional_usd": 1500.0, "open_orders": 2, "positions": {}}
    assert status["broker"]["connected"] is True
    assert status["last_cycle_monotonic"] <= time.monotonic()
    assert status["decision_log"] == str(control_dir / "decisions.jsonl")


async def test_exposure_words_too_large_for_the_status_are_replaced_by_a_note(
    active: Control, control_dir: Path
) -> None:
    active.exposure(book="x" * 200_000)
    await active.cycle()
    await until_status(control_dir, lambda s: "too_large" in s["exposure"])
    assert status_path(control_dir).stat().st_size < 64 * 1024


async def test_each_decision_is_logged_with_the_mode_and_the_permit(active: Control, control_dir: Path) -> None:
    permit = active.permit(BUY)
    active.decision("entry", signal=0.8, price_age=0.4, permit=permit, kind_of_signal="momentum")
    records = tail(control_dir / "decisions.jsonl")
    entry = records[-1]
    assert entry["kind"] == "entry" and entry["mode"] == "active"
    assert entry["permit"] == {"allowed": True, "reason": "allowed", "mode": "active"}
    assert entry["signal"] == 0.8 and entry["price_age"] == 0.4
    assert any(r["kind"] == "control.mode" for r in records)  # reconciling -> active


# -- commands -------------------------------------------------------------------------------------------


async def test_a_halt_is_acknowledged_denies_everything_and_cancels_orders_once(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0})
    async with make(control_dir, hooks=book) as control:
        control.reconciled({"BTC-USD": 1.0})
        command = issue_command(control_dir, "halt", "exchange maintenance", "alice via test")
        await until_status(control_dir, lambda s: s["applied_seq"] == command.seq)

        status = status_of(control_dir)
        assert status["mode"] == "halted"
        assert status["cause"]["source"] == "operator" and status["cause"]["reason"] == "exchange maintenance"
        assert status["control"]["outcome"] == "applied" and status["control"]["seq"] == command.seq
        for order in (BUY, Order("BTC-USD", "sell", 0.5)):  # even one that reduces
            permit = control.permit(order)
            assert not permit and permit.reason == "halted: exchange maintenance"

        for _ in range(3):
            await control.cycle()
        assert book.cancels == 1


async def test_a_new_command_replaces_the_operators_previous_one(active: Control, control_dir: Path) -> None:
    issue_command(control_dir, "reduce", "careful", "alice")
    halt = issue_command(control_dir, "halt", "stop now", "bob")
    await until_status(control_dir, lambda s: s["applied_seq"] == halt.seq)
    operator = [c for c in active.causes if c.source == "operator"]
    assert [c.name for c in operator] == ["halt"]


async def test_garbage_control_json_keeps_the_last_good_command_and_says_why(
    active: Control, control_dir: Path
) -> None:
    halt = issue_command(control_dir, "halt", "maintenance", "alice")
    await until_status(control_dir, lambda s: s["applied_seq"] == halt.seq)

    control_path(control_dir).write_text("{not json at all")
    await until_status(control_dir, lambda s: s["control_error"] is not None)
    status = status_of(control_dir)
    assert "not a horus-control/1 file" in status["control_error"]
    assert status["mode"] == "halted"
    assert not active.permit(BUY)

    resume = issue_command(control_dir, "resume", "maintenance over", "alice")
    await until_status(control_dir, lambda s: s["applied_seq"] == resume.seq)
    status = status_of(control_dir)
    assert status["control_error"] is None and status["mode"] == "active"


async def test_an_old_or_repeated_seq_is_ignored(active: Control, control_dir: Path) -> None:
    issue_command(control_dir, "halt", "first", "alice")
    reduce = issue_command(control_dir, "reduce", "careful", "alice")
    await until_status(control_dir, lambda s: s["applied_seq"] == reduce.seq)
    assert reduce.seq == 2

    # The same seq again, rewritten by hand with another command: not applied, and no refusal either.
    read_before = active._control_read_at
    repeated = Command(seq=reduce.seq, command="halt", reason="same seq", issued_by="x", issued_at=time.time())
    write_json_atomic(control_path(control_dir), repeated.to_json())
    await wait_until(lambda: active._control_read_at != read_before)
    assert active.mode is Mode.REDUCING

    lower = Command(seq=1, command="halt", reason="an old file put back", issued_by="x", issued_at=1.0)
    write_json_atomic(control_path(control_dir), lower.to_json())
    await wait_until(
        lambda: any(
            r.get("kind") == "control.command" and r.get("outcome") == "ignored" and r.get("seq") == 1
            for r in tail(control_dir / "decisions.jsonl")
        )
    )
    status = status_of(control_dir)
    assert status["mode"] == "reducing"
    assert status["control"] == {**status["control"], "seq": reduce.seq, "outcome": "applied"}
    assert status["applied_seq"] == reduce.seq


async def test_an_expired_command_is_refused_and_the_refusal_shows(active: Control, control_dir: Path) -> None:
    command = issue_command(control_dir, "halt", "an hour ago", "alice", expires_in=60.0, now_wall=time.time() - 3600.0)
    await until_status(control_dir, lambda s: (s["control"] or {}).get("seq") == command.seq)
    status = status_of(control_dir)
    assert status["control"]["outcome"] == "refused"
    assert status["control"]["reason"].startswith("expired at ")
    assert status["applied_seq"] == 0
    assert status["mode"] == "active"
    assert active.permit(BUY)


async def test_a_control_file_any_user_may_write_is_not_believed(active: Control, control_dir: Path) -> None:
    path = control_path(control_dir)
    write_json_atomic(path, Command(1, "halt", "from anyone", "mallory", time.time()).to_json())
    path.chmod(0o666)
    await until_status(control_dir, lambda s: s["control_error"] is not None)
    status = status_of(control_dir)
    assert "any user may write it" in status["control_error"]
    assert status["mode"] == "active" and status["applied_seq"] == 0


async def test_a_control_file_from_an_untrusted_owner_is_not_believed(control_dir: Path) -> None:
    async with make(control_dir, trusted_uids={os.getuid() + 4242}) as control:
        control.reconciled({})
        issue_command(control_dir, "halt", "test", "alice")
        await until_status(control_dir, lambda s: s["control_error"] is not None)
        assert "not trusted" in status_of(control_dir)["control_error"]
        assert control.mode is Mode.ACTIVE


# -- the gate -------------------------------------------------------------------------------------------


async def test_a_gate_that_fails_denies_the_order(active: Control) -> None:
    class Exploding:
        symbol = "BTC-USD"
        side = "buy"

        @property
        def quantity(self) -> float:
            raise RuntimeError("the order object broke")

    for order, said in (
        (Exploding(), "the order object broke"),
        (Order("BTC-USD", "long", 1.0), "side must be 'buy' or 'sell'"),
        (Order("BTC-USD", "buy", 0.0), "quantity must be more than 0"),
        (Order("BTC-USD", "buy", math.nan), "quantity must be more than 0"),
        ({"symbol": "BTC-USD", "side": "buy"}, "'quantity'"),
        (None, "symbol"),
    ):
        permit = active.permit(order)
        assert not permit
        assert permit.reason.startswith("the gate failed: ") and said in permit.reason
    assert active.denied == 6 and active.permitted == 0


async def test_reducing_allows_only_orders_that_reduce_a_position_without_reversing_it(
    active: Control, control_dir: Path
) -> None:
    active.set_positions({"BTC-USD": 1.0, "ETH-USD": -2.0})
    command = issue_command(control_dir, "reduce", "volatile", "alice")
    await until_status(control_dir, lambda s: s["applied_seq"] == command.seq)
    assert active.mode is Mode.REDUCING

    allowed = [
        Order("BTC-USD", "sell", 0.5),
        Order("BTC-USD", "sell", 1.0),
        Order("ETH-USD", "buy", 2.0),
        {"symbol": "ETH-USD", "side": "buy", "quantity": 0.1},
    ]
    denied = [
        Order("BTC-USD", "sell", 1.5),  # would turn long into short
        Order("BTC-USD", "buy", 0.1),
        Order("ETH-USD", "sell", 0.1),
        Order("ETH-USD", "buy", 2.5),
        Order("SOL-USD", "buy", 1.0),  # no position: any order opens one
    ]
    for order in allowed:
        assert active.permit(order), order
    for order in denied:
        permit = active.permit(order)
        assert not permit and permit.mode is Mode.REDUCING
        assert permit.reason.startswith("reducing: only an order that reduces a position")


async def test_the_common_answer_allocates_nothing_and_costs_under_5_us(active: Control) -> None:
    assert active.permit(BUY) is active.permit(BUY)
    calls = 50_000
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            active.permit(BUY)
        best = min(best, (time.perf_counter() - started) / calls)
    assert best < 5e-6, f"permit() took {best * 1e6:.2f} µs per call"


# -- trips ----------------------------------------------------------------------------------------------


async def test_failures_reduce_at_five_and_flatten_and_halt_at_ten(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0})
    async with make(control_dir, hooks=book) as control:
        book.control = control
        control.reconciled({"BTC-USD": 1.0})
        for _ in range(4):
            control.record_reject("insufficient margin")
        assert control.mode is Mode.ACTIVE

        control.record_error(ConnectionResetError("peer reset"))
        assert control.mode is Mode.REDUCING
        status = status_of(control_dir)  # written at once, not at the next cycle
        assert status["mode"] == "reducing"
        assert status["cause"]["name"] == "failures_reduce"
        assert status["cause"]["reason"] == "5 rejects or errors in 60 s (last: ConnectionResetError: peer reset)"

        for _ in range(4):
            control.record_reject("insufficient margin")
        assert control.mode is Mode.REDUCING
        control.record_reject("insufficient margin")
        assert control.mode is Mode.FLATTENING
        assert status_of(control_dir)["cause"]["reason"] == "10 rejects or errors in 60 s (last: insufficient margin)"

        await control.cycle()
        assert control.mode is Mode.HALTED
        assert book.book == {"BTC-USD": 0.0} and len(book.sent) == 1
        status = status_of(control_dir)
        assert status["flatten"]["state"] == "done"
        assert {c["name"] for c in status["latched"]} == {"failures_reduce", "failures_halt"}
        assert status["counters"]["rejects"] == 9 and status["counters"]["errors"] == 1

        # Latched: more time, more cycles, nothing clears it but a resume.
        for _ in range(3):
            await control.cycle()
        assert control.mode is Mode.HALTED


async def test_failures_outside_the_window_do_not_count(control_dir: Path) -> None:
    clock = Clock()
    async with make(control_dir, wall=clock.wall, monotonic=clock.monotonic) as control:
        control.reconciled({})
        for _ in range(4):
            control.record_reject("rejected")
        clock.advance(61.0)
        control.record_reject("rejected")
        assert control.mode is Mode.ACTIVE
        assert control.status()["recent_failures"] == 1


async def test_a_latched_trip_survives_a_restart_and_only_resume_clears_it(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
        for _ in range(5):
            control.record_reject("price out of band")
        assert control.mode is Mode.REDUCING

    async with make(control_dir) as restarted:
        restarted.reconciled({})
        assert restarted.mode is Mode.REDUCING
        assert restarted.cause is not None and restarted.cause.name == "failures_reduce"
        await restarted.cycle()
        assert restarted.mode is Mode.REDUCING

        resume = issue_command(control_dir, "resume", "rejects understood: stale price band", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == resume.seq)
        assert restarted.mode is Mode.ACTIVE
        assert status_of(control_dir)["latched"] == []
        # The failures before the resume were looked at: one more does not trip again.
        restarted.record_reject("price out of band")
        assert restarted.mode is Mode.ACTIVE

    async with make(control_dir) as third:
        third.reconciled({})
        assert third.mode is Mode.ACTIVE


async def test_an_operator_halt_survives_a_restart_even_past_its_expiry(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
        halt = issue_command(control_dir, "halt", "until I look", "alice", expires_in=30.0)
        await until_status(control_dir, lambda s: s["applied_seq"] == halt.seq)

    later = Clock()
    later.advance(3600.0)  # the command expired long ago, but it was applied in time
    book = PaperBook({})
    async with make(control_dir, hooks=book, wall=later.wall, monotonic=later.monotonic) as restarted:
        restarted.reconciled({})
        assert restarted.mode is Mode.HALTED
        assert restarted.applied_seq == halt.seq
        await restarted.cycle()
        assert book.cancels == 1  # what the previous run left open is cancelled again


async def test_a_command_queued_while_the_bot_was_down_is_applied_at_start(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
    halt = issue_command(control_dir, "halt", "queued while down", "alice", expires_in=600.0)
    async with make(control_dir) as restarted:
        assert status_of(control_dir)["applied_seq"] == halt.seq
        restarted.reconciled({})
        assert restarted.mode is Mode.HALTED


async def test_a_command_that_expired_while_the_bot_was_down_is_refused_at_start(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
    halt = issue_command(control_dir, "halt", "too late", "alice", expires_in=1.0, now_wall=time.time() - 10.0)
    async with make(control_dir) as restarted:
        restarted.reconciled({})
        status = status_of(control_dir)
        assert status["control"] == {**status["control"], "seq": halt.seq, "outcome": "refused"}
        assert restarted.mode is Mode.ACTIVE


async def test_a_halt_queued_behind_a_resume_that_expired_holds(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
    halt = issue_command(control_dir, "halt", "written while down", "alice")
    resume = issue_command(control_dir, "resume", "too late", "bob", expires_in=1.0, now_wall=time.time() - 10.0)
    async with make(control_dir) as restarted:
        restarted.reconciled({})
        status = status_of(control_dir)
        assert status["applied_seq"] == halt.seq
        assert status["control"]["seq"] == resume.seq and status["control"]["outcome"] == "refused"
        assert restarted.mode is Mode.HALTED


async def test_an_unreadable_previous_status_halts_until_a_resume(control_dir: Path) -> None:
    control_dir.mkdir(mode=0o700)
    status_path(control_dir).write_text("{torn")
    async with make(control_dir) as control:
        control.reconciled({})
        assert control.mode is Mode.HALTED
        assert control.cause is not None and control.cause.name == "status_unreadable"
        resume = issue_command(control_dir, "resume", "checked the positions by hand", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == resume.seq)
        assert control.mode is Mode.ACTIVE


async def test_a_previous_status_any_user_could_have_written_is_not_believed(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
    # Someone replaced it with one that has no trips to restore: it must not un-halt the bot.
    os.chmod(status_path(control_dir), 0o666)
    async with make(control_dir) as control:
        control.reconciled({})
        assert control.mode is Mode.HALTED
        assert control.cause is not None and control.cause.name == "status_unreadable"
        assert "not written by this service's user" in control.cause.reason


async def test_a_long_disconnect_reduces_then_flattens_once_reconnected(control_dir: Path) -> None:
    clock = Clock()
    book = PaperBook({"BTC-USD": 2.0})
    async with make(control_dir, hooks=book, wall=clock.wall, monotonic=clock.monotonic) as control:
        book.control = control
        control.reconciled({"BTC-USD": 2.0})
        control.broker_connected()
        control.broker_disconnected("websocket closed 1006")
        clock.advance(29.0)
        await control.cycle()
        assert control.mode is Mode.ACTIVE

        clock.advance(1.5)  # the watcher thread fires it: the bot need not cycle
        await until_status(control_dir, lambda s: s["mode"] == "reducing")
        cause = status_of(control_dir)["cause"]
        assert cause["name"] == "disconnect_reduce"
        assert cause["reason"].startswith("the broker has been disconnected for 30 s (websocket closed 1006)")

        clock.advance(90.0)
        await until_status(control_dir, lambda s: s["mode"] == "flattening")
        await control.cycle()
        assert book.flattens == 0  # nothing can be closed while disconnected
        assert status_of(control_dir)["flatten"]["state"] == "pending"
        assert not control.permit(Order("BTC-USD", "sell", 1.0))

        control.broker_connected()
        await control.cycle()
        assert book.book == {"BTC-USD": 0.0}
        assert control.mode is Mode.HALTED
        assert {c.name for c in control.causes} == {"disconnect_reduce", "disconnect_flatten"}


async def test_the_daily_loss_limit_flattens_and_halts_until_the_reset_even_through_resume(
    control_dir: Path,
) -> None:
    clock = Clock()
    book = PaperBook({"BTC-USD": 1.0})
    trips = Trips(daily_loss_limit=100.0, daily_reset="00:00", daily_reset_tz="UTC")
    async with make(control_dir, hooks=book, trips=trips, wall=clock.wall, monotonic=clock.monotonic) as control:
        book.control = control
        control.reconciled({"BTC-USD": 1.0})
        control.daily_pnl(-99.0)
        assert control.mode is Mode.ACTIVE
        control.daily_pnl(-100.0)
        assert control.mode is Mode.FLATTENING
        await control.cycle()
        assert control.mode is Mode.HALTED
        status = status_of(control_dir)
        until = status["daily_loss"]["until"]
        assert status["daily_loss"]["reached"] is True and status["daily_loss"]["limit"] == 100.0
        assert until == trips.next_reset(status["cause"]["since"])
        assert time.gmtime(until).tm_hour == 0 and time.gmtime(until).tm_min == 0

        resume = issue_command(control_dir, "resume", "I want to trade", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == resume.seq)
        status = status_of(control_dir)
        assert status["mode"] == "halted"
        assert status["control"]["reason"].startswith("resumed; the daily loss limit holds until ")
        assert status["control"]["reason"].endswith("T00:00:00Z")

        clock.advance(until - clock.wall() + 1.0)
        await until_status(control_dir, lambda s: s["mode"] == "active")
        assert status_of(control_dir)["daily_loss"]["reached"] is False


async def test_a_daily_loss_halt_whose_reset_passed_is_not_restored(control_dir: Path) -> None:
    trips = Trips(daily_loss_limit=50.0)
    async with make(control_dir, trips=trips) as control:
        control.reconciled({})
        control.daily_pnl(-60.0)
        assert control.mode is Mode.FLATTENING
    next_day = Clock()
    next_day.advance(86400.0 + 60.0)
    async with make(control_dir, trips=trips, wall=next_day.wall, monotonic=next_day.monotonic) as restarted:
        restarted.reconciled({})
        assert restarted.mode is Mode.ACTIVE


def test_trips_refuse_values_that_mean_nothing() -> None:
    for bad in (
        {"window_seconds": 0},
        {"reduce_after_failures": 0},
        {"halt_after_failures": 2.5},
        {"daily_loss_limit": -5},
        {"daily_reset": "25:00"},
        {"daily_reset": "9:5"},
        {"daily_reset_tz": "Mars/Olympus_Mons"},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Trips(**bad)
    assert Trips(reduce_after_failures=None).reduce_after_failures is None


def test_the_daily_reset_is_the_next_one_in_its_time_zone() -> None:
    trips = Trips(daily_reset="17:00", daily_reset_tz="America/New_York")
    # 2026-07-01 20:00 UTC is 16:00 in New York (EDT): the reset is an hour later.
    at = 1782936000.0
    assert trips.next_reset(at) == at + 3600.0
    assert trips.next_reset(at + 3600.0) == at + 3600.0 + 86400.0


async def test_an_order_on_a_stale_feed_may_only_reduce(control_dir: Path) -> None:
    heartbeat = FakeHeartbeat()
    heartbeat.ages = {"prices": 1.0, "fills": 0.5}
    async with make(control_dir, heartbeat=heartbeat, feeds={"prices": 5.0}) as control:
        control.reconciled({"BTC-USD": 1.0})
        assert control.permit(Order("BTC-USD", "buy", 0.1, feed="prices"))

        heartbeat.ages["prices"] = 12.5
        await until_status(control_dir, lambda s: "prices" in s["stale_feeds"])
        assert control.mode is Mode.ACTIVE  # a condition, not a trip
        permit = control.permit(Order("BTC-USD", "buy", 0.1, feed="prices"))
        assert not permit and "feed 'prices' is older than its 5 s limit" in permit.reason
        assert not control.permit(Order("BTC-USD", "buy", 0.1))  # no feed named: any configured one counts
        assert control.permit(Order("BTC-USD", "sell", 0.5, feed="prices"))  # reduces
        assert control.permit(Order("BTC-USD", "buy", 0.1, feed="other"))

        heartbeat.ages["prices"] = 0.2
        await until_status(control_dir, lambda s: s["stale_feeds"] == {})
        assert control.permit(Order("BTC-USD", "buy", 0.1, feed="prices"))
        kinds = [r["kind"] for r in tail(control_dir / "decisions.jsonl")]
        assert kinds.count("control.stale") == 2


def test_feeds_without_a_heartbeat_are_a_mistake(control_dir: Path) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        Control(control_dir, feeds={"prices": 5.0})


# -- flatten --------------------------------------------------------------------------------------------


async def test_flatten_completes_through_partial_fills_and_leaves_dust(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0, "ETH-USD": -4.0}, fill=0.5)
    async with make(control_dir, hooks=book, dust={"BTC-USD": 0.1, "ETH-USD": 0.5}) as control:
        book.control = control
        control.reconciled(await book.positions())
        command = issue_command(control_dir, "flatten", "end of strategy", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == command.seq)
        assert control.mode is Mode.FLATTENING
        outside = control.permit(Order("BTC-USD", "sell", 1.0))
        assert not outside and outside.reason.startswith("flattening: only the flatten's own orders")

        await control.cycle()

        # BTC 1 -> 0.5 -> 0.25 -> 0.125 -> 0.0625 (dust); ETH -4 -> -2 -> -1 -> -0.5 (dust).
        assert book.book == {"BTC-USD": 0.0625, "ETH-USD": -0.5}
        assert book.refused == []
        flatten = status_of(control_dir)["flatten"]
        assert flatten["state"] == "done"
        assert flatten["attempts"] == 4
        assert flatten["remaining"] == {}
        assert flatten["dust"] == {"BTC-USD": 0.0625, "ETH-USD": -0.5}
        assert control.mode is Mode.HALTED
        assert book.cancels == 5  # before each look at the positions
        assert "positions closed" in (control.cause.reason if control.cause else "")


async def test_a_flatten_that_cannot_close_everything_says_what_remains_and_halts(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0}, fill=0.1)
    async with make(control_dir, hooks=book, flatten_attempts=3) as control:
        book.control = control
        control.reconciled(await book.positions())
        for _ in range(10):
            control.record_reject("post-only would cross")
        await control.cycle()

        status = status_of(control_dir)
        assert status["mode"] == "halted"
        assert status["flatten"]["state"] == "incomplete" and status["flatten"]["attempts"] == 3
        remaining = status["flatten"]["remaining"]["BTC-USD"]
        assert remaining == pytest.approx(0.729)
        assert "the flatten left positions open after 3 attempt(s): BTC-USD" in status["cause"]["reason"]


async def test_a_flatten_hook_that_raises_or_hangs_is_an_attempt_that_failed(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0})
    book.scripted = [RuntimeError("venue said 503"), "hang"]
    async with make(control_dir, hooks=book, hook_timeout=0.2) as control:
        book.control = control
        control.reconciled(await book.positions())
        issue = issue_command(control_dir, "flatten", "test", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == issue.seq)
        await control.cycle()
        flatten = status_of(control_dir)["flatten"]
        assert flatten["state"] == "done" and flatten["attempts"] == 3
        assert book.book == {"BTC-USD": 0.0}
        assert control.mode is Mode.HALTED
        attempts = [r for r in tail(control_dir / "decisions.jsonl") if r["kind"] == "control.flatten"]
        assert attempts[-1]["state"] == "done"


async def test_an_operator_flatten_runs_even_while_a_trip_holds_the_bot_halted(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0}, fill=0.0)  # the first flatten fills nothing
    async with make(control_dir, hooks=book, flatten_attempts=1) as control:
        book.control = control
        control.reconciled(await book.positions())
        for _ in range(10):
            control.record_reject("rejected")
        await control.cycle()
        assert control.mode is Mode.HALTED
        assert status_of(control_dir)["flatten"]["state"] == "incomplete"

        book.fill = 1.0  # the venue fills again: the operator asks for another try
        command = issue_command(control_dir, "flatten", "try again now that the venue fills", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == command.seq)
        assert control.mode is Mode.HALTED  # the trip still holds
        await control.cycle()
        assert book.book == {"BTC-USD": 0.0}
        assert status_of(control_dir)["flatten"]["state"] == "done"
        assert control.mode is Mode.HALTED
        assert not control.permit(Order("BTC-USD", "buy", 1.0))


async def test_an_operator_halt_stops_the_strategy_but_never_a_trips_flatten(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0})
    async with make(control_dir, hooks=book) as control:
        book.control = control
        control.reconciled(await book.positions())
        halt = issue_command(control_dir, "halt", "hands off", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == halt.seq)
        assert not control.permit(Order("BTC-USD", "buy", 0.1)), "the strategy sends nothing"
        for _ in range(10):
            control.record_reject("rejected")
        await control.cycle()
        # Halted with a position nothing manages would be worse than flat and halted.
        assert book.flattens >= 1 and book.book == {"BTC-USD": 0.0}
        assert status_of(control_dir)["flatten"]["state"] == "done"
        assert control.mode is Mode.HALTED


async def test_a_flatten_the_bot_never_ran_runs_after_a_restart(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({"BTC-USD": 1.0})
        for _ in range(10):
            control.record_reject("rejected")
        assert control.mode is Mode.FLATTENING  # and the bot dies before its next cycle

    book = PaperBook({"BTC-USD": 1.0})
    async with make(control_dir, hooks=book) as restarted:
        book.control = restarted
        restarted.reconciled(await book.positions())
        assert restarted.mode is Mode.FLATTENING
        await restarted.cycle()
        assert book.book == {"BTC-USD": 0.0}
        assert restarted.mode is Mode.HALTED


async def test_a_resume_during_a_flatten_stops_it_before_its_next_attempt(control_dir: Path) -> None:
    book = PaperBook({"BTC-USD": 1.0}, fill=0.5)
    async with make(control_dir, hooks=book) as control:
        book.control = control
        control.reconciled(await book.positions())
        flatten = issue_command(control_dir, "flatten", "test", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == flatten.seq)
        original = book.flatten

        async def flatten_then_resume(positions: Mapping[str, float]) -> None:
            await original(positions)
            resume = issue_command(control_dir, "resume", "changed my mind", "alice")
            await wait_until(lambda: control.applied_seq == resume.seq)

        book.flatten = flatten_then_resume  # type: ignore[method-assign]
        await control.cycle()
        assert book.flattens == 1
        assert control.mode is Mode.ACTIVE
        assert status_of(control_dir)["flatten"] is None  # the operator accepted what is open
        assert book.book == {"BTC-USD": 0.5}


async def test_without_hooks_a_flatten_ends_incomplete_and_halted(control_dir: Path) -> None:
    async with make(control_dir) as control:
        control.reconciled({"BTC-USD": 3.0})
        command = issue_command(control_dir, "flatten", "test", "alice")
        await until_status(control_dir, lambda s: s["applied_seq"] == command.seq)
        await control.cycle()
        status = status_of(control_dir)
        assert status["mode"] == "halted"
        assert status["flatten"]["state"] == "incomplete"
        assert status["flatten"]["remaining"] == {"BTC-USD": 3.0}
        assert "no hooks" in status["flatten"]["error"]


# -- the acknowledgement --------------------------------------------------------------------------------


async def test_the_ack_comes_within_a_poll_while_the_bots_cycle_sleeps(control_dir: Path) -> None:
    async with Control(control_dir) as control:
        control.reconciled({})

        async def bot() -> None:
            while True:
                await control.cycle()
                await asyncio.sleep(5)

        task = asyncio.create_task(bot())
        try:
            await asyncio.sleep(0)
            started = time.monotonic()
            command = issue_command(control_dir, "halt", "latency test", "alice")
            await wait_until(lambda: status_of(control_dir)["applied_seq"] == command.seq, interval=0.002)
            latency = time.monotonic() - started
            assert latency < control.poll_interval + 0.25, f"acknowledged after {latency:.3f} s"
            assert not control.permit(BUY)
        finally:
            task.cancel()
            await asyncio.wait([task])


async def test_the_ack_comes_while_the_event_loop_is_blocked(control_dir: Path) -> None:
    async with Control(control_dir) as control:
        control.reconciled({})
        started = time.monotonic()
        command = issue_command(control_dir, "halt", "blocked loop", "alice")
        # This coroutine never yields: the loop is as stuck as a bot in a synchronous call.
        while status_of(control_dir)["applied_seq"] != command.seq:
            assert time.monotonic() - started < 10.0, "never acknowledged"
            time.sleep(0.002)
        latency = time.monotonic() - started
        assert latency < control.poll_interval + 0.25, f"acknowledged after {latency:.3f} s"
        assert not control.permit(BUY)


async def test_a_status_write_that_fails_never_reaches_the_bot(
    control_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with make(control_dir) as control:
        control.reconciled({})
        # A directory where the atomic write puts its temp file: every write fails, whoever runs the test.
        blocker = control_dir / f".status.json.{os.getpid()}.tmp"
        blocker.mkdir()
        for _ in range(6):
            control.record_reject("rejected")
        await control.cycle()
        assert control.mode is Mode.REDUCING
        assert status_of(control_dir)["mode"] == "active"  # the last status that could be written
        assert any("control.status_write_failed" in r.getMessage() for r in caplog.records)

        blocker.rmdir()
        control.record_reject("rejected")  # any later change writes it all
        await control.cycle()
        await until_status(control_dir, lambda s: s["mode"] == "reducing")
