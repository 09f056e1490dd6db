from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pydantic
import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.file_exists import FileExistsCheck, FileExistsOptions
from horus.engine.runner import run_check
from horus.testing import ShiftedClock


def make_check(path, **options) -> FileExistsCheck:
    return FileExistsCheck(FileExistsOptions.model_validate({"type": "file_exists", "path": str(path), **options}))


def age_file(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


async def test_an_existing_file_is_healthy_and_its_size_is_in_the_reason(tmp_path, probe_ctx):
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    result = await make_check(report).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "report.csv exists, 8 bytes"
    assert result.recheck_in is None
    assert result.details == {"path": str(report), "size_bytes": 8}


async def test_a_missing_file_is_unhealthy_and_names_its_full_path(tmp_path, probe_ctx):
    missing = tmp_path / "report.csv"
    result = await make_check(missing).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"report.csv does not exist ({missing})"


async def test_a_path_through_a_regular_file_is_a_probe_error_not_a_missing_file(tmp_path, probe_ctx):
    # The path as written can never exist: the config is wrong, and healing the service would not help.
    (tmp_path / "not-a-dir").write_text("x")
    run = await run_check(make_check(tmp_path / "not-a-dir" / "report.csv"), probe_ctx, timeout=5)
    assert run.result.status is Status.ERROR
    assert run.result.reason == (
        f"cannot observe {tmp_path / 'not-a-dir' / 'report.csv'}: a path component is not a directory (ENOTDIR)"
    )


async def test_a_directory_where_a_file_was_expected_is_unhealthy(tmp_path, probe_ctx):
    (tmp_path / "report.csv").mkdir()
    result = await make_check(tmp_path / "report.csv").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"report.csv is a directory, not a file ({tmp_path / 'report.csv'})"


async def test_a_file_smaller_than_min_size_is_unhealthy_with_both_sizes_in_the_reason(tmp_path, probe_ctx):
    report = tmp_path / "report.csv"
    report.write_bytes(b"x" * 12)
    result = await make_check(report, min_size=100).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "report.csv is 12 bytes, minimum 100"


async def test_a_file_of_exactly_min_size_is_healthy(tmp_path, probe_ctx):
    report = tmp_path / "report.csv"
    report.write_bytes(b"x" * 100)
    result = await make_check(report, min_size=100).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "report.csv exists, 100 bytes"


async def test_an_empty_file_fails_min_size_one(tmp_path, probe_ctx):
    report = tmp_path / "heartbeat"
    report.touch()
    result = await make_check(report, min_size=1).probe(probe_ctx)
    assert result.reason == "heartbeat is 0 bytes, minimum 1"


async def test_a_file_older_than_max_age_is_unhealthy_with_its_age_in_the_reason(tmp_path, probe_ctx):
    report = tmp_path / "report.csv"
    report.write_text("a,b\n")
    age_file(report, 312)
    result = await make_check(report, max_age_seconds=300).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "report.csv last written 312 s ago, limit 300 s"


async def test_a_small_and_stale_file_reports_both_problems(tmp_path, probe_ctx):
    report = tmp_path / "report.csv"
    report.write_bytes(b"x" * 12)
    age_file(report, 312)
    result = await make_check(report, min_size=100, max_age_seconds=300).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "report.csv is 12 bytes, minimum 100; last written 312 s ago, limit 300 s"


async def test_a_fresh_file_with_max_age_asks_to_be_rechecked_at_its_deadline(tmp_path, probe_ctx):
    report = tmp_path / "report.csv"
    report.write_text("a,b\n")
    age_file(report, 100)
    result = await make_check(report, max_age_seconds=300).probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "report.csv exists, 4 bytes, last written 100 s ago, limit 300 s"
    assert result.recheck_in is not None
    assert 199 < result.recheck_in <= 200.1


async def test_a_file_going_stale_is_noticed_just_after_its_deadline(tmp_path, probe_ctx):
    report = tmp_path / "heartbeat"
    report.write_text("beat")
    check = make_check(report, max_age_seconds=0.3)
    first = await check.probe(probe_ctx)
    assert first.status is Status.HEALTHY
    assert first.recheck_in is not None
    await asyncio.sleep(first.recheck_in)
    second = await check.probe(probe_ctx)
    assert second.status is Status.UNHEALTHY
    assert second.reason.startswith("heartbeat last written")


async def test_a_wall_clock_jump_forward_does_not_make_a_fresh_file_stale(tmp_path, probe_ctx):
    report = tmp_path / "heartbeat"
    report.write_text("beat")
    clock = ShiftedClock()
    ctx = ProbeContext(clock=clock, http=probe_ctx.http)
    check = make_check(report, max_age_seconds=60)
    assert (await check.probe(ctx)).is_healthy
    clock.jump(3600)
    assert (await check.probe(ctx)).is_healthy


async def test_a_file_that_cannot_be_looked_at_is_a_probe_error_not_unhealthy(tmp_path, probe_ctx):
    if os.geteuid() == 0:
        pytest.skip("root can look into any directory (tests/checks/test_unobservable_paths.py runs as nobody)")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "report.csv").write_text("x")
    locked.chmod(0)
    try:
        run = await run_check(make_check(locked / "report.csv"), probe_ctx, timeout=5)
        assert run.result.status is Status.ERROR
        assert run.result.reason.startswith(f"cannot observe {locked / 'report.csv'}: permission denied")
    finally:
        locked.chmod(0o755)


def test_a_leading_tilde_in_the_path_is_expanded():
    options = FileExistsOptions.model_validate({"type": "file_exists", "path": "~/report.csv"})
    assert options.path == Path.home() / "report.csv"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": -1}, "greater than or equal to 0"),
        ({"max_age_seconds": 0}, "greater than 0"),
        ({"max_age": 30}, "Extra inputs are not permitted"),
        ({"path": None}, "Input is not a valid path"),
    ],
)
def test_invalid_options_are_rejected_at_config_time(options, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        FileExistsOptions.model_validate({"type": "file_exists", "path": "/tmp/report.csv", **options})
