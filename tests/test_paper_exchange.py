"""The paper exchange: a real HTTP server on loopback that fills, partially fills, rejects, misbehaves on
request, and writes down every order it was sent."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.exchange_support import (
    EXCHANGE_SCRIPT,
    ExchangeClient,
    exchange_process,
    load_paper_exchange,
    running_exchange,
    send_order_raw,
)
from tests.support import wait_until_sync

paper_exchange = load_paper_exchange()


@pytest.fixture
def order_log(tmp_path: Path) -> Path:
    return tmp_path / "orders.jsonl"


@pytest.fixture
def exchange(order_log: Path) -> Iterator[Any]:
    with running_exchange(order_log=order_log) as started:
        yield started


@pytest.fixture
def client(exchange: Any) -> ExchangeClient:
    return ExchangeClient(exchange.url)


def outcomes(exchange: Any) -> list[tuple[str | None, str]]:
    return [(entry["client_order_id"], entry["outcome"]) for entry in exchange.orders_received()]


# --- fills -------------------------------------------------------------------------------------------------


def test_a_market_order_fills_at_the_current_price_and_moves_the_position(exchange, client):
    reply = client.place("buy-1", symbol="BTC-USD", side="buy", quantity=0.5)

    assert reply.status == 200
    assert reply.body["client_order_id"] == "buy-1"
    assert reply.body["status"] == "filled"
    assert reply.body["filled_quantity"] == 0.5
    assert reply.body["remaining_quantity"] == 0.0
    assert reply.body["avg_price"] == 50000.0
    assert reply.body["duplicate"] is False
    assert reply.body["order_id"]
    assert client.get("/positions").body == {"positions": {"BTC-USD": 0.5}}

    client.place("sell-1", symbol="BTC-USD", side="sell", quantity=0.5)
    assert client.get("/positions").body == {"positions": {}}, "a flat position is not listed"


def test_a_limit_order_rests_until_the_price_crosses_it_then_fills_at_its_limit(exchange, client):
    reply = client.place("bid-1", symbol="ETH-USD", side="buy", quantity=2, type="limit", price=2900.0)
    assert reply.body["status"] == "open"
    assert [order["client_order_id"] for order in client.get("/orders?status=open").body["orders"]] == ["bid-1"]

    exchange.set_price("ETH-USD", 2950.0)
    assert client.get("/orders/bid-1").body["status"] == "open", "2950 does not reach a 2900 bid"

    assert client.request("POST", "/admin/prices", {"symbol": "ETH-USD", "price": 2850.0}).status == 200
    filled = client.get("/orders/bid-1").body
    assert filled["status"] == "filled"
    assert filled["avg_price"] == 2900.0
    assert exchange.positions() == {"ETH-USD": 2.0}
    assert exchange.open_orders() == []


def test_a_limit_order_that_can_trade_at_once_fills_at_the_current_price(exchange, client):
    reply = client.place("lift-1", symbol="BTC-USD", side="buy", quantity=1, type="limit", price=51000.0)

    assert reply.body["status"] == "filled"
    assert reply.body["avg_price"] == 50000.0


def test_partial_fills_leave_the_rest_working_until_it_is_cancelled(order_log):
    with running_exchange(max_fill=0.3, order_log=order_log) as exchange:
        client = ExchangeClient(exchange.url)
        first = client.place("big-buy", quantity=1.0)
        second = client.place("eth-buy", symbol="ETH-USD", quantity=0.2)

        assert first.body["status"] == "partially_filled"
        assert first.body["filled_quantity"] == 0.3
        assert first.body["remaining_quantity"] == 0.7
        assert second.body["status"] == "filled"
        exchange.set_price("BTC-USD", 40000.0)
        assert exchange.order("big-buy")["filled_quantity"] == 0.3, "no order ever fills more than max_fill"
        assert [order["client_order_id"] for order in exchange.open_orders()] == ["big-buy"]

        assert client.delete("/orders").body == {"cancelled": ["big-buy"]}
        cancelled = client.get("/orders/big-buy").body
        assert cancelled["status"] == "cancelled"
        assert cancelled["filled_quantity"] == 0.3
        assert cancelled["remaining_quantity"] == 0.0
        assert client.get("/orders?status=open").body == {"orders": []}
        assert exchange.positions() == {"BTC-USD": 0.3, "ETH-USD": 0.2}


def test_a_per_symbol_max_fill_caps_only_that_symbol():
    with running_exchange(max_fill={"ETH-USD": 1.0}) as exchange:
        client = ExchangeClient(exchange.url)
        assert client.place("btc", quantity=5).body["status"] == "filled"
        assert client.place("eth", symbol="ETH-USD", quantity=5).body["filled_quantity"] == 1.0


def test_cancelling_one_order_and_cancelling_it_again(exchange, client):
    client.place("rest-1", type="limit", price=40000.0)
    client.place("rest-2", type="limit", price=41000.0)

    cancelled = client.delete("/orders/rest-1")
    assert cancelled.status == 200
    assert cancelled.body["status"] == "cancelled"
    again = client.delete("/orders/rest-1")
    assert again.status == 409
    assert again.body["order"]["status"] == "cancelled"
    assert client.delete("/orders/never-sent").status == 404
    assert [order["client_order_id"] for order in exchange.open_orders()] == ["rest-2"]


def test_cancel_all_can_be_narrowed_to_one_symbol(exchange, client):
    client.place("btc-bid", type="limit", price=40000.0)
    client.place("eth-bid", symbol="ETH-USD", type="limit", price=2000.0)

    assert client.delete("/orders?symbol=ETH-USD").body == {"cancelled": ["eth-bid"]}
    assert [order["client_order_id"] for order in exchange.open_orders()] == ["btc-bid"]


def test_flattening_through_partial_fills_ends_on_dust_below_the_minimum_size():
    with running_exchange(max_fill=0.3, min_quantity=0.5, positions={"BTC-USD": 1.0}) as exchange:
        client = ExchangeClient(exchange.url)
        first = client.place("flat-1", side="sell", quantity=1.0)
        client.delete("/orders")
        second = client.place("flat-2", side="sell", quantity=0.7)
        client.delete("/orders")
        left = exchange.positions()["BTC-USD"]
        dust = client.place("flat-3", side="sell", quantity=left)

        assert (first.body["filled_quantity"], second.body["filled_quantity"]) == (0.3, 0.3)
        assert left == 0.4, "quantities are tidied, so 1.0 - 0.3 - 0.3 leaves 0.4, not 0.39999999999999997"
        assert dust.body["status"] == "rejected"
        assert dust.body["reason"].startswith("below minimum size")
        assert dust.body["remaining_quantity"] == 0.0
        assert exchange.positions() == {"BTC-USD": 0.4}
        assert outcomes(exchange)[-1] == ("flat-3", "rejected")


# --- idempotency -------------------------------------------------------------------------------------------


def test_a_repeated_client_order_id_returns_the_original_order_and_changes_nothing(exchange, client):
    original = client.place("once", quantity=1.0)
    repeated = client.place("once", quantity=7.0, side="sell")

    assert repeated.status == 200
    assert repeated.body["duplicate"] is True
    assert {key: value for key, value in repeated.body.items() if key != "duplicate"} == {
        key: value for key, value in original.body.items() if key != "duplicate"
    }
    assert exchange.positions() == {"BTC-USD": 1.0}
    assert len(client.get("/orders").body["orders"]) == 1
    assert outcomes(exchange) == [("once", "filled"), ("once", "duplicate")]
    assert exchange.orders_received()[1]["quantity"] == 7.0, "the log keeps what the repeat asked for"


def test_a_duplicate_shows_what_became_of_the_original_since(exchange, client):
    client.place("resting", type="limit", price=49000.0)
    exchange.set_price("BTC-USD", 48000.0)

    repeated = client.place("resting", type="limit", price=49000.0)

    assert repeated.body["duplicate"] is True
    assert repeated.body["status"] == "filled"


# --- faults ------------------------------------------------------------------------------------------------


def test_hang_accepts_the_order_and_never_answers(exchange, client):
    exchange.inject("hang")

    with pytest.raises(TimeoutError):
        client.place("hung-1", type="limit", price=40000.0, timeout=1.0)

    assert outcomes(exchange) == [("hung-1", "hung")]
    assert exchange.orders_received()[0]["status"] == "open"
    assert [order["client_order_id"] for order in exchange.open_orders()] == ["hung-1"]
    exchange.clear_faults()
    retried = client.place("hung-1", type="limit", price=40000.0)
    assert retried.body["duplicate"] is True, "a retry with the same id finds out what became of it"
    assert retried.body["status"] == "open"


def test_hang_holds_the_connection_until_the_faults_are_cleared_then_closes_it_without_a_reply(exchange):
    exchange.inject("hang")
    order = {"client_order_id": "held", "symbol": "BTC-USD", "side": "buy", "quantity": 1, "type": "market"}
    with send_order_raw(exchange.url, order) as connection:
        wait_until_sync(lambda: exchange.held_connections() == 1)
        connection.settimeout(1.0)
        with pytest.raises(TimeoutError):
            connection.recv(1)
        assert exchange.positions() == {"BTC-USD": 1.0}, "the hung order was accepted and filled"

        exchange.clear_faults()
        connection.settimeout(10.0)
        assert connection.recv(1) == b"", "closed, with not one byte of an answer"
    wait_until_sync(lambda: exchange.held_connections() == 0)


def test_stopping_the_exchange_lets_a_held_connection_go(order_log):
    exchange = paper_exchange.PaperExchange(order_log=order_log).start()
    exchange.inject("hang")
    order = {"client_order_id": "held", "symbol": "BTC-USD", "side": "buy", "quantity": 1, "type": "market"}
    with send_order_raw(exchange.url, order) as connection:
        wait_until_sync(lambda: exchange.held_connections() == 1)
        exchange.stop()
        connection.settimeout(10.0)
        assert connection.recv(1) == b""
    assert exchange.held_connections() == 0


def test_a_counted_hang_answers_again_once_used_up(exchange, client):
    exchange.inject("hang", count=1)
    with pytest.raises(TimeoutError):
        client.place("first", timeout=1.0)

    assert client.place("second").body["status"] == "filled"


def test_disconnect_closes_the_connection_without_a_reply_and_accepts_nothing(exchange, client):
    exchange.inject("disconnect", count=1)

    with pytest.raises(http.client.RemoteDisconnected):
        client.place("dropped")

    assert client.get("/orders/dropped").status == 404
    assert exchange.positions() == {}
    assert client.place("dropped").body["status"] == "filled", "not accepted, so the same id is new next time"
    assert outcomes(exchange) == [("dropped", "disconnected"), ("dropped", "filled")]


def test_rate_limit_answers_429_with_retry_after_and_accepts_nothing(exchange, client):
    exchange.inject("rate_limit", count=2)

    first = client.place("busy")
    second = client.place("busy")
    third = client.place("busy")

    assert (first.status, second.status, third.status) == (429, 429, 200)
    assert first.body == {"error": "rate limited"}
    assert first.headers["Retry-After"] == "1"
    assert third.body["duplicate"] is False
    assert outcomes(exchange) == [("busy", "rate_limited"), ("busy", "rate_limited"), ("busy", "filled")]


def test_reject_answers_rejected_with_the_reason_given(exchange, client):
    exchange.inject("reject", count=1, reason="insufficient margin")

    rejected = client.place("refused")
    accepted = client.place("next")

    assert rejected.status == 200
    assert rejected.body["status"] == "rejected"
    assert rejected.body["reason"] == "insufficient margin"
    assert rejected.body["filled_quantity"] == 0.0
    assert accepted.body["status"] == "filled"
    assert exchange.positions() == {"BTC-USD": 1.0}
    assert exchange.orders_received()[0]["reason"] == "insufficient margin"


def test_a_duplicate_under_a_reject_fault_gets_its_original_and_leaves_the_count(exchange, client):
    client.place("earlier")
    exchange.inject("reject", count=1)

    assert client.place("earlier").body["status"] == "filled"
    assert client.place("later").body["status"] == "rejected"


def test_faults_are_set_read_and_cleared_over_http(exchange, client):
    injected = client.request("POST", "/admin/faults", {"fault": "reject", "count": 3, "reason": "halted market"})
    assert injected.status == 200
    assert injected.body["fault"] == {"fault": "reject", "count": 3, "reason": "halted market"}

    assert client.place("one").body["reason"] == "halted market"
    assert client.get("/admin/faults").body["fault"]["count"] == 2
    assert client.delete("/admin/faults").body == {"cleared": True}
    assert client.get("/admin/faults").body == {"fault": None, "held_connections": 0}
    assert client.place("two").body["status"] == "filled"


@pytest.mark.parametrize(
    "fault",
    [{"fault": "explode"}, {"fault": "hang", "count": 0}, {"fault": "hang", "count": True}, {"fault": "hang", "x": 1}],
)
def test_a_fault_that_does_not_exist_is_refused(client, fault):
    reply = client.request("POST", "/admin/faults", fault)

    assert reply.status == 400
    assert reply.body["error"]
    assert client.get("/admin/faults").body["fault"] is None


# --- the order log -----------------------------------------------------------------------------------------


def test_the_order_log_file_holds_every_request_even_after_the_exchange_stops(order_log):
    with running_exchange(order_log=order_log) as exchange:
        client = ExchangeClient(exchange.url)
        client.place("a", quantity=0.25)
        client.place("a", quantity=0.25)
        client.place("b", type="limit", side="sell", price=60000.0)
        client.request("POST", "/orders", {"client_order_id": "c", "symbol": "BTC-USD"})
        exchange.inject("rate_limit", count=1)
        client.place("d")
        in_memory = exchange.orders_received()
        over_http = client.get("/admin/orders").body["orders"]

    on_disk = [json.loads(line) for line in order_log.read_text().splitlines()]
    assert on_disk == in_memory == over_http
    assert [(entry["client_order_id"], entry["outcome"]) for entry in on_disk] == [
        ("a", "filled"),
        ("a", "duplicate"),
        ("b", "open"),
        ("c", "invalid"),
        ("d", "rate_limited"),
    ]
    first = on_disk[0]
    assert set(first) == {
        "at",
        "client_order_id",
        "symbol",
        "side",
        "quantity",
        "type",
        "price",
        "outcome",
        "order_id",
        "status",
        "reason",
    }
    assert (first["symbol"], first["side"], first["quantity"], first["type"]) == ("BTC-USD", "buy", 0.25, "market")
    assert on_disk[2]["price"] == 60000.0
    assert "side must be buy or sell" in on_disk[3]["reason"]
    assert on_disk[4]["order_id"] is None
    assert all(entry["at"] > 0 for entry in on_disk)


def test_a_stopped_exchange_writes_nothing_more_and_a_new_one_appends(order_log):
    for client_order_id in ("first-run", "second-run"):
        with running_exchange(order_log=order_log) as exchange:
            ExchangeClient(exchange.url).place(client_order_id)

    lines = [json.loads(line)["client_order_id"] for line in order_log.read_text().splitlines()]
    assert lines == ["first-run", "second-run"]


# --- bad input ---------------------------------------------------------------------------------------------


def test_a_body_over_64_kib_is_refused_with_413_and_logged(exchange, client):
    padding = "x" * (paper_exchange.MAX_BODY_BYTES + 1)
    raw = json.dumps({"client_order_id": "huge", "note": padding}).encode()

    reply = client.request("POST", "/orders", raw=raw)

    assert reply.status == 413
    assert "over the limit" in reply.body["error"]
    assert outcomes(exchange) == [(None, "invalid")]
    assert exchange.open_orders() == []


def test_malformed_json_is_refused_with_400_and_logged(exchange, client):
    reply = client.request("POST", "/orders", raw=b'{"client_order_id": "broken", ')

    assert reply.status == 400
    assert "not valid JSON" in reply.body["error"]
    assert outcomes(exchange) == [(None, "invalid")]


def test_an_order_of_the_wrong_shape_is_refused_with_every_problem_at_once(exchange, client):
    reply = client.request(
        "POST",
        "/orders",
        {"client_order_id": "x" * 65, "symbol": "BTC-USD", "side": "up", "quantity": -1, "type": "limit", "qty": 1},
    )

    assert reply.status == 400
    for problem in ("unknown fields qty", "client_order_id", "side must be", "quantity must be", "price must be"):
        assert problem in reply.body["error"]
    assert exchange.orders_received()[0]["client_order_id"] == "x" * 64, "text from a bad request is cut short"


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'"text"', b'{"client_order_id": "n", "symbol": "BTC-USD", "side": "buy", "quantity": NaN}'],
)
def test_a_body_that_is_not_an_order_object_is_refused_with_400(client, raw):
    assert client.request("POST", "/orders", raw=raw).status == 400


def test_an_unknown_symbol_is_refused_with_400(exchange, client):
    reply = client.place("doge", symbol="DOGE-USD")

    assert reply.status == 400
    assert reply.body == {"error": "unknown symbol DOGE-USD"}
    assert outcomes(exchange) == [("doge", "invalid")]


def test_a_market_order_with_a_price_is_refused(client):
    assert client.place("priced", type="market", price=1.0).status == 400


def test_unknown_paths_are_404_and_wrong_methods_405(client):
    assert client.get("/nowhere").status == 404
    assert client.get("/orders/never-sent").status == 404
    wrong = client.request("POST", "/positions", {})
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "GET"
    assert client.get("/orders?status=sideways").status == 400


# --- reading the exchange ----------------------------------------------------------------------------------


def test_positions_prices_time_and_orders_by_status(exchange, client):
    exchange.set_price("SOL-USD", 150.0)
    client.place("sol", symbol="SOL-USD", quantity=3)
    client.place("bid", type="limit", price=1.0)
    client.place("ask", type="limit", side="sell", price=90000.0)
    client.delete("/orders/ask")

    assert client.get("/prices").body == {"prices": {"BTC-USD": 50000.0, "ETH-USD": 3000.0, "SOL-USD": 150.0}}
    assert client.get("/positions").body == {"positions": {"SOL-USD": 3.0}}
    server_time = client.get("/time").body["server_time"]
    assert abs(server_time - exchange.orders_received()[0]["at"]) < 60
    by_status = {
        status: [order["client_order_id"] for order in client.get(f"/orders?status={status}").body["orders"]]
        for status in ("open", "filled", "cancelled")
    }
    assert by_status == {"open": ["bid"], "filled": ["sol"], "cancelled": ["ask"]}
    assert [order["client_order_id"] for order in client.get("/orders?symbol=SOL-USD").body["orders"]] == ["sol"]


def test_bad_constructor_arguments_are_refused_in_plain_words():
    with pytest.raises(ValueError, match="max_fill must be a number more than zero"):
        paper_exchange.PaperExchange(max_fill=0)
    with pytest.raises(ValueError, match="price of BTC-USD"):
        paper_exchange.PaperExchange({"BTC-USD": -5})
    with pytest.raises(ValueError, match="fault must be one of"):
        paper_exchange.PaperExchange().inject("lag")


def test_the_url_is_loopback_only(exchange):
    assert exchange.url == f"http://127.0.0.1:{exchange.port}"
    with socket.create_connection(("127.0.0.1", exchange.port), timeout=5):
        pass


# --- the script --------------------------------------------------------------------------------------------


def test_the_script_serves_until_sigterm_then_exits_0_with_its_log_on_disk(tmp_path):
    order_log = tmp_path / "script-orders.jsonl"
    arguments = ["--order-log", str(order_log), "--max-fill", "0.5", "--price", "SOL-USD=150", "--min-quantity", "0.1"]
    with exchange_process(tmp_path, *arguments) as running:
        client = ExchangeClient(running.url)
        partial = client.place("sol-1", symbol="SOL-USD", quantity=2)
        dust = client.place("sol-2", symbol="SOL-USD", quantity=0.05)
        assert running.pid == running.process.pid
        assert running.url.startswith("http://127.0.0.1:")

        assert running.stop() == 0

    assert (partial.body["status"], partial.body["filled_quantity"], partial.body["avg_price"]) == (
        "partially_filled",
        0.5,
        150.0,
    )
    assert dust.body["status"] == "rejected"
    assert not running.ready_file.exists(), "a stopped exchange leaves no ready file to mislead the next reader"
    logged = [json.loads(line) for line in order_log.read_text().splitlines()]
    assert [(entry["client_order_id"], entry["outcome"]) for entry in logged] == [
        ("sol-1", "partially_filled"),
        ("sol-2", "rejected"),
    ]


def test_the_script_takes_per_symbol_bounds_and_starting_positions(tmp_path):
    arguments = ["--max-fill", "ETH-USD=1", "--position", "BTC-USD=-2"]
    with exchange_process(tmp_path, *arguments) as running:
        client = ExchangeClient(running.url)
        assert client.get("/positions").body == {"positions": {"BTC-USD": -2.0}}
        assert client.place("eth", symbol="ETH-USD", quantity=3).body["filled_quantity"] == 1.0
        assert running.stop() == 0


def test_the_script_stops_on_sigint_too(tmp_path):
    with exchange_process(tmp_path) as running:
        running.process.send_signal(2)
        assert running.process.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-fill", "-1"], "max_fill must be a number more than zero"),
        (["--price", "BTC-USD"], "expected SYMBOL=NUMBER"),
        (["--price", "BTC-USD=cheap"], "is not a number"),
        (["--max-fill", "0.3", "--max-fill", "BTC-USD=1"], "not both"),
        (["--port", "70000"], "--port must be 0..65535"),
        (["--min-quantity", "much"], "expected a number or SYMBOL=NUMBER"),
    ],
)
def test_the_script_refuses_bad_arguments_with_a_clear_message_and_exit_2(tmp_path, arguments, message):
    ready_file = tmp_path / "never.ready"
    finished = subprocess.run(
        [sys.executable, str(EXCHANGE_SCRIPT), "--ready-file", str(ready_file), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )

    assert finished.returncode == 2
    assert message in finished.stderr
    assert not ready_file.exists()


def test_the_script_says_so_when_its_port_is_taken(tmp_path, exchange):
    finished = subprocess.run(
        [sys.executable, str(EXCHANGE_SCRIPT), "--port", str(exchange.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert finished.returncode == 1
    assert "cannot start" in finished.stderr


def test_an_exchange_can_be_started_again_after_it_stopped(order_log):
    exchange = paper_exchange.PaperExchange(order_log=order_log)
    for client_order_id in ("before", "after"):
        with exchange:
            exchange.inject("hang", count=1)
            with pytest.raises(TimeoutError):
                ExchangeClient(exchange.url).place(client_order_id, timeout=1.0)
            exchange.clear_faults()
            assert ExchangeClient(exchange.url).place(client_order_id).body["duplicate"] is True


def test_the_oldest_finished_orders_are_forgotten_first_but_working_ones_never(monkeypatch):
    monkeypatch.setattr(paper_exchange, "ORDERS_KEPT", 3)
    with running_exchange() as exchange:
        client = ExchangeClient(exchange.url)
        client.place("resting", type="limit", price=1.0)
        for number in range(4):
            client.place(f"filled-{number}")

        remembered = [order["client_order_id"] for order in client.get("/orders").body["orders"]]
        assert remembered == ["resting", "filled-2", "filled-3"]


def test_fills_are_listed_since_a_fill_id_and_a_forgotten_history_is_never_called_complete():
    with running_exchange(max_fill=0.4) as exchange:
        client = ExchangeClient(exchange.url)
        client.place("a-1", symbol="BTC-USD", side="buy", quantity=1.0)
        client.place("a-2", symbol="BTC-USD", side="sell", quantity=0.2)
        everything = client.get("/fills?since=0").body
        assert [(f["client_order_id"], f["quantity"]) for f in everything["fills"]] == [("a-1", 0.4), ("a-2", 0.2)]
        assert everything["complete"] is True and everything["next"] == 2
        after = client.get("/fills?since=1").body
        assert [f["fill_id"] for f in after["fills"]] == [2]
        assert client.get("/fills?since=x").status == 400

        exchange._fills.popleft()  # the exchange forgot its oldest fill, as a long-running one does
        assert exchange.fills(0)["complete"] is False
        assert exchange.fills(1)["complete"] is True


def test_a_forgotten_fills_history_has_no_next_page_that_could_make_it_look_whole():
    with running_exchange() as exchange:
        client = ExchangeClient(exchange.url)
        client.place("b-1")
        client.place("b-2")
        exchange._fills.popleft()
        forgotten = client.get("/fills?since=0").body
        assert forgotten["complete"] is False and forgotten["next"] is None, forgotten


def test_the_fills_endpoint_can_be_made_unavailable_or_incomplete_and_mended():
    with running_exchange() as exchange:
        client = ExchangeClient(exchange.url)
        client.place("c-1")
        assert client.request("POST", "/admin/fills", {"answer": "unavailable"}).status == 200
        assert client.get("/fills?since=0").status == 503
        client.request("POST", "/admin/fills", {"answer": "incomplete"})
        broken = client.get("/fills?since=0").body
        assert broken["complete"] is False and broken["next"] is None, broken
        assert client.request("POST", "/admin/fills", {"answer": "sometimes"}).status == 400
        client.request("POST", "/admin/fills", {"answer": "normal"})
        assert client.get("/fills?since=0").body["complete"] is True


def test_a_delayed_order_is_accepted_and_logged_at_once_and_answered_only_later():
    with running_exchange() as exchange:
        client = ExchangeClient(exchange.url)
        set_fault = client.request("POST", "/admin/faults", {"fault": "delay", "count": 1, "seconds": 1.0})
        assert set_fault.body["fault"] == {
            "fault": "delay",
            "count": 1,
            "reason": paper_exchange.DEFAULT_REJECT_REASON,
            "seconds": 1.0,
        }
        connection = send_order_raw(
            exchange.url,
            {"client_order_id": "slow", "symbol": "BTC-USD", "side": "buy", "quantity": 1.0, "type": "market"},
        )
        with connection:
            wait_until_sync(lambda: exchange.order("slow") is not None, timeout=5)
            logged_at = time.monotonic()
            assert outcomes(exchange) == [("slow", "filled")], "the order was accepted before any answer"
            connection.settimeout(5)
            answer = connection.recv(65536)
            assert time.monotonic() - logged_at > 0.5, "the answer was held back"
            assert b"200" in answer.split(b"\r\n", 1)[0]
        assert client.place("quick").body["status"] == "filled", "the count is used up: the next is answered at once"
        assert client.request("POST", "/admin/faults", {"fault": "delay", "seconds": 0}).status == 400
