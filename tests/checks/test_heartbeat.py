from __future__ import annotations

import os
import time

import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.heartbeat import HeartbeatCheck, HeartbeatOptions
from horus.testing import ShiftedClock
from horus_sdk.formats import FORMAT_CRASH, FORMAT_HEARTBEAT, boot_id, crash_record_path, write_json_atomic


def beat(path, *, age: float = 0.0, channels: dict[str, float] | None = None, beating_for: float = 100.0, **extra):
    """Write a heartbeat as the SDK does, ``age`` seconds old, with channels that progressed ``s`` ago."""
    now_mono, now_wall = time.monotonic(), time.time()
    data = {
        "format": FORMAT_HEARTBEAT,
        "pid": 4121,
        "sequence": 42,
        "boot_id": boot_id(),
        "wall_time": now_wall - age,
        "monotonic": now_mono - age,
        "started_monotonic": now_mono - beating_for,
        "interval": 1.0,
        "channels": {
            name: {"count": 3, "wall_time": now_wall - ago, "monotonic": now_mono - ago}
            for name, ago in (channels or {}).items()
        },
        **extra,
    }
    write_json_atomic(path, data)


def check(path, **options) -> HeartbeatCheck:
    return HeartbeatCheck(HeartbeatOptions.model_validate({"type": "heartbeat", "path": str(path), **options}))


async def test_a_fresh_heartbeat_is_healthy_and_asks_to_be_rechecked_at_its_deadline(tmp_path, probe_ctx):
    beat(tmp_path / "hb.json", age=1.0)
    result = await check(tmp_path / "hb.json", max_age_seconds=10).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason.startswith("heartbeat 1.0 s old (pid 4121")
    assert 8.5 < result.recheck_in <= 9.1


async def test_an_old_heartbeat_is_unhealthy_with_its_age(tmp_path, probe_ctx):
    beat(tmp_path / "hb.json", age=95)
    result = await check(tmp_path / "hb.json", max_age_seconds=60).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "heartbeat 95 s old, limit 60 s"


async def test_a_channel_that_stopped_progressing_is_unhealthy_while_the_heartbeat_is_fresh(tmp_path, probe_ctx):
    beat(tmp_path / "hb.json", age=0.5, channels={"ticks": 95, "orders": 2})
    result = await check(tmp_path / "hb.json", max_age_seconds=10, channels={"ticks": 60, "orders": 300}).probe(
        probe_ctx
    )
    assert result.status is Status.UNHEALTHY
    assert result.reason == "channel ticks: last progress 95 s ago, limit 60 s"


async def test_a_channel_not_yet_progressed_is_judged_from_when_the_heartbeat_began(tmp_path, probe_ctx):
    beat(tmp_path / "hb.json", beating_for=5)
    young = await check(tmp_path / "hb.json", max_age_seconds=10, channels={"orders": 60}).probe(probe_ctx)
    assert young.status is Status.HEALTHY
    beat(tmp_path / "hb.json", beating_for=120)
    old = await check(tmp_path / "hb.json", max_age_seconds=10, channels={"orders": 60}).probe(probe_ctx)
    assert old.status is Status.UNHEALTHY
    assert old.reason == "channel orders: no progress recorded"


async def test_a_missing_heartbeat_file_is_unhealthy(tmp_path, probe_ctx):
    result = await check(tmp_path / "nope.json", max_age_seconds=10).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason.startswith("no heartbeat file at")


async def test_a_file_that_is_not_a_heartbeat_is_unhealthy_and_says_why(tmp_path, probe_ctx):
    (tmp_path / "hb.json").write_text('{"format": "something-else"}')
    result = await check(tmp_path / "hb.json", max_age_seconds=10).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert "not a horus-heartbeat/1 file" in result.reason


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
async def test_on_the_same_boot_a_wall_clock_jump_does_not_change_a_heartbeats_age(tmp_path, probe_ctx, jump):
    beat(tmp_path / "hb.json", age=1.0)
    clock = ShiftedClock()
    clock.jump(jump)
    result = await check(tmp_path / "hb.json", max_age_seconds=10).probe(ProbeContext(clock=clock, http=probe_ctx.http))
    assert result.status is Status.HEALTHY


def test_the_crash_record_the_service_left_is_offered_as_evidence_for_a_heal(tmp_path):
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    record = {
        "format": FORMAT_CRASH,
        "pid": 4121,
        "wall_time": time.time(),
        "reason": "channel 'orders' made no progress for 120 s",
        "stuck": {"file": "/srv/bot/bot.py", "line": 42, "function": "place_maker_order", "code": "await ..."},
        "operations": [{"name": "place_maker_order", "age_seconds": 121.4}],
    }
    write_json_atomic(crash_record_path(crash_dir, 4121), record)
    hb = check(tmp_path / "hb.json", max_age_seconds=10, crash_dir=str(crash_dir))
    evidence = hb.evidence(since_wall=time.time() - 60)
    assert evidence["crash_summary"] == (
        "channel 'orders' made no progress for 120 s; stuck in place_maker_order at bot.py:42; "
        "in flight: place_maker_order (121 s)"
    )
    old = time.time() - 3600
    os.utime(crash_record_path(crash_dir, 4121), (old, old))
    assert hb.evidence(since_wall=time.time() - 60) == {}, "an old crash record explains nothing new"
