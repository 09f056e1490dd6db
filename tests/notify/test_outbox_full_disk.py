"""The outbox on a disk that is full (a small tmpfs mounted for the test): events are kept, in order, and
written when the disk takes them."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from horus.notify.events import Event, EventKind, Severity
from horus.notify.outbox import UNWRITTEN_RETRY_SECONDS, Outbox, on_late_write
from tests.support import wait_until_sync


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that can be filled) needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
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


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):  # big pieces, then the last bytes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def event(kind: EventKind, at: float) -> Event:
    return Event(kind, Severity.WARNING, f"feed {kind}", "", "feed", created_at=at)


def test_events_kept_while_the_disk_is_full_are_written_in_order_when_it_frees(small_disk):
    outbox = Outbox.open(small_disk)
    woken: list[float] = []
    forget = on_late_write(outbox.path, lambda: woken.append(time.monotonic()))
    try:
        filler = fill(small_disk)
        now = time.time()
        failing, recovered = event(EventKind.FAILING, now), event(EventKind.RECOVERED, now + 1)
        assert outbox.enqueue(failing, ["rec"], not_before=now) == []
        # Sent only where the problem was announced: it must not overtake the event it follows.
        assert outbox.enqueue(recovered, ["rec"], not_before=now, only_where_announced=True) == []
        assert outbox.unwritten == 2
        filler.unlink()
        # The delivery worker is woken when kept events are written, so they leave at once.
        wait_until_sync(lambda: bool(woken), timeout=UNWRITTEN_RETRY_SECONDS * 5)
        assert outbox.unwritten == 0
        due = [e.kind for e, _ in outbox.due("rec", now + 10)]
        assert due == [EventKind.FAILING, EventKind.RECOVERED]
    finally:
        forget()
        outbox.close()


def test_a_new_event_once_the_disk_has_room_goes_after_the_kept_ones(small_disk):
    outbox = Outbox.open(small_disk)
    try:
        filler = fill(small_disk)
        now = time.time()
        first, second = event(EventKind.FAILING, now), event(EventKind.REMINDER, now + 1)
        outbox.enqueue(first, ["rec"], not_before=now)
        filler.unlink()
        assert outbox.enqueue(second, ["rec"], not_before=now) == ["rec"]
        assert outbox.unwritten == 0
        assert [e.id for e, _ in outbox.due("rec", now + 10)] == [first.id, second.id]
    finally:
        outbox.close()
