"""A watched path that Horus cannot look at gives the user a located reason, never a Python traceback.

Run through the real command line and the real daemon, the way an operator meets them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

NOBODY = 65534
LONG_PATH = "/".join(["c" * 250] * 20)  # each name is allowed, the whole path is not


def horus(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory everyone may read, so that the same files can be checked as an unprivileged user."""
    directory = Path(tempfile.mkdtemp(prefix="horus-paths-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        if (directory / "locked").is_dir():
            (directory / "locked").chmod(0o755)
        shutil.rmtree(directory, ignore_errors=True)


def hostile_config(directory: Path) -> Path:
    (directory / "file.txt").write_text("not a directory")
    (directory / "loop-a").symlink_to(directory / "loop-b")
    (directory / "loop-b").symlink_to(directory / "loop-a")
    (directory / "long-link").symlink_to(directory / ("x" * 300))
    locked = directory / "locked"
    locked.mkdir()
    (locked / "bot.log").write_text("hello\n")
    locked.chmod(0)
    monitors = [
        {"name": "notdir", "check": {"type": "log_staleness", "log_file": f"{directory}/file.txt/bot.log"}},
        {"name": "toolong", "check": {"type": "log_staleness", "log_file": f"{directory}/{LONG_PATH}/bot.log"}},
        {"name": "longlink", "check": {"type": "log_staleness", "log_file": f"{directory}/long-link"}},
        {"name": "loop", "check": {"type": "log_staleness", "log_file": f"{directory}/loop-a/bot.log"}},
        {"name": "locked", "check": {"type": "log_staleness", "log_file": f"{locked}/bot.log"}},
        {"name": "report", "check": {"type": "file_exists", "path": f"{directory}/file.txt/report.csv"}},
    ]
    for monitor in monitors:
        if monitor["check"]["type"] == "log_staleness":
            monitor["check"]["max_age_seconds"] = 60
    config = directory / "horus.json"
    defaults = {"start_jitter_seconds": 0, "interval_seconds": 1}
    config.write_text(json.dumps({"defaults": defaults, "monitors": monitors}))
    config.chmod(0o644)
    return config


def rows_of(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {row["monitor"]: row for row in json.loads(proc.stdout)}


def test_horus_check_gives_a_reason_for_every_path_it_cannot_look_at_and_no_traceback(world):
    config = hostile_config(world)
    table = horus("check", "-c", str(config))
    assert table.returncode == 1
    assert "Traceback" not in table.stderr + table.stdout
    assert "check.crashed" not in table.stderr
    rows = rows_of(horus("check", "-c", str(config), "--json"))
    assert rows["notdir"]["status"] == "error"
    assert rows["notdir"]["reason"] == (
        f"cannot observe {world}/file.txt/bot.log: a path component is not a directory (ENOTDIR)"
    )
    assert rows["toolong"]["reason"].endswith("bytes, the system allows 4096 (ENAMETOOLONG)")
    assert rows["longlink"]["reason"] == (
        f"cannot observe {world}/long-link: a name is too long in the path or in a symbolic link it follows"
        " (ENAMETOOLONG)"
    )
    assert rows["loop"]["reason"].endswith("(ELOOP)")
    assert rows["report"]["reason"].endswith("a path component is not a directory (ENOTDIR)")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become nobody")
def test_horus_check_as_an_unprivileged_user_says_permission_denied_and_who_it_runs_as(world):
    config = hostile_config(world)
    as_nobody = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    proc = horus("check", "-c", str(config), "--json", prefix=as_nobody)
    assert "Traceback" not in proc.stderr
    locked = rows_of(proc)["locked"]
    assert locked["status"] == "error"
    assert locked["reason"].startswith(f"cannot observe {world}/locked/bot.log: permission denied (Horus runs as uid")
    assert locked["reason"].endswith("(EACCES)")


def test_the_daemon_logs_a_probe_error_for_each_check_without_a_traceback(world, tmp_path):
    config = hostile_config(world)
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: {e.get("monitor") for e in events.named("check.error")} >= {"notdir", "toolong"})
    finally:
        assert stop_daemon(daemon) == 0
    assert not events.named("check.crashed")
    # No traceback through a check's code, whatever else the daemon may log.
    assert not [e for e in events.events() if "horus/checks/" in e.get("exception", "")]
    [first, *_] = [e for e in events.named("check.error") if e["monitor"] == "notdir"]
    assert first["reason"].endswith("a path component is not a directory (ENOTDIR)")
