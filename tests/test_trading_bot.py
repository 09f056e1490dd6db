"""The example trading bot (examples/sdk/trading_bot.py) as its own process against a paper exchange process.

What a test can prove about a kill switch it proves here from the exchange's order log, which the bot cannot
touch: what reached the exchange, and when, against what the bot wrote in status.json.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.control_files import issue_command, read_status
from tests.exchange_support import ExchangeClient, exchange_process
from tests.support import wait_until_sync

BOT = Path(__file__).parents[1] / "examples" / "sdk" / "trading_bot.py"
TIMEOUT = 30.0
CYCLE = ("--cycle", "0.1")

pytestmark = pytest.mark.slow


@dataclass
class RunningBot:
    process: subprocess.Popen[bytes]
    control_dir: Path
    log: Path

    def status(self) -> dict[str, Any]:
        """The bot's status.json now; empty before its Control has written one."""
        try:
            return read_status(self.control_dir)
        except (OSError, ValueError):
            return {}

    def mode(self) -> str | None:
        return self.status().get("mode")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def decisions(self) -> list[dict[str, Any]]:
        path = self.control_dir / "decisions.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> int:
        """SIGTERM it and wait for it to exit; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)

    def wait_until(self, predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
        """Wait for ``predicate()``; fail with what the bot logged and said when it never holds, or when
        the bot exits first."""

        def holds() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the bot exited with {self.process.returncode}: {self.log_text()}")
            return bool(predicate())

        try:
            wait_until_sync(holds, timeout=timeout)
        except AssertionError as failed:
            raise AssertionError(
                f"{what}: {failed}\nstatus: {json.dumps(self.status(), indent=1)}\nlog:\n{self.log_text()}"
            ) from None


@contextlib.contextmanager
def trading_bot(workdir: Path, exchange_url: str, *arguments: str, name: str = "bot") -> Iterator[RunningBot]:
    """The bot as its own process on ``workdir/control``, killed when the block ends if still running."""
    control_dir = workdir / "control"
    log = workdir / f"{name}.log"
    command = [sys.executable, str(BOT), "--exchange", exchange_url, "--control", str(control_dir), "--log", str(log)]
    process = subprocess.Popen(
        [*command, *CYCLE, *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{name}.stderr").open("wb"),
    )
    try:
        yield RunningBot(process, control_dir, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)


def order_log(exchange: ExchangeClient) -> list[dict[str, Any]]:
    return list(exchange.get("/admin/orders").body["orders"])


def filled(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["outcome"] in ("filled", "partially_filled")]


def positions(exchange: ExchangeClient) -> dict[str, float]:
    return dict(exchange.get("/positions").body["positions"])


def modes_in_order(bot: RunningBot) -> list[str]:
    """The modes the bot went through, from its decision log."""
    return [record["mode"] for record in bot.decisions() if record["kind"] == "control.mode"]


def cycled_since(bot: RunningBot, moment: float) -> bool:
    cycled = bot.status().get("last_cycle_at")
    return isinstance(cycled, int | float) and cycled > moment


def test_the_bot_trades_through_its_gate_and_says_so_in_its_status(tmp_path):
    with exchange_process(tmp_path) as exchange_proc, trading_bot(tmp_path, exchange_proc.url) as bot:
        exchange = ExchangeClient(exchange_proc.url)
        bot.wait_until(lambda: len(filled(order_log(exchange))) >= 4, "the bot's orders reach the exchange")
        # status.json is rewritten at least every half second, so it catches up with the exchange.
        bot.wait_until(lambda: bot.status()["counters"]["permitted"] >= 4, "status.json counts the orders permitted")
        status = bot.status()
        assert status["mode"] == "active", status
        assert status["cause"] is None
        assert status["broker"]["connected"] is True
        cycled = status["last_cycle_at"]
        bot.wait_until(lambda: cycled_since(bot, cycled), "status.json shows new cycles")
        # The bot keeps one or two lots: never flat again after its first buy, never short.
        bot.wait_until(lambda: positions(exchange).get("BTC-USD", 0) > 0, "the bot holds a position")
        assert 0 < positions(exchange)["BTC-USD"] <= 0.02 + 1e-9
        assert "ORDER sent" in bot.log_text()
        signals = [r for r in bot.decisions() if r["kind"] == "signal"]
        assert signals, "every order the bot considers is in its decision log"
        assert {"symbol", "side", "price", "price_age_seconds", "permit"} <= set(signals[-1])
        # Reconcile on demand, not only at start: SIGUSR1, and the outcome is in the log and the status.
        reconciles = sum(r["kind"] == "control.reconcile" for r in bot.decisions())
        bot.process.send_signal(signal.SIGUSR1)
        bot.wait_until(
            lambda: sum(r["kind"] == "control.reconcile" for r in bot.decisions()) > reconciles,
            "a reconcile on demand",
        )
        assert "RECONCILE on demand: reconciled:" in bot.log_text()
        assert bot.status()["reconcile"]["clean"] is True
        assert bot.stop() == 0, "SIGTERM ends the bot cleanly"
    assert read_status(bot.control_dir)["mode"] == "active"


def test_a_burst_of_rejects_reduces_then_flattens_and_halts_and_nothing_is_sent_until_a_resume(tmp_path):
    with (
        exchange_process(tmp_path) as exchange_proc,
        trading_bot(tmp_path, exchange_proc.url, "--reduce-after", "3", "--halt-after", "6") as bot,
    ):
        exchange = ExchangeClient(exchange_proc.url)
        bot.wait_until(lambda: positions(exchange).get("BTC-USD", 0) > 0, "the bot holds a position")
        burst = exchange.request("POST", "/admin/faults", {"fault": "reject", "count": 6, "reason": "margin call"})
        assert burst.status == 200, burst.body
        bot.wait_until(lambda: bot.mode() == "halted", "the rejects halt the bot")

        status = bot.status()
        assert [c["name"] for c in status["causes"]] == ["failures_reduce", "failures_halt"]
        assert status["cause"]["name"] == "failures_halt"
        assert "margin call" in status["cause"]["reason"]
        assert status["counters"]["rejects"] == 6
        assert status["flatten"]["state"] == "done", status["flatten"]
        assert positions(exchange) == {}, "the halt came after the position was closed"
        modes = modes_in_order(bot)
        assert modes[modes.index("reducing") :][:3] == ["reducing", "flattening", "halted"], modes
        # While REDUCING the bot only tried to sell down its long position: every reject after the first
        # trip is a sell.
        rejected = [e for e in order_log(exchange) if e["outcome"] == "rejected"]
        assert [e["side"] for e in rejected[3:]] == ["sell"] * 3, rejected

        halted_at = status["flatten"]["finished_at"]
        sent_before_halt = len(order_log(exchange))
        denied = status["counters"]["denied"]
        # A few seconds of cycles, each one asking the gate for an order and being told no.
        bot.wait_until(lambda: bot.status()["counters"]["denied"] >= denied + 20, "the halted bot keeps cycling")
        bot.wait_until(lambda: cycled_since(bot, halted_at + 2.0), "two seconds of halted cycles")
        after_halt = [e for e in order_log(exchange) if e["at"] > halted_at]
        assert after_halt == [], "a halted bot sends nothing, and the exchange's log proves it"
        assert len(order_log(exchange)) == sent_before_halt
        assert "ORDER denied" in bot.log_text()

        resume = issue_command(bot.control_dir, "resume", "test: the rejects were injected", "pytest")
        bot.wait_until(lambda: bot.status().get("applied_seq") == resume.seq, "the bot acknowledges the resume")
        bot.wait_until(lambda: bot.mode() == "active", "the resume brings the bot back without a restart")
        resumed_at = bot.status()["control"]["at"]
        bot.wait_until(
            lambda: any(e["at"] > resumed_at for e in filled(order_log(exchange))), "orders flow again after the resume"
        )
        assert bot.status()["causes"] == []
        assert bot.status()["pid"] == bot.process.pid, "the same process: resuming needed no restart"


def test_a_flatten_completes_through_partial_fills_and_reports_the_dust_it_cannot_close(tmp_path):
    # Each order fills at most 0.02, and nothing under 0.015 can be sold: 0.09 takes four orders, each
    # filled in part, and leaves 0.01 of dust. The flatten is queued before the bot starts, so that the
    # bot's own trading cannot change the position it starts from.
    exchange_options = ("--max-fill", "0.02", "--min-quantity", "0.015", "--position", "BTC-USD=0.09")
    with exchange_process(tmp_path, *exchange_options) as exchange_proc:
        exchange = ExchangeClient(exchange_proc.url)
        control_dir = tmp_path / "control"
        control_dir.mkdir(mode=0o700)
        flatten = issue_command(control_dir, "flatten", "test: close everything", "pytest")
        with trading_bot(tmp_path, exchange_proc.url, "--quantity", "0.02", "--dust", "0.015") as bot:
            bot.wait_until(lambda: bot.mode() == "halted", "the flatten ends in HALTED")
            status = bot.status()
            assert status["applied_seq"] == flatten.seq
            result = status["flatten"]
            assert result["state"] == "done", result
            assert result["attempts"] == 4, result
            assert result["remaining"] == {}
            assert result["dust"] == {"BTC-USD": pytest.approx(0.01)}
            assert positions(exchange) == {"BTC-USD": pytest.approx(0.01)}
            assert "dust left" in status["cause"]["reason"]
            entries = order_log(exchange)
            assert [e["quantity"] for e in entries] == pytest.approx([0.09, 0.07, 0.05, 0.03])
            assert {e["outcome"] for e in entries} == {"partially_filled"}
            assert len({e["client_order_id"] for e in entries}) == 4, "a new client order id for each attempt"
            assert all(e["client_order_id"].startswith("h") for e in entries), "ids from the order journal"
            assert exchange.get("/orders?status=open").body["orders"] == [], "no remainder is left working"
            assert "FLATTEN sent" in bot.log_text()


def test_a_halt_written_while_the_bot_is_stopped_is_in_force_when_it_starts_again(tmp_path):
    with exchange_process(tmp_path) as exchange_proc:
        exchange = ExchangeClient(exchange_proc.url)
        with trading_bot(tmp_path, exchange_proc.url, name="first") as first:
            first.wait_until(lambda: len(filled(order_log(exchange))) >= 2, "the first run trades")
            assert first.stop() == 0
        halt = issue_command(first.control_dir, "halt", "test: the desk is closed", "pytest")
        sent_while_stopped = len(order_log(exchange))

        with trading_bot(tmp_path, exchange_proc.url, name="second") as second:
            second.wait_until(lambda: second.status().get("pid") == second.process.pid, "the second run starts")
            status = second.status()
            assert status["mode"] == "halted", status
            assert status["applied_seq"] == halt.seq
            second.wait_until(lambda: second.status()["counters"]["denied"] >= 20, "the halted bot keeps cycling")
            assert len(order_log(exchange)) == sent_while_stopped, "not one order reached the exchange"
            assert "the desk is closed" in second.log_text()
            assert second.stop() == 0


def test_a_bot_whose_loop_is_stuck_still_acknowledges_a_halt_and_exits_on_sigterm(tmp_path):
    with (
        exchange_process(tmp_path) as exchange_proc,
        trading_bot(tmp_path, exchange_proc.url, "--block-loop-after", "1") as bot,
    ):
        bot.wait_until(lambda: "blocking the event loop" in bot.log_text(), "the bot blocks its loop")
        halt = issue_command(bot.control_dir, "halt", "test: the loop is stuck", "pytest")
        started = time.monotonic()
        bot.wait_until(lambda: bot.status().get("applied_seq") == halt.seq, "the watcher thread acknowledges")
        assert time.monotonic() - started < 2.0
        assert bot.mode() == "halted"
        # A running loop rewrites status.json with a fresh cycle every half second; a stuck one cannot.
        bot.wait_until(lambda: time.time() - bot.status()["last_cycle_at"] > 1.5, "status.json shows the stale cycle")
        assert bot.stop() == 0, "SIGTERM still ends a bot whose loop is stuck, cleanly"
