"""The order journal in a real SQLite file: ids, the order's life, durable state, damage."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from horus_sdk.journal import (
    CLIENT_ORDER_ID_PATTERN,
    JournalError,
    OrderJournal,
    OrderState,
)


@pytest.fixture
def journal(tmp_path: Path):
    with OrderJournal(tmp_path / "orders.db") as opened:
        yield opened


def test_a_new_journal_starts_at_epoch_one_and_every_open_is_the_next_epoch(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    epochs = []
    for _ in range(3):
        with OrderJournal(path) as journal:
            epochs.append(journal.epoch)
    assert epochs == [1, 2, 3]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_ids_are_short_of_exchange_safe_characters_and_unique_over_ten_thousand(journal: OrderJournal) -> None:
    with journal.transaction():
        ids = [journal.new_client_order_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(CLIENT_ORDER_ID_PATTERN.fullmatch(cid) for cid in ids)
    assert ids[0] == "h1-1"
    assert ids[-1] == "h1-7ps"  # 10000 in base 36


def test_ids_are_never_reused_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    seen: set[str] = set()
    for _ in range(3):
        with OrderJournal(path) as journal:
            ids = [journal.intend("BTC-USD", "buy", 1.0).client_order_id for _ in range(20)]
            ids += [journal.new_client_order_id() for _ in range(20)]
        assert not seen & set(ids)
        seen |= set(ids)
    assert len(seen) == 120


def test_an_intent_is_committed_before_intend_returns(journal: OrderJournal) -> None:
    entry = journal.intend("BTC-USD", "sell", 0.5, "limit", 51000.0)
    other = sqlite3.connect(journal.path)
    try:
        row = other.execute(
            "SELECT state, symbol, side, quantity, type, price, epoch FROM orders WHERE client_order_id = ?",
            (entry.client_order_id,),
        ).fetchone()
    finally:
        other.close()
    assert row == ("intent", "BTC-USD", "sell", 0.5, "limit", 51000.0, 1)
    assert entry.state is OrderState.INTENT and entry.in_doubt


def test_an_order_goes_from_intent_to_filled_and_each_step_is_an_event(journal: OrderJournal) -> None:
    cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
    journal.mark_sent(cid)
    journal.mark_acked(cid, "ex-1")
    assert [e.client_order_id for e in journal.open_orders()] == [cid]
    partly = journal.record_fill(cid, 0.4, 50000.0)
    assert partly.state is OrderState.PARTIALLY_FILLED and partly.filled_quantity == 0.4
    full = journal.record_fill(cid, 1.0, 50100.0)
    assert full.state is OrderState.FILLED and full.avg_price == 50100.0 and full.final
    assert full.exchange_order_id == "ex-1"
    assert [e.state for e in journal.events(cid)] == [
        OrderState.INTENT,
        OrderState.SENT,
        OrderState.ACKED,
        OrderState.PARTIALLY_FILLED,
        OrderState.FILLED,
    ]
    assert journal.open_orders() == [] and journal.in_doubt() == []


def test_the_same_ack_or_fill_twice_changes_nothing(journal: OrderJournal) -> None:
    cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
    journal.mark_sent(cid)
    journal.mark_acked(cid, "ex-1")
    journal.mark_acked(cid, "ex-1")
    journal.record_fill(cid, 0.5, 50000.0)
    journal.record_fill(cid, 0.5, 50000.0)
    assert len(journal.events(cid)) == 4


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        (["sent", "filled"], "sent"),
        (["sent"], "sent"),
        (["sent", "rejected"], "acked"),
        (["sent", "canceled"], "unresolved"),
        (["sent", "filled"], "canceled"),
        (["sent", "partial"], "acked"),
    ],
)
def test_an_illegal_transition_raises_and_names_it(journal: OrderJournal, steps: list[str], illegal: str) -> None:
    cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
    do = {
        "sent": lambda: journal.mark_sent(cid),
        "acked": lambda: journal.mark_acked(cid, "ex-9"),
        "filled": lambda: journal.record_fill(cid, 1.0, 50000.0),
        "partial": lambda: journal.record_fill(cid, 0.5, 50000.0),
        "rejected": lambda: journal.mark_rejected(cid, "no"),
        "canceled": lambda: journal.mark_canceled(cid),
        "unresolved": lambda: journal.mark_unresolved(cid, "lost"),
    }
    for step in steps:
        do[step]()
    before = journal.get(cid)
    with pytest.raises(ValueError, match=rf"order {cid}: \w+ -> {illegal.upper()} is not a legal transition"):
        do[illegal]()
    assert journal.get(cid) == before


def test_a_fill_never_goes_backwards_but_a_final_order_takes_a_fill_correction(journal: OrderJournal) -> None:
    cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
    journal.mark_sent(cid)
    journal.record_fill(cid, 0.6, 50000.0)
    with pytest.raises(ValueError, match="never goes backwards"):
        journal.record_fill(cid, 0.5, 50000.0)
    canceled = journal.mark_canceled(cid, "canceled by the bot")
    assert canceled.state is OrderState.CANCELED
    late = journal.record_fill(cid, 0.7, 50010.0)  # a fill that landed before the cancel did
    assert late.state is OrderState.CANCELED and late.filled_quantity == 0.7
    assert journal.events(cid)[-1].detail["correction"] is True


def test_an_unresolved_order_is_in_doubt_and_takes_what_the_exchange_later_says(journal: OrderJournal) -> None:
    cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
    journal.mark_sent(cid)
    journal.record_lookup(cid, "not found")
    unresolved = journal.mark_unresolved(cid, "no answer within 10 s")
    assert unresolved.lookups == 1 and unresolved.reason == "no answer within 10 s"
    assert [e.client_order_id for e in journal.in_doubt()] == [cid]
    assert journal.record_fill(cid, 1.0, 50000.0).state is OrderState.FILLED


def test_an_unknown_order_is_a_key_error_naming_it(journal: OrderJournal) -> None:
    assert journal.get("h1-zz") is None
    with pytest.raises(KeyError, match="h1-zz"):
        journal.mark_sent("h1-zz")


def test_bad_intents_are_refused_before_anything_is_written(journal: OrderJournal) -> None:
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        journal.intend("BTC-USD", "hold", 1.0)
    for quantity in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="quantity must be a number more than 0"):
            journal.intend("BTC-USD", "buy", quantity)
    with pytest.raises(ValueError, match="limit order needs a price"):
        journal.intend("BTC-USD", "buy", 1.0, "limit")
    assert journal.orders() == []


def test_orders_are_listed_by_epoch(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    with OrderJournal(path) as first:
        old = first.intend("BTC-USD", "buy", 1.0).client_order_id
    with OrderJournal(path) as second:
        new = second.intend("ETH-USD", "sell", 2.0).client_order_id
        assert [e.client_order_id for e in second.orders(epoch=1)] == [old]
        assert [e.client_order_id for e in second.orders(epoch=2)] == [new]
        assert [e.client_order_id for e in second.orders()] == [old, new]


def test_state_and_checkpoints_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    with OrderJournal(path) as journal:
        journal.put_state("positions", {"BTC-USD": 0.3})
        journal.set_checkpoint("fills", {"since": 1700000000.5, "last_id": "f-9"})
    with OrderJournal(path) as journal:
        assert journal.get_state("positions") == {"BTC-USD": 0.3}
        assert journal.get_state("missing", {}) == {}
        assert journal.checkpoint("fills") == {"since": 1700000000.5, "last_id": "f-9"}
        assert journal.checkpoint("never") is None


def test_state_must_be_json(journal: OrderJournal) -> None:
    with pytest.raises(ValueError, match="state 'x' must be JSON"):
        journal.put_state("x", {"nan": float("nan")})
    with pytest.raises(ValueError, match="must be JSON"):
        journal.put_state("x", object())


def test_an_exception_inside_a_transaction_rolls_back_every_change(journal: OrderJournal) -> None:
    journal.put_state("a", 1)
    cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id

    def change_everything_then_fail() -> None:
        with journal.transaction():
            journal.put_state("a", 2)
            journal.put_state("b", 2)
            journal.mark_sent(cid)
            journal.intend("BTC-USD", "buy", 1.0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        change_everything_then_fail()
    assert journal.get_state("a") == 1 and journal.get_state("b") is None
    assert journal.get(cid).state is OrderState.INTENT  # type: ignore[union-attr]
    assert len(journal.orders()) == 1


def test_a_transaction_commits_everything_at_once_and_a_nested_failure_undoes_only_itself(
    journal: OrderJournal,
) -> None:
    def cancel_then_send(cid: str) -> None:
        with journal.transaction():
            journal.put_state("b", 1)
            journal.mark_canceled(cid)
            journal.mark_sent(cid)  # illegal: this inner block is undone, the outer one goes on

    with journal.transaction():
        journal.put_state("a", 1)
        cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
        with pytest.raises(ValueError, match="CANCELED -> SENT is not a legal transition"):
            cancel_then_send(cid)
        other = sqlite3.connect(journal.path)
        try:
            assert other.execute("SELECT count(*) FROM state").fetchone() == (0,)  # not committed yet
        finally:
            other.close()
    assert journal.get_state("a") == 1 and journal.get_state("b") is None
    assert journal.get(cid).state is OrderState.INTENT  # type: ignore[union-attr]


def test_calls_from_several_threads_are_safe(journal: OrderJournal) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            cid = journal.intend("BTC-USD", "buy", 1.0).client_order_id
            journal.mark_sent(cid)
            with lock:
                ids.append(cid)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 200
    assert all(e.state is OrderState.SENT for e in journal.orders())


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not an order journal"),
        (b"positions: BTC 1\n", "not an order journal"),
        (os.urandom(8192), "not an order journal"),
    ],
)
def test_a_file_that_is_no_journal_is_a_clear_error_and_is_left_alone(tmp_path: Path, content: bytes, says: str):
    path = tmp_path / "orders.db"
    path.write_bytes(content)
    with pytest.raises(JournalError, match=says) as raised:
        OrderJournal(path)
    assert str(path) in str(raised.value) and raised.value.filename == str(path)
    assert isinstance(raised.value, OSError)
    assert path.read_bytes() == content


def test_another_programs_sqlite_database_is_not_taken_for_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    other.commit()
    other.close()
    with pytest.raises(JournalError, match="not a version 1 order journal"):
        OrderJournal(path)


def test_a_truncated_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    with OrderJournal(path) as journal, journal.transaction():
        for _ in range(2000):
            journal.intend("BTC-USD", "buy", 1.0)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(JournalError, match="damaged") as raised:
        OrderJournal(path)
    assert str(path) in str(raised.value)


def test_a_damaged_page_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    with OrderJournal(path) as journal, journal.transaction():
        for _ in range(2000):
            journal.intend("BTC-USD", "buy", 1.0)
    with path.open("r+b") as f:
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)
    with pytest.raises(JournalError, match="damaged"):
        OrderJournal(path)


def test_a_fifo_at_the_path_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    os.mkfifo(path)
    with pytest.raises(JournalError, match="not a regular file"):
        OrderJournal(path)


def test_a_closed_journal_says_so(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "orders.db")
    journal.close()
    with pytest.raises(JournalError, match="is closed"):
        journal.intend("BTC-USD", "buy", 1.0)


def test_a_missing_directory_is_created(tmp_path: Path) -> None:
    with OrderJournal(tmp_path / "state" / "bot" / "orders.db") as journal:
        assert journal.epoch == 1
    assert [p.name for p in (tmp_path / "state" / "bot").iterdir() if not p.name.endswith(("-wal", "-shm"))] == [
        "orders.db"
    ]


def test_a_chosen_id_prefix_keeps_two_services_on_one_account_apart(tmp_path):
    from horus_sdk.journal import epoch_of_client_order_id

    with OrderJournal(tmp_path / "a.db", id_prefix="bot") as bot, OrderJournal(tmp_path / "b.db", id_prefix="bo") as bo:
        mine, theirs = bot.new_client_order_id(), bo.new_client_order_id()
        assert (mine, theirs) == ("bot_1-1", "bo_1-1")
        assert bot.epoch_of(mine) == 1 and bot.epoch_of(theirs) is None and bo.epoch_of(mine) is None
        assert epoch_of_client_order_id(mine) is None, "not the default service's either"
    with pytest.raises(ValueError, match="id_prefix"):
        OrderJournal(tmp_path / "c.db", id_prefix="9bad")
