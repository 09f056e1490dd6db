"""Nothing is lost at the edges (issue 12, item 4): a Horus killed with -9 right after a heal tells of the
heal at its next start (from the heal log), once; an event that could not be written while the state disk
was full is written, and delivered, once the disk has room again."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, monitor: dict) -> tuple[Path, Path]:
    """A config with ``monitor`` and a command channel that appends each message's events to received.jsonl."""
    received = tmp_path / "received.jsonl"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [{"interval_seconds": 0.2, "startup_grace_seconds": 0, **monitor}],
                "notify": [{"name": "rec", "command": ["sh", "-c", f"cat >> {received}; echo >> {received}"]}],
                "notify_settings": {"group_seconds": 0.2, "send_timeout_seconds": 5},
            }
        )
    )
    return config, received


def received_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.extend(json.loads(line))
        except json.JSONDecodeError:
            continue  # a message still being written
    return events


def of_kind(path: Path, kind: str) -> list[dict]:
    return [event for event in received_events(path) if event["kind"] == kind]


def test_a_heal_followed_at_once_by_kill_9_is_announced_at_the_next_start_once(tmp_path):
    heals = tmp_path / "heals.log"
    config, received = write_config(
        tmp_path,
        {
            "name": "bot",
            "min_failures_to_heal": 1,
            "heal_cooldown_seconds": 300,
            "check": {"type": "file_exists", "path": str(tmp_path / "never-there")},
            "heal": {"action": "run_script", "command": ["sh", "-c", f"echo healed >> {heals}"]},
        },
    )
    state = tmp_path / "state"
    first = subprocess.Popen(
        [*HORUS_RUN, "-c", str(config), "--state-dir", str(state), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if b'"heal.finished"' in line:
                first.send_signal(signal.SIGKILL)  # within a millisecond of heal.finished
                break
        else:
            raise AssertionError("the first Horus never healed")
    finally:
        first.kill()
        first.wait(timeout=10)
        assert first.stdout is not None
        first.stdout.close()
    assert heals.read_text().count("healed") == 1
    log = EventLog(tmp_path / "second.jsonl")
    second = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: of_kind(received, "healed"), timeout=20)
    finally:
        assert stop_daemon(second) == 0
    [healed] = of_kind(received, "healed")
    assert healed["monitor"] == "bot" and healed["details"]["heal_id"] == 1
    assert "bot healed (run_script)" in healed["title"]
    assert heals.read_text().count("healed") == 1, "the cooldown holds across the kill"
    # Told once: a third start finds the event in the outbox and re-derives nothing.
    started = len(of_kind(received, "started"))
    log = EventLog(tmp_path / "third.jsonl")
    third = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: len(of_kind(received, "started")) > started, timeout=20)
    finally:
        assert stop_daemon(third) == 0
    assert len(of_kind(received, "healed")) == 1
    assert not log.named("notify.rederived")


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; the filler file is returned."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        for piece in (chunk, b"\0"):  # big pieces, then the last bytes one at a time
            with pytest.raises(OSError, match="No space left") as full:
                _write_forever(handle, piece)
            assert full.value.errno == errno.ENOSPC, full.value
    return filler


def _write_forever(handle: BinaryIO, piece: bytes) -> None:
    while True:
        handle.write(piece)


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs of its own, mounted for the test (root only)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that can be filled) needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_an_event_of_a_problem_that_began_while_the_disk_was_full_is_delivered_once_it_has_room(tmp_path, small_disk):
    feed = tmp_path / "feed"
    feed.touch()
    config, received = write_config(
        tmp_path,
        {"name": "feed", "min_failures_to_heal": 2, "check": {"type": "file_exists", "path": str(feed)}},
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, small_disk / "state", log.path)
    try:
        wait_until_sync(lambda: of_kind(received, "started"), timeout=20)
        filler = fill(small_disk)
        feed.unlink()  # the problem begins while nothing can be written
        # (notify.enqueue_failed is what a Horus that dropped the event said.)
        wait_until_sync(lambda: log.named("notify.write_deferred") or log.named("notify.enqueue_failed"), timeout=20)
        assert not of_kind(received, "failing")
        filler.unlink()
        wait_until_sync(lambda: of_kind(received, "failing"), timeout=20)
        [deferred] = log.named("notify.write_deferred")
        assert deferred["kind"] == "failing" and deferred["monitor"] == "feed"
        assert log.named("notify.written_late")
        assert daemon.poll() is None
    finally:
        assert stop_daemon(daemon) == 0
    assert not log.named("notify.enqueue_failed") and not log.named("notify.dropped")
