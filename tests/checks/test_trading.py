"""The trading check's verdicts, from status.json files written as horus-sdk's Control writes them."""

from __future__ import annotations

import os
import time

import pytest

from horus.checks.base import Status
from horus.checks.trading import TradingCheck, TradingOptions
from horus.errors import ProbeError
from horus_sdk.control_files import FORMAT_STATUS, status_path
from horus_sdk.formats import boot_id, write_json_atomic


def status(control_dir, *, cycled_ago: float | None = 0.5, started_ago: float = 100.0, updated_ago=0.0, **fields):
    now_wall, now_mono = time.time(), time.monotonic()
    data = {
        "format": FORMAT_STATUS,
        "pid": 4121,
        "boot_id": boot_id(),
        "started_at": now_wall - started_ago,
        "updated_at": now_wall - updated_ago,
        "monotonic": now_mono,
        "mode": "active",
        "cause": None,
        "causes": [],
        "applied_seq": 0,
        "control": None,
        "control_error": None,
        "last_cycle_at": None if cycled_ago is None else now_wall - cycled_ago,
        "last_cycle_monotonic": None if cycled_ago is None else now_mono - cycled_ago,
        "broker": {"connected": True, "since": now_wall - 50, "reason": None},
        "counters": {"rejects": 0, "errors": 0, "permitted": 10, "denied": 0},
        "flatten": {"state": "idle"},
        **fields,
    }
    write_json_atomic(status_path(control_dir), data)


def check(control_dir, **options) -> TradingCheck:
    return TradingCheck(TradingOptions.model_validate({"type": "trading", "control_dir": str(control_dir), **options}))


TRIP = {
    "source": "trip",
    "name": "failures_halt",
    "mode": "halted",
    "reason": "10 rejects or errors in 60 s (last: insufficient margin)",
    "since": 1.0,
    "latched": True,
    "until": None,
}


async def test_a_bot_that_cycles_is_healthy_and_says_its_mode(tmp_path, probe_ctx):
    status(tmp_path, cycled_ago=1.0)
    result = await check(tmp_path, max_cycle_age_seconds=10).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "cycling (last 1.0 s ago); ACTIVE"
    assert result.details["trading"]["mode"] == "active"
    assert 8.5 < result.recheck_in <= 9.1


async def test_a_bot_whose_cycle_is_stale_is_unhealthy_even_with_its_broker_connected(tmp_path, probe_ctx):
    status(tmp_path, cycled_ago=45)
    result = await check(tmp_path, max_cycle_age_seconds=30).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("last cycle 45 s ago, limit 30 s (pid 4121, ACTIVE)")
    assert result.details["condition"] == "stale"


async def test_a_bot_that_never_cycled_has_its_whole_limit_from_its_start_then_is_unhealthy(tmp_path, probe_ctx):
    status(tmp_path, cycled_ago=None, started_ago=5, mode="halted")
    assert (await check(tmp_path, max_cycle_age_seconds=30).probe(probe_ctx)).status is Status.HEALTHY
    status(tmp_path, cycled_ago=None, started_ago=40, mode="halted")
    result = await check(tmp_path, max_cycle_age_seconds=30).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("no cycle yet 40 s ago")


async def test_an_operator_halt_is_healthy_and_named_but_an_automatic_trip_is_unhealthy(tmp_path, probe_ctx):
    operator = {"source": "operator", "name": "halt", "mode": "halted", "reason": "exchange maintenance"}
    status(tmp_path, mode="halted", cause=operator, causes=[operator])
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert "HALTED (operator halt: exchange maintenance)" in result.reason

    status(tmp_path, mode="halted", cause=TRIP, causes=[TRIP])
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("trip failures_halt: 10 rejects or errors in 60 s (last: insufficient margin)")
    assert "resume --reason" in result.reason
    assert result.details["condition"] == "trip"


async def test_an_incomplete_flatten_names_what_is_still_open(tmp_path, probe_ctx):
    status(tmp_path, mode="halted", flatten={"state": "incomplete", "attempts": 5, "remaining": {"BTC-USD": 0.25}})
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "flatten incomplete after 5 attempt(s): still open BTC-USD 0.25"


async def test_a_disconnected_broker_is_unhealthy_after_the_allowed_time(tmp_path, probe_ctx):
    down = {"connected": False, "since": time.time() - 20, "reason": "websocket closed"}
    status(tmp_path, broker=down)
    assert (await check(tmp_path, max_disconnected_seconds=60).probe(probe_ctx)).status is Status.HEALTHY
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "broker disconnected for 20 s: websocket closed"


async def test_a_control_file_the_bot_cannot_read_is_unhealthy_because_a_halt_would_not_be_heard(tmp_path, probe_ctx):
    status(tmp_path, control_error="control.json: not a horus-control/1 file (Expecting value)")
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert "a halt would not be heard" in result.reason


async def test_no_status_file_is_unhealthy_and_a_pipe_in_its_place_is_a_probe_error(tmp_path, probe_ctx):
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert "Control has not started" in result.reason
    os.mkfifo(status_path(tmp_path))
    with pytest.raises(ProbeError, match="named pipe"):
        await check(tmp_path).probe(probe_ctx)


async def test_each_new_fact_is_an_alert_once_and_the_first_look_only_learns(tmp_path, probe_ctx):
    the_check = check(tmp_path)
    status(tmp_path, counters={"rejects": 7, "errors": 0})
    assert "alerts" not in (await the_check.probe(probe_ctx)).details  # 7 rejects before Horus looked

    down = {"connected": False, "since": time.time(), "reason": "websocket closed"}
    status(tmp_path, counters={"rejects": 9, "errors": 0}, broker=down, mode="halted", cause=TRIP, causes=[TRIP])
    alerts = {a["kind"]: a for a in (await the_check.probe(probe_ctx)).details["alerts"]}
    assert set(alerts) == {"disconnected", "rejects", "trip", "mode"}
    assert alerts["rejects"]["message"] == "2 order(s) rejected since the last look (9 since the bot started)"
    assert alerts["trip"]["severity"] == "critical"
    assert alerts["disconnected"]["message"] == "the bot lost its broker connection: websocket closed"

    # The same facts again: nothing new to say.
    assert "alerts" not in (await the_check.probe(probe_ctx)).details


async def test_a_flatten_that_outlasts_the_cycle_limit_is_alive_while_its_attempts_go_on(tmp_path, probe_ctx):
    status(tmp_path, cycled_ago=90, mode="flattening", flatten={"state": "running", "attempts": 3})
    result = await check(tmp_path, max_cycle_age_seconds=30).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason.startswith("flattening (attempt 3")
    status(tmp_path, cycled_ago=90, updated_ago=60, mode="flattening", flatten={"state": "running", "attempts": 3})
    assert (await check(tmp_path, max_cycle_age_seconds=30).probe(probe_ctx)).status is Status.UNHEALTHY
    # A flatten a trip asked for is the trip's: a failure, however alive the flatten is.
    trip = {**TRIP, "mode": "flattening"}
    status(tmp_path, cycled_ago=90, mode="flattening", causes=[trip], flatten={"state": "running", "attempts": 1})
    result = await check(tmp_path, max_cycle_age_seconds=30).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY and result.reason.startswith("trip failures_halt")


async def test_the_daily_loss_limit_and_a_refused_command_are_alerts_once(tmp_path, probe_ctx):
    the_check = check(tmp_path)
    status(tmp_path)
    await the_check.probe(probe_ctx)
    loss = {"source": "daily_loss", "name": "daily_loss", "mode": "halted", "reason": "pnl -510 <= -500"}
    refused = {"seq": 4, "command": "resume", "outcome": "refused", "reason": "expired at 2026-12-01T10:00:00Z"}
    status(
        tmp_path,
        mode="halted",
        cause=loss,
        causes=[loss],
        daily_loss={"pnl": -510.0, "limit": 500.0, "reached": True, "until": time.time() + 3600},
        control=refused,
    )
    result = await the_check.probe(probe_ctx)
    kinds = {a["kind"]: a for a in result.details["alerts"]}
    assert {"daily_loss", "trip", "refused", "mode"} <= set(kinds)
    assert kinds["refused"]["message"] == "the bot refused command seq 4: expired at 2026-12-01T10:00:00Z"
    assert result.status is Status.UNHEALTHY and result.reason.startswith("trip daily_loss: pnl -510 <= -500")
    assert "alerts" not in (await the_check.probe(probe_ctx)).details


async def test_a_bot_still_reconciling_is_not_known_yet_and_failing_once_it_takes_too_long(tmp_path, probe_ctx):
    status(tmp_path, started_ago=3, mode="reconciling")
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNKNOWN, "a restarted bot is not recovered before it knows its positions"
    assert result.reason.startswith("reconciling with its broker (3.0 s since it started)")
    status(tmp_path, started_ago=200, mode="reconciling")
    result = await check(tmp_path, max_reconciling_seconds=120).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("still reconciling with its broker 200 s after it started, limit 120 s")


async def test_a_bot_held_in_reconciling_by_an_incomplete_report_says_why(tmp_path, probe_ctx):
    why = "not reconciled: the broker's report is incomplete (fills: timed out); staying in RECONCILING"
    status(tmp_path, started_ago=3, mode="reconciling", reconcile={"complete": False, "summary": why})
    result = await check(tmp_path).probe(probe_ctx)
    assert result.status is Status.UNKNOWN
    assert result.reason.endswith(f"its positions; {why}")


async def test_a_halted_bot_that_has_not_reconciled_yet_is_not_known_yet_either(tmp_path, probe_ctx):
    halt = {"source": "operator", "name": "halt", "mode": "halted", "reason": "Horus healed desk"}
    start = {"source": "start", "name": "reconciling", "mode": "reconciling", "reason": "reconciling"}
    status(tmp_path, started_ago=2, mode="halted", cause=halt, causes=[start, halt])
    assert (await check(tmp_path).probe(probe_ctx)).status is Status.UNKNOWN
