"""`horus status` stays truthful while the daemon writes only what changed: a small header every few seconds,
the monitors' rows when something a person reads changes, never half a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from horus.engine.status import CHANGES_NAME, ROWS_NAME, STATUS_NAME, StatusWriter, read_status
from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = [sys.executable, "-m", "horus"]


def row(name: str, status: str = "healthy", reason: str = "ok", **extra: object) -> dict:
    return {
        "name": name,
        "check": "file_exists",
        "heal": None,
        "status": status,
        "reason": reason,
        "last_check_at": time.time(),
        "consecutive_failures": 0,
        "min_failures_to_heal": 2,
        "failing_since": None,
        "last_heal_at": None,
        "cooldown_remaining_seconds": 0.0,
        "heals_in_streak": 0,
        "quarantined_until": None,
        "announced_problem_since": None,
        "due_within_seconds": 3.0,
        **extra,
    }


def header(running: bool = True, **extra: object) -> dict:
    now = time.time()
    return {
        "pid": os.getpid(),
        "running": running,
        "written_at": now,
        "started_at": now - 60,
        "every_seconds": 5.0,
        "disabled": [],
        "overdue": {},
        **extra,
    }


def generation(state: Path) -> int:
    """Which rows file this is: each rewrite numbers it anew (an inode number may be reused)."""
    return json.loads((state / ROWS_NAME).read_text())["generation"]


def header_written_at(state: Path) -> float:
    return json.loads((state / STATUS_NAME).read_text())["written_at"]


def status_cli(config: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HORUS, "status", "-c", str(config), "--state-dir", str(state), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, monitors: list[dict]) -> None:
    path.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": monitors}))


def file_monitor(name: str, path: Path, interval: float = 0.2) -> dict:
    return {"name": name, "interval_seconds": interval, "check": {"type": "file_exists", "path": str(path)}}


# -- the files, written and read in this process ---------------------------------------------------------


def given(rows: list[dict]) -> Callable[[], list[dict]]:
    """Rows as the writer takes them: a call that gives them (again, when it rewrites the rows file)."""
    return lambda: rows


def fleet(count: int = 20, **changes: dict) -> list[dict]:
    return [row(f"m{i}", **changes.get(f"m{i}", {})) for i in range(count)]


def test_healthy_looks_write_no_rows(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.write(header(), fleet)
    rows_file = generation(tmp_path)
    # Later healthy looks: a new check time, a new latency in the reason. Nothing a person needs rewritten.
    for latency in range(5):
        writer.write(header(), given([row(f"m{i}", reason=f"HTTP 200 in {latency} ms") for i in range(20)]))
    assert generation(tmp_path) == rows_file
    assert not (tmp_path / CHANGES_NAME).exists()
    assert "monitors" not in json.loads((tmp_path / STATUS_NAME).read_text()), "the header stays small"


def test_a_changed_row_is_written_alone_and_read_back_in_place(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.write(header(), fleet)
    rows_file = generation(tmp_path)
    failing = {"status": "unhealthy", "reason": "m3 is missing", "consecutive_failures": 1}
    writer.write(header(), lambda: fleet(m3=failing))
    assert generation(tmp_path) == rows_file, "one changed row does not rewrite every row"
    assert [m["name"] for m in json.loads((tmp_path / CHANGES_NAME).read_text())["monitors"]] == ["m3"]
    changes_file = (tmp_path / CHANGES_NAME).stat().st_mtime_ns
    writer.write(header(), lambda: fleet(m3=failing))  # the same again: nothing to write
    assert (tmp_path / CHANGES_NAME).stat().st_mtime_ns == changes_file
    snapshot = read_status(tmp_path)
    assert snapshot is not None
    assert [(m["name"], m["status"]) for m in snapshot["monitors"]][2:5] == [
        ("m2", "healthy"),
        ("m3", "unhealthy"),
        ("m4", "healthy"),
    ]
    assert snapshot["monitors"][3]["reason"] == "m3 is missing"
    assert "overdue" not in snapshot


def test_changes_that_cost_as_much_as_the_rows_file_are_folded_into_it(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.write(header(), fleet)
    rows_file = generation(tmp_path)
    for failures in range(1, 60):
        failing = {"status": "unhealthy", "reason": "x", "consecutive_failures": failures}
        writer.write(header(), given(fleet(m3=failing)))
    assert generation(tmp_path) > rows_file
    snapshot = read_status(tmp_path)
    assert snapshot is not None
    assert snapshot["monitors"][3]["consecutive_failures"] == 59


def test_changes_left_by_an_earlier_daemon_are_not_applied_to_a_new_ones_rows(tmp_path):
    earlier = StatusWriter(tmp_path)
    earlier.write(header(), fleet)
    earlier.write(header(), lambda: fleet(m3={"status": "unhealthy", "reason": "long ago"}))
    StatusWriter(tmp_path).write(header(), fleet)  # the next daemon starts
    assert read_status(tmp_path)["monitors"][3]["status"] == "healthy"
    assert not (tmp_path / CHANGES_NAME).exists()


def test_many_rows_changed_at_once_rewrite_the_rows_file(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.write(header(), fleet)
    rows_file = generation(tmp_path)
    writer.write(header(), lambda: [row(f"m{i}", "unhealthy", "down") for i in range(20)])
    assert generation(tmp_path) > rows_file
    assert all(m["status"] == "unhealthy" for m in read_status(tmp_path)["monitors"])


def test_a_monitor_added_or_removed_rewrites_the_rows(tmp_path):
    writer = StatusWriter(tmp_path)
    writer.write(header(), lambda: [row("a"), row("b")])
    writer.write(header(), lambda: [row("a"), row("c")])
    snapshot = read_status(tmp_path)
    assert snapshot is not None
    assert [m["name"] for m in snapshot["monitors"]] == ["a", "c"]


def test_a_running_daemon_vouches_for_checks_newer_than_a_row_except_the_overdue(tmp_path):
    now = time.time()
    old = now - 120
    writer = StatusWriter(tmp_path)
    writer.write(
        header(written_at=now - 1, overdue={"late": old - 30}),
        lambda: [
            row("fine", last_check_at=old),
            row("late", last_check_at=old - 30),
            row("fresh", last_check_at=now - 1),
        ],
    )
    monitors = {m["name"]: m for m in read_status(tmp_path, now)["monitors"]}
    assert monitors["fine"]["checked_within_seconds"] == pytest.approx(4.0, abs=0.11)
    assert monitors["late"]["checked_within_seconds"] is None
    assert monitors["late"]["last_check_at"] == pytest.approx(old - 30)
    # Its own last check is more recent than the bound: shown as it is.
    assert monitors["fresh"]["checked_within_seconds"] is None
    # Once the daemon has stopped it vouches for nothing.
    writer.write(header(running=False, written_at=now - 1), lambda: [row("fine", last_check_at=old)], full=True)
    [fine] = read_status(tmp_path, now)["monitors"]
    assert fine["checked_within_seconds"] is None and fine["last_check_at"] == pytest.approx(old)


def test_a_cooldown_counts_down_in_the_reader_without_a_rewrite(tmp_path):
    writer = StatusWriter(tmp_path)
    now = time.time()
    writer.write(header(written_at=now), lambda: [row("a", cooldown_remaining_seconds=60.0)])
    [a] = read_status(tmp_path, now + 15)["monitors"]
    assert a["cooldown_remaining_seconds"] == pytest.approx(45.0, abs=0.11)


def test_a_reader_never_sees_half_a_file(tmp_path):
    writer = StatusWriter(tmp_path)
    rows = [row(f"m{i}") for i in range(300)]
    writer.write(header(), lambda: rows)
    errors: list[BaseException] = []
    done = threading.Event()

    def read_forever() -> None:
        while not done.is_set():
            try:
                snapshot = read_status(tmp_path)
                assert snapshot is not None and len(snapshot["monitors"]) == 300
            except BaseException as exc:
                errors.append(exc)
                return

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for failures in range(200):
            rows[failures % 300] = row(f"m{failures % 300}", "unhealthy", f"x{failures}")
            writer.write(header(), lambda: rows, full=failures % 7 == 0)
    finally:
        done.set()
        reader.join()
    assert errors == []


# -- `horus status` against files, and against a real daemon ------------------------------------------------


def test_status_says_not_watched_for_a_probe_error_and_not_known_yet_without_failing(tmp_path):
    config = tmp_path / "horus.json"
    write_config(config, [file_monitor("x", tmp_path)])
    state = tmp_path / "state"
    state.mkdir()
    StatusWriter(state).write(
        header(), lambda: [row("fine"), row("judging", "unknown", "watched 0 s of a 60 s window")]
    )
    shown = status_cli(config, state)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    [judging] = [line for line in shown.stdout.splitlines() if line.startswith("judging ")]
    assert "not known yet" in judging and "watched 0 s" in judging

    StatusWriter(state).write(header(), lambda: [row("fine"), row("blind", "error", "probe timed out after 0.3 s")])
    shown = status_cli(config, state)
    assert shown.returncode == 1, "a monitor that watches nothing is a problem"
    [blind] = [line for line in shown.stdout.splitlines() if line.startswith("blind ")]
    assert "not watched" in blind and "probe timed out" in blind and " error " not in f" {blind} "


def test_a_broken_status_file_is_a_located_error_not_a_traceback(tmp_path):
    config = tmp_path / "horus.json"
    write_config(config, [file_monitor("x", tmp_path)])
    state = tmp_path / "state"
    state.mkdir()
    (state / STATUS_NAME).write_text('{"pid": 1, "runn')
    shown = status_cli(config, state)
    assert shown.returncode == 1
    assert str(state / STATUS_NAME) in shown.stderr and "Traceback" not in shown.stderr
    (state / STATUS_NAME).write_text('{"pid": 1, "running": true, "written_at": "soon"}')
    (state / ROWS_NAME).write_text('{"generation": 1, "monitors": [{"name": "x", "due_within_seconds": 3}]}')
    shown = status_cli(config, state)
    assert shown.returncode == 1
    assert "not as Horus writes them" in shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.slow
def test_status_says_running_from_the_daemons_first_checks(tmp_path):
    present = tmp_path / "present"
    present.touch()
    config = tmp_path / "horus.json"
    write_config(config, [file_monitor("fine", present)])
    state = tmp_path / "state"
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path, "--log-level", "debug")
    try:
        wait_until_sync(lambda: log.named("check.ok"), timeout=20)
        # The first status is written beside the first checks, not before them: allow it a moment, far less
        # than the 5 s between two writes.
        deadline = time.monotonic() + 2.0
        while True:
            shown = status_cli(config, state)
            if shown.stdout.startswith(f"Horus: running (pid {daemon.pid}") or time.monotonic() > deadline:
                break
        assert shown.stdout.startswith(f"Horus: running (pid {daemon.pid}"), shown.stdout
    finally:
        assert stop_daemon(daemon, timeout=15) == 0


@pytest.mark.slow
def test_a_running_daemon_leaves_healthy_rows_alone_and_shows_a_probe_error_as_not_watched(tmp_path):
    present = tmp_path / "present"
    present.touch()
    config = tmp_path / "horus.json"
    # Its probe cannot even start: every look is a probe error, and nothing is observed.
    blind = {
        "name": "blind",
        "interval_seconds": 0.2,
        "check": {"type": "command", "command": [str(tmp_path / "no-such-probe")]},
    }
    write_config(config, [file_monitor(f"fine-{i}", present) for i in range(20)] + [blind])
    state = tmp_path / "state"
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path)

    def statuses() -> dict[str, str]:
        shown = status_cli(config, state, "--json")
        return {m["name"]: m["status"] for m in json.loads(shown.stdout).get("monitors", [])}

    try:
        wait_until_sync(lambda: (state / ROWS_NAME).exists(), timeout=20)
        expected = {**{f"fine-{i}": "healthy" for i in range(20)}, "blind": "error"}
        wait_until_sync(lambda: statuses() == expected, timeout=30, interval=0.5)

        def next_header() -> None:
            written = header_written_at(state)
            wait_until_sync(lambda: header_written_at(state) != written, timeout=20, interval=0.1)

        next_header()  # the first looks' changes settle
        rows_file = generation(state)
        # Two more headers: the daemon is alive, its healthy monitors are looked at five times a second.
        next_header()
        next_header()
        assert generation(state) == rows_file, "healthy looks rewrote every row"

        shown = status_cli(config, state)
        assert shown.returncode == 1, "a probe that keeps erroring is a problem"
        lines = shown.stdout.splitlines()
        assert lines[0].startswith(f"Horus: running (pid {daemon.pid}")
        [fine] = [line for line in lines if line.startswith("fine-0 ")]
        assert "healthy" in fine and "within " in fine
        [blind] = [line for line in lines if line.startswith("blind ")]
        assert "not watched" in blind and "no-such-probe" in blind
    finally:
        assert stop_daemon(daemon, timeout=15) == 0
    # Once stopped, one whole snapshot with every row's own last check.
    stopped = json.loads(status_cli(config, state, "--json").stdout)
    assert stopped["running"] is False
    assert all(m["checked_within_seconds"] is None and m["last_check_at"] for m in stopped["monitors"])
