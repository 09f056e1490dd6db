"""The runner turns every way a probe can end into a value; a path Horus cannot look at is a located reason."""

from __future__ import annotations

import errno
import os
from typing import Literal

import pytest
import structlog

from horus.checks.base import Status
from horus.checks.file_exists import FileExistsCheck, FileExistsOptions
from horus.checks.log_staleness import LogStalenessCheck, LogStalenessOptions
from horus.clock import SystemClock
from horus.engine.runner import describe_os_error, run_check, run_heal, run_inline
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome

LONG_NAME = "b" * 250  # each name is allowed (255 at most); twenty of them are not (4096)
LONG_PATH = "/".join([LONG_NAME] * 20)


def log_check(path) -> LogStalenessCheck:
    return LogStalenessCheck(
        LogStalenessOptions.model_validate({"type": "log_staleness", "log_file": str(path), "max_age_seconds": 60})
    )


def file_check(path) -> FileExistsCheck:
    return FileExistsCheck(FileExistsOptions.model_validate({"type": "file_exists", "path": str(path)}))


def hostile_paths(tmp_path):
    """Paths that cannot be looked at, each with the reason Horus must give (root can read any directory)."""
    (tmp_path / "file.txt").write_text("not a directory")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    (tmp_path / "long-link").symlink_to(tmp_path / ("x" * 300))
    return {
        "ENOTDIR": (tmp_path / "file.txt" / "bot.log", "a path component is not a directory (ENOTDIR)"),
        "ENAMETOOLONG": (tmp_path / LONG_PATH / "bot.log", "the path is too long"),
        "link-too-long": (tmp_path / "long-link", "a name is too long in the path or in a symbolic link it follows"),
        "ELOOP": (tmp_path / "loop-a" / "bot.log", "a loop of symbolic links, or too many in a row (ELOOP)"),
    }


@pytest.mark.parametrize("make", [log_check, file_check], ids=["log_staleness", "file_exists"])
@pytest.mark.parametrize("case", ["ENOTDIR", "ENAMETOOLONG", "link-too-long", "ELOOP"])
async def test_a_path_that_cannot_be_observed_is_a_located_probe_error_without_a_traceback(
    tmp_path, probe_ctx, make, case
):
    path, reason = hostile_paths(tmp_path)[case]
    check = make(path)
    with structlog.testing.capture_logs() as logs:
        run = await run_check(check, probe_ctx, timeout=5)
        inline = run_inline(check, probe_ctx)
    for result in (run.result, inline.result):
        assert result.status is Status.ERROR
        assert result.reason.startswith("cannot observe ")
        assert reason in result.reason
        assert "Traceback" not in result.reason and "Errno" not in result.reason
    # The daemon logs the probe error (check.error); the runner adds no crash report for the world's state.
    assert not [e for e in logs if e["event"] == "check.crashed" or "exc_info" in e]


async def test_the_path_is_named_in_the_reason_and_a_too_long_name_is_shortened(tmp_path, probe_ctx):
    paths = hostile_paths(tmp_path)
    notdir, _ = paths["ENOTDIR"]
    run = await run_check(log_check(notdir), probe_ctx, timeout=5)
    assert run.result.reason == f"cannot observe {notdir}: a path component is not a directory (ENOTDIR)"
    long_path, _ = paths["ENAMETOOLONG"]
    run = await run_check(log_check(long_path), probe_ctx, timeout=5)
    assert LONG_NAME not in run.result.reason  # 250-character names would hide the rest of the reason
    assert f"{tmp_path}/bbbb" in run.result.reason
    size = len(os.fsencode(str(long_path)))
    assert run.result.reason.endswith(
        f"bot.log: the path is too long: {size} bytes, the system allows 4096 (ENAMETOOLONG)"
    )


async def test_a_missing_log_is_still_unhealthy_not_a_probe_error(tmp_path, probe_ctx):
    run = await run_check(log_check(tmp_path / "bot.log"), probe_ctx, timeout=5)
    assert run.result.status is Status.UNHEALTHY


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/srv/locked/bot.log"), "permission denied"),
        (OSError(errno.EIO, "Input/output error", "/mnt/nfs/bot.log"), "input/output error"),
        (OSError(errno.ESTALE, "Stale file handle", "/mnt/nfs/bot.log"), "stale file handle"),
        (OSError(errno.EMFILE, "Too many open files"), "too many open files"),
    ],
)
def test_every_os_error_is_described_in_words_with_its_errno_name(exc, text):
    described = describe_os_error(exc)
    assert text in described
    assert described.endswith(f"({errno.errorcode[exc.errno]})")
    if exc.filename:
        assert described.startswith(f"{exc.filename}: ")


def test_an_os_error_without_an_errno_is_still_described():
    assert describe_os_error(OSError("the socket went away")) == "the socket went away"


def test_permission_denied_names_the_user_horus_runs_as():
    described = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/srv/locked/bot.log"))
    assert f"uid {os.geteuid()}" in described


async def test_an_os_error_about_no_file_reads_as_a_sentence_too(probe_ctx):
    class OutOfDescriptors(LogStalenessCheck):
        def probe_inline(self, ctx):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    run = run_inline(OutOfDescriptors(log_check("/var/log/bot.log").options), probe_ctx)
    assert run.result.reason == "cannot observe: too many open files in Horus (EMFILE)"


async def test_a_heal_that_meets_an_os_error_fails_with_the_reason_in_words_and_no_traceback(tmp_path):
    (tmp_path / "file.txt").write_text("not a directory")
    target = tmp_path / "file.txt" / "restart.flag"

    class TouchFlagOptions(HealOptions):
        action: Literal["touch_flag"] = "touch_flag"

    class TouchFlag(Heal[TouchFlagOptions]):
        options_model = TouchFlagOptions

        async def run(self, ctx: HealContext) -> HealOutcome:
            target.touch()
            return HealOutcome(ok=True, summary="touched")

    with structlog.testing.capture_logs() as logs:
        outcome = await run_heal(
            TouchFlag(TouchFlagOptions()), HealContext(clock=SystemClock(), monitor="bot"), timeout=5
        )
    assert not outcome.ok
    assert outcome.summary == f"cannot heal: {target}: a path component is not a directory (ENOTDIR)"
    assert not [e for e in logs if e["event"] == "heal.crashed" or "exc_info" in e]
