"""The trading lease: at most one instance of a service may trade, and each holder has its own epoch.

The lease is an ``flock`` on one file: the kernel gives it to one open file at a time and takes it back
when the holder exits, however it exits (a kill -9 included), so a crashed holder never blocks the next.
With the lock comes an epoch, a number that only grows, kept next to the lock in ``lease.json`` (written
atomically, fsynced, under the lock): every holder gets a larger one than every holder before it. The
epoch goes into every client order id (:class:`~horus_sdk.journal.OrderJournal`), so that whatever a
stale instance sent can be told apart and canceled: a fencing token that every action carries, which a
lock alone cannot give (a holder can be paused past the moment it lost the lock).

    lease = Lease("/var/lib/horus/bot/lease")
    epoch = lease.try_acquire()        # None while another instance holds it
    ...
    lease.release()

The lock file's descriptor is close-on-exec: a subprocess the bot starts never inherits (and so never
keeps) the lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Any

from horus_sdk.formats import read_json, write_json_atomic
from horus_sdk.runner_files import FORMAT_LEASE

__all__ = ["Lease", "LeaseError"]

LEASE_RECORD_MAX_BYTES = 16 * 1024
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class LeaseError(OSError):
    """The lease cannot be taken safely: its files cannot be trusted or written (the message says why)."""


class Lease:
    """The lease on ``path`` (its record is ``path`` + ``.json``: ``lease`` -> ``lease.json``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.record_path = self.path.with_name(self.path.name + ".json")
        self.epoch: int | None = None
        """The epoch of this holding; None while not held."""
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, *, at_least: int = 0) -> int | None:
        """Take the lease if no one holds it: the new epoch (above every earlier one and above
        ``at_least``), or None when another holder has it. Raises LeaseError when its files cannot be
        trusted or written; then the lease is not held."""
        if self._fd is not None:
            raise RuntimeError("this lease is already held")
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise LeaseError(f"cannot open the lease file {self.path}: {exc.strerror or exc}") from exc
        try:
            _refuse_unless_private(self.path, os.fstat(fd))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            epoch = max(self._last_epoch(), int(at_least)) + 1
            record = {"format": FORMAT_LEASE, "epoch": epoch, "pid": os.getpid(), "since": time.time()}
            try:
                write_json_atomic(self.record_path, record, fsync=True)
            except OSError as exc:
                raise LeaseError(f"cannot record the lease's epoch in {self.record_path}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing drops the flock too
            raise
        self._fd, self.epoch = fd, epoch
        return epoch

    def release(self) -> None:
        """Give the lease back (nothing when it is not held). The record keeps the last epoch."""
        fd, self._fd, self.epoch = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def lost(self) -> str | None:
        """Why this holding no longer fences anyone out, or None while it does (and while not held).

        The flock is on the file this holder opened. Once the path no longer names that file (deleted, say by
        an ``rm -rf`` of the state dir, or replaced), the next holder opens and locks a new file there while
        this one still holds the old: two holders at once."""
        if self._fd is None:
            return None
        try:
            mine = os.fstat(self._fd)
            there = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            there = None
        except OSError:
            return None  # cannot look now: the next boundary looks again
        if there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            return f"the lease file {self.path} was deleted or replaced while this instance held it"
        return None

    def holder(self) -> dict[str, Any] | None:
        """The record of the last holding (epoch, pid, since), or None when there is none readable."""
        try:
            return self._read_record()
        except (OSError, ValueError):
            return None

    def _last_epoch(self) -> int:
        try:
            record = self._read_record()
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            # An epoch that cannot be read cannot be exceeded for sure: refusing is the only safe answer.
            raise LeaseError(f"the lease's last epoch cannot be read, so no larger one can be given: {exc}") from exc
        epoch = record.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise LeaseError(f"{self.record_path}: epoch must be a whole number, got {epoch!r}")
        return epoch

    def _read_record(self) -> dict[str, Any]:
        _refuse_unless_private(self.record_path, os.lstat(self.record_path))
        return read_json(self.record_path, FORMAT_LEASE, max_bytes=LEASE_RECORD_MAX_BYTES)


def _refuse_unless_private(path: Path, st: os.stat_result) -> None:
    """Another user who could write the lease's files could hand out an epoch twice or hold the lock."""
    if st.st_uid not in (os.getuid(), 0):
        raise LeaseError(f"{path}: owned by uid {st.st_uid}, not by this user; the lease is not taken")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LeaseError(f"{path}: others may write it (mode {stat.S_IMODE(st.st_mode):o}); the lease is not taken")
    if not stat.S_ISREG(st.st_mode):
        raise LeaseError(f"{path}: not a regular file; the lease is not taken")
