from __future__ import annotations

import asyncio
import os
import shutil
import time

import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.log_staleness import LogStalenessCheck, LogStalenessOptions
from horus.engine.runner import run_check
from horus.testing import ShiftedClock


def make_check(path, max_age: float = 300) -> LogStalenessCheck:
    options = LogStalenessOptions.model_validate(
        {"type": "log_staleness", "log_file": str(path), "max_age_seconds": max_age}
    )
    return LogStalenessCheck(options)


async def test_a_recently_written_log_is_healthy_and_asks_to_be_rechecked_at_its_deadline(tmp_path, probe_ctx):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    result = await make_check(log, max_age=300).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason.startswith("bot.log last written")
    assert result.reason.endswith("limit 300 s")
    assert result.recheck_in is not None
    assert 299 < result.recheck_in <= 300.1


async def test_a_log_older_than_its_limit_is_unhealthy_with_its_age_in_the_reason(tmp_path, probe_ctx):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    old = time.time() - 312
    os.utime(log, (old, old))
    result = await make_check(log, max_age=300).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "bot.log last written 312 s ago, limit 300 s"


async def test_a_missing_log_is_unhealthy_and_says_so(tmp_path, probe_ctx):
    result = await make_check(tmp_path / "nope.log").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert "does not exist" in result.reason


async def test_a_log_going_stale_is_noticed_just_after_its_deadline(tmp_path, probe_ctx):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    check = make_check(log, max_age=0.5)
    first = await check.probe(probe_ctx)
    assert first.status is Status.HEALTHY
    await asyncio.sleep(first.recheck_in)
    second = await check.probe(probe_ctx)
    assert second.status is Status.UNHEALTHY


async def test_rotation_by_rename_follows_the_writers_old_file_until_the_new_one_is_written(tmp_path, probe_ctx):
    log = tmp_path / "bot.log"
    writer = open(log, "a")  # noqa: SIM115 - the service keeps its file descriptor open across the rename
    writer.write("line\n")
    writer.flush()
    check = make_check(log, max_age=5)
    assert (await check.probe(probe_ctx)).is_healthy

    os.rename(log, tmp_path / "bot.log.1")
    writer.write("still going\n")
    writer.flush()
    result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert "rotated to bot.log.1" in result.reason

    # Later the service reopens its log by name: the new file is followed from then on.
    writer.close()
    log.write_text("fresh file\n")
    result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert "rotated" not in result.reason


async def test_rotation_by_copytruncate_is_not_a_false_alarm(tmp_path, probe_ctx):
    log = tmp_path / "bot.log"
    log.write_text("x" * 1000)
    old = time.time() - 4
    os.utime(log, (old, old))
    check = make_check(log, max_age=5)
    assert (await check.probe(probe_ctx)).is_healthy
    shutil.copy(log, tmp_path / "bot.log.1")
    with open(log, "r+") as f:
        f.truncate(0)
    result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
async def test_a_wall_clock_jump_neither_makes_a_fresh_log_stale_nor_a_stale_log_fresh(tmp_path, probe_ctx, jump):
    log = tmp_path / "bot.log"
    log.write_text("scan\n")
    clock = ShiftedClock()
    ctx = ProbeContext(clock=clock, http=probe_ctx.http)
    check = make_check(log, max_age=0.4)
    assert (await check.probe(ctx)).is_healthy

    clock.jump(jump)
    assert (await check.probe(ctx)).is_healthy, "a jump right after a look must not make the log stale"
    await asyncio.sleep(0.5)
    assert (await check.probe(ctx)).status is Status.UNHEALTHY, "the log really is stale now"


async def test_a_directory_where_the_log_should_be_is_a_probe_error_not_a_fresh_log(tmp_path, probe_ctx):
    # A directory's mtime moves whenever a file in it is created: it would pass for a log being written.
    (tmp_path / "bot.log").mkdir()
    run = await run_check(make_check(tmp_path / "bot.log"), probe_ctx, timeout=5)
    assert run.result.status is Status.ERROR
    assert run.result.reason == f"cannot observe {tmp_path / 'bot.log'}: a directory, not a log file"


async def test_a_fifo_where_the_log_should_be_is_a_probe_error(tmp_path, probe_ctx):
    os.mkfifo(tmp_path / "bot.log")
    run = await run_check(make_check(tmp_path / "bot.log"), probe_ctx, timeout=5)
    assert run.result.reason == f"cannot observe {tmp_path / 'bot.log'}: a named pipe, not a log file"


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/bot/main.py", line 3, in <module>\n'
    "    connect()\n"
    "ConnectionRefusedError: [Errno 111] Connection refused\n"
)


async def test_a_traceback_written_since_the_last_look_is_reported_as_crash_output(tmp_path, probe_ctx):
    log = tmp_path / "bot.log"
    log.write_text(TRACEBACK)  # already there at the first look: not news
    check = make_check(log)
    first = await check.probe(probe_ctx)
    assert "crash_output" not in first.details
    with log.open("a") as f:
        f.write("bot starting\n" + TRACEBACK)
    crashed = await check.probe(probe_ctx)
    assert crashed.status is Status.HEALTHY, "fresh is fresh; what the crash means is the lifecycle's to judge"
    assert crashed.details["crash_output"] == 1
    with log.open("a") as f:
        f.write("scan ok\n")
    assert "crash_output" not in (await check.probe(probe_ctx)).details
