"""The kill switch with all three layers: a real trading bot under a `while true` loop, a real paper exchange,
a real Horus daemon with a trading check and a halt-first escalation ladder, and `horus control`.

What reached the exchange is read from the exchange's own order log, which neither the bot nor Horus can touch.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from horus_sdk.control_files import read_status
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


def restart_loop(tmp_path: Path, url: str, control: Path, *first_run_only: str) -> subprocess.Popen[bytes]:
    """The bot under `while true`, in a session of its own; ``first_run_only`` arguments apply to its first run."""
    bot = f"{sys.executable} {BOT} --exchange {url} --control {control} --cycle 0.1 --reduce-after 3 --halt-after 5"
    marker = tmp_path / "first-run-done"
    script = (
        f"while true; do if [ -e {marker} ]; then {bot}; else touch {marker}; {bot} {' '.join(first_run_only)}; fi; "
        "sleep 0.3; done"
    )
    log = (tmp_path / "bot.log").open("ab")
    try:
        return subprocess.Popen(["/bin/sh", "-c", script], stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


@dataclass
class Desk:
    """The example bot under a restart loop, trading on a paper exchange process, watched by a real `horus run`."""

    tmp_path: Path
    url: str
    exchange: ExchangeClient
    control: Path
    config: Path
    log: EventLog
    loop: subprocess.Popen[bytes]
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def state(self) -> Path:
        return self.tmp_path / "state"

    def start_daemon(self) -> None:
        self.daemon = spawn_daemon(self.config, self.state, self.log.path)

    def stop_daemon(self) -> int:
        assert self.daemon is not None
        code, self.daemon = stop_daemon(self.daemon), None
        return code

    def start_bot(self) -> None:
        self.loop = restart_loop(self.tmp_path, self.url, self.control)

    def stop_bot(self) -> None:
        stop_session(self.loop)


@contextlib.contextmanager
def trading_desk(tmp_path: Path, *first_run_only: str, heal_cooldown_seconds: float) -> Iterator[Desk]:
    control = tmp_path / "control"
    with exchange_process(tmp_path) as exchange_proc:
        url = exchange_proc.url
        desk = Desk(
            tmp_path,
            url,
            ExchangeClient(url),
            control,
            write_config(tmp_path, url, control, heal_cooldown_seconds=heal_cooldown_seconds),
            EventLog(tmp_path / "events.jsonl"),
            restart_loop(tmp_path, url, control, *first_run_only),
        )
        desk.start_daemon()
        try:
            yield desk
        finally:
            if desk.daemon is not None:
                desk.stop_daemon()
            desk.stop_bot()


def write_config(tmp_path: Path, url: str, control: Path, **monitor: Any) -> Path:
    desk = {
        "name": "desk",
        "interval_seconds": 0.5,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 2,
        "confirm_recovery_seconds": 1,
        "check": {"type": "trading", "control_dir": str(control), "max_cycle_age_seconds": 2},
        "escalation": [
            {"action": "halt", "control_dir": str(control), "ack_timeout_seconds": 5},
            {
                "action": "kill_process",
                # This bot and no other: its exchange and control dir are its own.
                "process_pattern": f"{BOT} --exchange {url} --control {control}",
                "ignore_wrappers": True,
                "grace_seconds": 3,
            },
        ],
        **monitor,
    }
    return config_with_a_phone(tmp_path, [desk])


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60)


def flatten_state(control: Path) -> str | None:
    return (read_status(control).get("flatten") or {}).get("state")


def orders_between(exchange: ExchangeClient, start: float, end: float) -> list[dict[str, Any]]:
    log = exchange.get("/admin/orders").body
    entries = log["orders"] if isinstance(log, dict) else log
    return [e for e in entries if start <= float(e["at"]) <= end]


def test_a_burst_of_rejects_trips_the_bot_horus_halts_it_and_an_operator_resumes_it_across_a_horus_restart(
    tmp_path,
):
    with trading_desk(tmp_path, heal_cooldown_seconds=300) as desk:
        exchange, control, config, log = desk.exchange, desk.control, desk.config, desk.log
        wait_until_sync(lambda: mode(control) == "active" and log.named("check.ok") is not None, timeout=30)
        wait_until_sync(lambda: len(orders_between(exchange, 0, time.time())) >= 3, timeout=30)

        exchange.request("POST", "/admin/faults", {"fault": "reject", "count": 5, "reason": "insufficient margin"})
        # Flat and halted, whether Horus's halt heal came before the bot's own flatten finished or after.
        wait_until_sync(lambda: mode(control) == "halted" and flatten_state(control) == "done", timeout=30)
        halted_at = became(control, "halted")
        assert "failures_halt" in [c["name"] for c in read_status(control)["causes"]]
        assert not exchange.get("/positions").body["positions"], "the trip flattened the bot"

        # Horus: the trip is a failure (and an alert when Horus saw the bot before it); its halt heal is
        # acknowledged at once, and Sentinel names the trip and the broker's words as the cause.
        wait_until_sync(lambda: log.named("heal.finished"), timeout=20)
        [finished] = log.named("heal.finished")
        assert finished["action"] == "halt"
        assert finished["outcome"] == "ok", finished
        wait_until_sync(lambda: [e for e in log.named("check.failed") if "trip failures_halt" in e["reason"]], 20)
        [failed] = [e for e in log.named("check.failed") if "trip failures_halt" in e["reason"]][:1]
        assert "insufficient margin" in failed["reason"]
        [opened] = log.named("incident.opened")
        # The incident opens on the first trip Horus sees: the halt, or under load the reduce just before it.
        cause = opened["probable_cause"]
        assert cause.startswith("probable: the bot's kill switch tripped (failures_"), cause
        assert "insufficient margin" in cause, cause

        # Horus restarts in the middle: the new daemon says no alert twice, and still sees the trip.
        assert desk.stop_daemon() == 0
        alerts_before = len(log.named("monitor.alert"))
        desk.start_daemon()
        wait_until_sync(lambda: len(log.named("horus.started")) == 2, timeout=20)
        wait_until_sync(
            lambda: "desk: HALTED" in horus("status", "-c", str(config), "--state-dir", str(tmp_path / "state")).stdout,
            timeout=20,
        )

        # A config reload in the middle changes nothing of what the bot is told or shown.
        config.write_text(config.read_text().replace('"max_cycle_age_seconds": 2', '"max_cycle_age_seconds": 3'))
        desk.daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: log.named("config.reloaded"), timeout=20)
        incident = horus("incident", "1", "-c", str(config), "--state-dir", str(tmp_path / "state"))
        # The cause the incident opened with (see above: the halt trip, or the reduce trip just before it).
        assert f"probable cause: {cause}" in incident.stdout, incident.stdout
        assert "the bot's last decisions before the heal" in incident.stdout
        assert "control.failure" in incident.stdout and "insufficient margin" in incident.stdout

        time.sleep(1.5)  # a few of the bot's cycles while halted: the point is that they send nothing
        resumed = horus("control", "desk", "resume", "--reason", "margin topped up", "-c", str(config))
        assert resumed.returncode == 0, resumed.stderr
        assert "acknowledged resume" in resumed.stdout and "ACTIVE" in resumed.stdout
        resumed_at = became(control, "active")  # when the bot applied the resume, by its own decision log
        assert resumed_at > halted_at
        assert orders_between(exchange, halted_at, resumed_at) == [], "nothing reached the exchange while halted"
        assert len(log.named("monitor.alert")) - alerts_before <= 1  # at most the mode change, not the trip again

        wait_until_sync(lambda: orders_between(exchange, resumed_at, time.time()), timeout=20)
        wait_until_sync(lambda: log.named("monitor.recovered"), timeout=30)
        # The person was told: the trading alerts went out through the outbox with the heal.
        wait_until_sync(lambda: "the bot is now ACTIVE" in notifications_sent(tmp_path), timeout=20)
        sent = notifications_sent(tmp_path)
        assert '"kind": "trading_alert"' in sent or '"kind":"trading_alert"' in sent
        assert all(e["action"] == "halt" for e in log.named("heal.started")), "no restart: it was not needed"


def test_a_stuck_loop_is_halted_then_restarted_and_the_bot_comes_back_halted_until_resumed(tmp_path):
    # Its first run blocks its event loop after 4 s, as a synchronous call in async code does.
    with trading_desk(tmp_path, "--block-loop-after", "4", heal_cooldown_seconds=1) as desk:
        exchange, control, config, log = desk.exchange, desk.control, desk.config, desk.log
        wait_until_sync(lambda: len(log.named("heal.finished")) >= 2, timeout=60)
        halt, kill = log.named("heal.finished")[:2]
        assert (halt["action"], halt["outcome"]) == ("halt", "ok"), "the stuck bot's control thread acknowledged"
        assert kill["action"] == "kill_process", kill
        halted_at = became(control, "halted")

        # The restart loop brings it back, and it comes back halted: the command outlived the process.
        wait_until_sync(lambda: log.named("monitor.recovered"), timeout=60)
        assert mode(control) == "halted"
        time.sleep(1.0)
        assert orders_between(exchange, halted_at, time.time()) == []
        status = horus("status", "-c", str(config), "--state-dir", str(tmp_path / "state"))
        assert "desk: HALTED (operator halt: Horus healed desk: last cycle" in status.stdout

        resumed = horus("control", "desk", "resume", "--reason", "fixed the blocking call", "-c", str(config))
        assert resumed.returncode == 0, resumed.stderr
        wait_until_sync(lambda: orders_between(exchange, time.time() - 1, time.time() + 1), timeout=20)


def test_after_a_heal_the_recovery_waits_until_the_restarted_bot_has_reconciled_with_its_broker(tmp_path):
    with trading_desk(tmp_path, "--block-loop-after", "4", heal_cooldown_seconds=1) as desk:
        exchange, control, log = desk.exchange, desk.control, desk.log
        wait_until_sync(lambda: log.named("check.failed"), timeout=30)  # its loop is stuck
        # The broker's fills history is incomplete from now on: the bot that comes back cannot reconcile.
        exchange.request("POST", "/admin/fills", {"answer": "incomplete"})
        wait_until_sync(lambda: any(e["action"] == "kill_process" for e in log.named("heal.finished")), timeout=60)
        # Its ladder halted it first, so it comes back HALTED, and still reconciling underneath.
        wait_until_sync(lambda: (read_status(control).get("reconcile") or {}).get("complete") is False, timeout=30)
        assert "reconciling" in [c["name"] for c in read_status(control)["causes"]]
        time.sleep(4)  # several looks at a restarted bot that cannot reconcile: none of them is a recovery
        assert not log.named("monitor.recovered"), "no recovery before the bot knows its positions"
        assert "reconciling" in [c["name"] for c in read_status(control)["causes"]]

        mended_at = time.time()
        exchange.request("POST", "/admin/fills", {"answer": "normal"})
        wait_until_sync(lambda: log.named("monitor.recovered"), timeout=60)
        [recovered] = log.named("monitor.recovered")
        assert recovered["timestamp"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mended_at))
        assert read_status(control)["reconcile"]["clean"] is True


def test_a_position_the_broker_disagrees_with_at_start_is_an_incident_that_lists_the_differences(tmp_path):
    with trading_desk(tmp_path, heal_cooldown_seconds=300) as desk:
        exchange, control, config, log = desk.exchange, desk.control, desk.config, desk.log
        wait_until_sync(lambda: len(orders_between(exchange, 0, time.time())) >= 3, timeout=30)
        desk.stop_bot()
        # While the bot is down, someone trades on the account by hand: the broker now holds more.
        assert exchange.place("by-hand-1", symbol="BTC-USD", side="buy", quantity=0.05).status == 200
        desk.start_bot()

        wait_until_sync(lambda: (read_status(control).get("reconcile") or {}).get("clean") is False, timeout=30)
        status = read_status(control)
        assert status["mode"] == "reducing", "only orders that reduce until a person looks"
        # The broker wins: the bot holds what the exchange says (read together: it keeps reducing meanwhile).
        wait_until_sync(
            lambda: read_status(control)["exposure"]["positions"] == exchange.get("/positions").body["positions"],
            timeout=10,
        )
        wait_until_sync(lambda: log.named("incident.opened"), timeout=30)
        [opened] = log.named("incident.opened")
        assert "reconcile_mismatch" in opened["probable_cause"], opened
        incident = horus("incident", "1", "-c", str(config), "--state-dir", str(tmp_path / "state"))
        assert "the bot's last reconcile with its broker: reconciled:" in incident.stdout
        assert "difference: mismatch BTC-USD" in incident.stdout, incident.stdout
