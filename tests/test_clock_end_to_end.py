"""A clock ahead of the venue puts the bot in REDUCING: a real `horus run` with a clock monitor against a loopback
venue time server 2 s behind us and a loopback SNTP server, whose halt heal with ``command: reduce`` commands the
example trading bot on the paper exchange through its control dir; the operator resumes it once the clock is fixed.

What reached the exchange is read from the exchange's own order log, which neither the bot nor Horus can touch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.control_files import read_status
from tests.checks.test_clock import LoopbackSntpServer, LoopbackTimeServer
from tests.exchange_support import ExchangeClient, became, exchange_process, mode
from tests.support import (
    EventLog,
    config_with_a_phone,
    notifications_sent,
    spawn_daemon,
    stop_daemon,
    stop_session,
    wait_until_sync,
)

BOT = Path(__file__).parents[1] / "examples" / "sdk" / "trading_bot.py"

pytestmark = pytest.mark.slow


def start_bot(tmp_path: Path, url: str, control: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "bot.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, str(BOT), "--exchange", url, "--control", str(control), "--cycle", "0.1"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()


def orders(exchange: ExchangeClient) -> list[dict[str, Any]]:
    log = exchange.get("/admin/orders").body
    return list(log["orders"] if isinstance(log, dict) else log)


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60)


def test_a_clock_ahead_of_the_venue_puts_the_bot_in_reducing_and_horus_says_why(tmp_path: Path):
    control = tmp_path / "control"
    with (
        exchange_process(tmp_path) as exchange_proc,
        LoopbackTimeServer(skew=-2.0) as venue,
        LoopbackSntpServer(skew=-1.9) as ntp,
    ):
        exchange = ExchangeClient(exchange_proc.url)
        bot = start_bot(tmp_path, exchange_proc.url, control)
        monitor = {
            "name": "desk-clock",
            "interval_seconds": 0.5,
            "min_failures_to_heal": 1,
            "confirm_recovery_seconds": 1,
            "heal_cooldown_seconds": 300,
            "check": {
                "type": "clock",
                "ntp_servers": [ntp.address],
                "samples": 3,
                "query_timeout_seconds": 0.5,
                "venue": {"url": venue.url, "json_field": "serverTime", "unit": "ms"},
                # The host's own timedatectl says nothing here that the test could rely on.
                "local_sync": False,
            },
            "heal": {"action": "halt", "command": "reduce", "control_dir": str(control), "ack_timeout_seconds": 5},
        }
        config = config_with_a_phone(tmp_path, [monitor])
        log = EventLog(tmp_path / "events.jsonl")
        daemon = None
        try:
            # The bot trades and holds a position before the clock is looked at.
            wait_until_sync(lambda: mode(control) == "active" and len(orders(exchange)) >= 3, timeout=30)
            daemon = spawn_daemon(config, tmp_path / "state", log.path)

            wait_until_sync(lambda: mode(control) == "reducing", timeout=30)
            reducing_at = became(control, "reducing")
            cause = read_status(control)["cause"]
            assert cause["mode"] == "reducing"
            assert "Horus healed desk-clock: the clock is 2.0 s ahead of 127.0.0.1 (HTTP, round trip" in cause["reason"]

            # Horus says why: the failure names the venue, the NTP server and what is at stake; the heal is
            # acknowledged by the bot.
            wait_until_sync(lambda: log.named("heal.finished"), timeout=20)
            [finished] = log.named("heal.finished")
            assert (finished["action"], finished["outcome"]) == ("halt", "ok"), finished
            assert "acknowledged reduce" in finished["summary"] and "REDUCING" in finished["summary"], finished
            [failed] = log.named("check.failed")[:1]
            reason = failed["reason"]
            assert reason.startswith("the clock is 2.0 s ahead of 127.0.0.1 (HTTP, round trip "), reason
            assert f"and 1.9 s ahead of NTP server {ntp.address}" in reason, reason
            assert "rejects signed requests stamped in its future, cancel-all included" in reason, reason
            wait_until_sync(lambda: "2.0 s ahead of 127.0.0.1" in notifications_sent(tmp_path), timeout=20)

            # REDUCING: the bot sells its position down and buys nothing. An order its gate let through just
            # before the command may reach the exchange a moment after, hence the margin.
            wait_until_sync(lambda: not exchange.get("/positions").body["positions"], timeout=30)
            after = [o for o in orders(exchange) if float(o["at"]) > reducing_at + 0.5]
            assert all(o["side"] == "sell" for o in after), after
            assert mode(control) == "reducing", "it stays so while the clock is wrong"

            # The operator fixes the clock, Horus sees it recover, and the operator resumes the bot.
            venue.skew, ntp.skew = 0.0, 0.0
            wait_until_sync(lambda: log.named("monitor.recovered"), timeout=30)
            resumed = horus("control", "desk-clock", "resume", "--reason", "clock fixed", "-c", str(config))
            assert resumed.returncode == 0, resumed.stderr
            assert "ACTIVE" in resumed.stdout, resumed.stdout
            assert [e["action"] for e in log.named("heal.started")] == ["halt"], "one heal, not one per look"
        finally:
            if daemon is not None:
                stop_daemon(daemon)
            stop_session(bot)
