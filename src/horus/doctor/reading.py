"""Bounded, careful reads of the files a service's setup is made of (STYLE: distrust the world at the boundary).

Only regular files are opened, never blocking on a FIFO, and never more than a limit is read. A source tree
is walked without following links out of it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Unreadable", "read_bounded", "source_files"]

# A plist, unit, .env or compose file is a few KiB; more than this is not one.
SETUP_FILE_MAX_BYTES = 1024 * 1024
# A source file larger than this is generated or vendored, not the service's own code.
SOURCE_FILE_MAX_BYTES = 512 * 1024
# A service's own tree holds tens to hundreds of source files; beyond this the walk stops.
SOURCE_FILES_MAX = 2000
# And at most this much of them is read in all, so that one audit stays cheap whatever the tree holds.
SOURCE_TOTAL_MAX_BYTES = 16 * 1024 * 1024
# Trees that hold other people's code, or build output.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", "node_modules", ".venv", "venv", "env", "__pycache__", "site-packages", ".tox", "dist", "build"}
)


class Unreadable(Exception):
    """A file could not be read; the message says why, in words."""


def read_bounded(path: Path, limit: int = SETUP_FILE_MAX_BYTES) -> str:
    """The text of the regular file ``path`` (links followed), at most ``limit`` bytes; raises Unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise Unreadable("it does not exist") from None
    except PermissionError:
        raise Unreadable("permission denied") from None
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("it is not a regular file")
        if info.st_size > limit:
            raise Unreadable(f"it is {info.st_size} bytes, more than the {limit} a file of this kind can be")
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def source_files(root: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    """(path relative to ``root``, text) of each source file under ``root`` whose name ends in one of
    ``suffixes``, at most SOURCE_FILES_MAX of them. A link is followed only when it stays inside the tree."""
    try:
        real_root = root.resolve(strict=True)
    except OSError:
        return
    seen = 0
    total = 0
    for directory, dirnames, filenames in os.walk(real_root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(suffixes):
                continue
            path = Path(directory) / name
            try:
                if path.is_symlink() and not path.resolve(strict=True).is_relative_to(real_root):
                    continue
            except OSError:
                continue
            seen += 1
            if seen > SOURCE_FILES_MAX:
                return
            try:
                text = read_bounded(path, SOURCE_FILE_MAX_BYTES)
            except Unreadable:
                continue
            total += len(text)
            if total > SOURCE_TOTAL_MAX_BYTES:
                return
            yield path.relative_to(real_root), text
