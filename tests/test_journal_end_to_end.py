"""The order journal, end to end (issue 15): the example bot under a restart loop, a paper exchange process, and
kill -9 at random moments; then what the exchange's own order log says against what the bot's journal says.

The kills are aimed, at a random moment inside each window, so that each lands where the issue asks: between
the committed intent and the send (the bot's test pause), between the send and the answer (the exchange's delay
fault), and while an order is partly filled (after the partial answer, before its remainder is canceled).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from horus_sdk import OrderJournal, OrderState
from horus_sdk.control_files import read_status
from tests.exchange_support import ExchangeClient, exchange_process
from tests.support import stop_session, wait_until_sync
from tests.test_trading_bot import trading_bot

BOT = Path(__file__).parents[1] / "examples" / "sdk" / "trading_bot.py"
MAX_ORDERS = 200
PAUSE_AFTER_INTENT = 0.1
KILLS_OF_EACH_KIND = 5

pytestmark = pytest.mark.slow


def restart_loop(tmp_path: Path, url: str, control: Path, log: Path) -> subprocess.Popen[bytes]:
    """The bot under `while true`, in a session of its own, pausing after every intent."""
    bot = (
        f"{sys.executable} {BOT} --exchange {url} --control {control} --log {log} --cycle 0.02 "
        f"--max-orders {MAX_ORDERS} --reduce-after 50 --halt-after 100"
    )
    out = (tmp_path / "loop.out").open("ab")
    env = {**os.environ, "HORUS_EXAMPLE_PAUSE_AFTER_INTENT": str(PAUSE_AFTER_INTENT)}
    try:
        return subprocess.Popen(
            ["/bin/sh", "-c", f"while true; do {bot}; sleep 0.05; done"],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
    finally:
        out.close()


def bot_pid(loop: subprocess.Popen[bytes]) -> int | None:
    """The bot process the loop is running now (its child), or None between runs."""
    try:
        children = Path(f"/proc/{loop.pid}/task/{loop.pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        with contextlib.suppress(OSError):
            if str(BOT) in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                return int(child)
    return None


def count_lines(log: Path, text: str) -> int:
    return log.read_text().count(text) if log.exists() else 0


def journal_rows(path: Path) -> list[tuple[str, str, str | None]]:
    """(client order id, state, reason) of every order, read without opening a new epoch."""
    if not path.exists():
        return []
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute("SELECT client_order_id, state, reason FROM orders ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()


def running_and_active(loop: subprocess.Popen[bytes], control: Path) -> bool:
    """The bot the loop runs now has reconciled and trades."""
    pid = bot_pid(loop)
    try:
        status = read_status(control)
    except (OSError, ValueError):
        return False
    return pid is not None and status.get("pid") == pid and status.get("mode") == "active"


def wait_for(predicate: Callable[[], Any], what: str, timeout: float, seed: int) -> None:
    try:
        wait_until_sync(predicate, timeout=timeout)
    except AssertionError as failed:
        raise AssertionError(f"seed {seed}: {what}: {failed}") from None


def test_kill_9_at_random_moments_in_200_orders_sends_each_order_once_and_the_positions_agree(tmp_path):
    seed = int(os.environ.get("HORUS_KILL_SEED") or random.randrange(2**32))
    print(f"kill seed {seed} (HORUS_KILL_SEED={seed} repeats it)")
    rng = random.Random(seed)
    control, log, exchange_log = tmp_path / "control", tmp_path / "bot.log", tmp_path / "exchange-orders.jsonl"
    journal_path = control / "orders.db"
    kinds = ["intent", "answer", "partial"] * KILLS_OF_EACH_KIND
    rng.shuffle(kinds)
    with exchange_process(tmp_path, "--max-fill", "0.007", "--order-log", str(exchange_log)) as exchange_proc:
        exchange = ExchangeClient(exchange_proc.url)
        loop = restart_loop(tmp_path, exchange_proc.url, control, log)
        try:
            for number, kind in enumerate(kinds):
                wait_for(lambda: running_and_active(loop, control), f"run {number + 1} reconciles", 30, seed)
                sent = len(exchange.get("/admin/orders").body["orders"])
                wanted = sent + rng.randint(1, 4)
                wait_for(
                    lambda wanted=wanted: len(exchange.get("/admin/orders").body["orders"]) >= wanted,
                    "orders flow",
                    30,
                    seed,
                )
                if kind == "intent":
                    pauses = count_lines(log, "PAUSE after intent")
                    wait_for(
                        lambda pauses=pauses: count_lines(log, "PAUSE after intent") > pauses, "an intent", 10, seed
                    )
                    time.sleep(rng.uniform(0, PAUSE_AFTER_INTENT * 0.4))
                elif kind == "answer":
                    received = len(exchange.get("/admin/orders").body["orders"])
                    exchange.request("POST", "/admin/faults", {"fault": "delay", "count": 1, "seconds": 0.6})
                    wait_for(
                        lambda received=received: len(exchange.get("/admin/orders").body["orders"]) > received,
                        "a send",
                        10,
                        seed,
                    )
                    time.sleep(rng.uniform(0.02, 0.3))
                else:
                    partials = count_lines(log, "left working")
                    wait_for(
                        lambda partials=partials: count_lines(log, "left working") > partials,
                        "a partial fill",
                        10,
                        seed,
                    )
                    time.sleep(rng.uniform(0, 0.01))
                pid = bot_pid(loop)
                assert pid is not None, f"seed {seed}: no bot to kill"
                os.kill(pid, signal.SIGKILL)
                exchange.request("DELETE", "/admin/faults")

            def finished() -> bool:
                rows = journal_rows(journal_path)
                return len(rows) >= MAX_ORDERS and all(OrderState(state).name in _FINAL for _, state, _ in rows)

            wait_for(finished, f"the journal holds {MAX_ORDERS} finished orders", 60, seed)
            status = read_status(control)
        finally:
            stop_session(loop)

        entries = [json.loads(line) for line in exchange_log.read_text().splitlines()]
        positions = exchange.get("/positions").body["positions"]

    context = f"seed {seed}"
    received = Counter(entry["client_order_id"] for entry in entries)
    assert [cid for cid, n in received.items() if n > 1] == [], f"{context}: an order was sent twice"
    assert not [e for e in entries if e["outcome"] == "duplicate"], context
    with OrderJournal(journal_path) as journal:
        orders = journal.orders()
        saved_positions = journal.get_state("positions", {})
        looked_up = [
            o for o in orders if any("found" in e.detail.get("lookup", "") for e in journal.events(o.client_order_id))
        ]
    assert len(orders) == MAX_ORDERS, f"{context}: --max-orders counts across restarts"
    never_sent = [o for o in orders if o.state is OrderState.CANCELED and o.reason == "never sent"]
    sent = [o for o in orders if o not in never_sent]
    assert {o.client_order_id for o in sent} == set(received), f"{context}: the journal and the exchange agree"
    assert not {o.client_order_id for o in never_sent} & set(received), context
    assert not [o for o in orders if o.state is OrderState.UNRESOLVED], context
    assert len(never_sent) >= 1, f"{context}: some kills landed between the intent and the send"
    assert looked_up, f"{context}: some kills landed between the send and the answer, and the order was looked up"
    assert saved_positions == pytest.approx(positions), f"{context}: the bot's persisted positions are the exchange's"
    assert status["mode"] == "active" and status["causes"] == [], f"{context}: every reconcile was clean: {status}"


_FINAL = {"FILLED", "REJECTED", "CANCELED"}


def test_a_fill_made_while_the_bot_was_down_is_applied_and_an_order_of_an_older_run_is_canceled(tmp_path):
    with exchange_process(tmp_path) as exchange_proc:
        exchange = ExchangeClient(exchange_proc.url)
        journal_path = tmp_path / "control" / "orders.db"
        with trading_bot(tmp_path, exchange_proc.url, "--max-orders", "3", name="first") as first:
            first.wait_until(
                lambda: (
                    len(journal_rows(journal_path)) == 3
                    and all(OrderState(s).name in _FINAL for _, s, _ in journal_rows(journal_path))
                ),
                "the first run trades three orders",
            )
            assert first.stop() == 0
        # While the bot is down: two resting limit orders of its own (as an earlier run would have left them),
        # then a price that fills one of them.
        with OrderJournal(journal_path) as journal:
            placed = []
            for limit in (40000.0, 30000.0):
                entry = journal.intend("BTC-USD", "buy", 0.01, "limit", limit)
                journal.mark_sent(entry.client_order_id)
                answer = exchange.place(entry.client_order_id, quantity=0.01, type="limit", price=limit).body
                assert answer["status"] == "open", answer
                journal.mark_acked(entry.client_order_id, answer["order_id"])
                placed.append(entry.client_order_id)
        assert exchange.request("POST", "/admin/prices", {"symbol": "BTC-USD", "price": 39000.0}).status == 200
        filled_down, stale = placed

        with trading_bot(tmp_path, exchange_proc.url, "--max-orders", "3", name="second") as second:
            second.wait_until(
                lambda: second.status().get("pid") == second.process.pid and second.mode() == "active",
                "the second run reconciles",
            )
            report = second.status()["reconcile"]
            assert report["complete"] and report["clean"], report
            assert report["counts"]["fill_while_down"] == 1 and report["counts"]["stale_epoch"] == 1, report
            second.wait_until(lambda: exchange.get(f"/orders/{stale}").body["status"] == "cancelled", "canceled")
            assert second.stop() == 0
        with OrderJournal(journal_path) as journal:
            assert journal.get(filled_down).state is OrderState.FILLED
            assert journal.get(stale).state is OrderState.CANCELED
            assert journal.get_state("positions") == pytest.approx(exchange.get("/positions").body["positions"])
        assert "fill_while_down" in second.log_text() and "stale_epoch" in second.log_text()


def test_an_exchange_whose_fills_are_unavailable_or_incomplete_keeps_the_bot_reconciling(tmp_path):
    with exchange_process(tmp_path) as exchange_proc:
        exchange = ExchangeClient(exchange_proc.url)
        exchange.request("POST", "/admin/fills", {"answer": "unavailable"})
        with trading_bot(tmp_path, exchange_proc.url) as bot:
            bot.wait_until(lambda: bot.log_text().count("not reconciled") >= 2, "the bot tries again")
            status = bot.status()
            assert status["mode"] == "reconciling", status
            assert status["reconcile"]["complete"] is False and "fetch_fills_since" in status["reconcile"]["summary"]
            exchange.request("POST", "/admin/fills", {"answer": "incomplete"})
            tries = bot.log_text().count("not reconciled")
            bot.wait_until(lambda: bot.log_text().count("not reconciled") > tries, "it tries again")
            assert "not all there" in bot.status()["reconcile"]["summary"]
            assert bot.mode() == "reconciling"
            assert exchange.get("/admin/orders").body["orders"] == [], "nothing is sent on partial knowledge"
            exchange.request("POST", "/admin/fills", {"answer": "normal"})
            bot.wait_until(lambda: bot.mode() == "active", "a complete report ends RECONCILING")
            bot.wait_until(lambda: exchange.get("/admin/orders").body["orders"] != [], "and the bot trades")
            assert bot.stop() == 0
