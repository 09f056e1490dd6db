"""Bounded, careful reads of the files a service's setup is made of (STYLE: distrust the world at the boundary).

Only regular files are opened, never blocking on a FIFO, and never more than a limit is read. A source tree
is walked without following links out of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from horus.files import FileTooLarge, NotARegularFile, read_regular_file

__all__ = ["SourceWalk", "Unreadable", "read_bounded", "read_bounded_bytes"]

# A plist, unit, .env or compose file is a few KiB; more than this is not one.
SETUP_FILE_MAX_BYTES = 1024 * 1024
# A source file larger than this is generated or vendored, not the service's own code.
SOURCE_FILE_MAX_BYTES = 512 * 1024
# A service's own tree holds tens to hundreds of source files; beyond this the walk stops.
SOURCE_FILES_MAX = 2000
# And at most this much of them is read in all, so that one audit stays cheap whatever the tree holds.
SOURCE_TOTAL_MAX_BYTES = 16 * 1024 * 1024
# And at most this many names (files and directories, of any kind) are looked at: a tree of data files or a
# home directory given by mistake ends the walk in about a second, not after millions of entries.
SOURCE_ENTRIES_MAX = 200_000
# Trees that hold other people's code, or build output.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", "node_modules", ".venv", "venv", "env", "__pycache__", "site-packages", ".tox", "dist", "build"}
)


class Unreadable(Exception):
    """A file could not be read; the message says why, in words."""


def read_bounded(path: Path, limit: int = SETUP_FILE_MAX_BYTES) -> str:
    """The text of the regular file ``path`` (links followed), at most ``limit`` bytes; raises Unreadable."""
    return read_bounded_bytes(path, limit).decode("utf-8", errors="replace")


def read_bounded_bytes(path: Path, limit: int = SETUP_FILE_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (links followed), at most ``limit``; raises Unreadable. For a
    file that need not be text (a binary plist)."""
    try:
        return read_regular_file(path, max_bytes=limit)
    except FileNotFoundError:
        raise Unreadable("it does not exist") from None
    except PermissionError:
        raise Unreadable("permission denied") from None
    except NotARegularFile:
        raise Unreadable("it is not a regular file") from None
    except FileTooLarge as exc:
        raise Unreadable(f"it is {exc.size} bytes, more than the {limit} a file of this kind can be") from None
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None


class SourceWalk:
    """The source files under ``root`` whose names end in one of ``suffixes``: iterate over it once for
    (path relative to ``root``, text). A link is followed only when it stays inside the tree.

    The walk is bounded (SOURCE_FILES_MAX files, SOURCE_TOTAL_MAX_BYTES read, SOURCE_ENTRIES_MAX names looked
    at, whatever their kind); once it is over, ``cut_short`` says which bound stopped it, or is None when the
    whole tree was read, so that a partial audit is never passed off as a whole one.
    """

    def __init__(self, root: Path, suffixes: tuple[str, ...]) -> None:
        self.root = root
        self.suffixes = suffixes
        self.cut_short: str | None = None

    def __iter__(self) -> Iterator[tuple[Path, str]]:
        try:
            real_root = self.root.resolve(strict=True)
        except (OSError, RuntimeError):
            return
        seen = 0
        looked_at = 0
        total = 0
        for directory, dirnames, filenames in os.walk(real_root, followlinks=False):
            looked_at += len(dirnames) + len(filenames)
            if looked_at > SOURCE_ENTRIES_MAX:
                self.cut_short = f"it stopped after {SOURCE_ENTRIES_MAX} files and directories"
                return
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
            for name in sorted(filenames):
                if not name.endswith(self.suffixes):
                    continue
                path = Path(directory) / name
                try:
                    if path.is_symlink() and not path.resolve(strict=True).is_relative_to(real_root):
                        continue
                except (OSError, RuntimeError):  # RuntimeError: a link loop, before Python 3.13
                    continue
                seen += 1
                if seen > SOURCE_FILES_MAX:
                    self.cut_short = f"it stopped after {SOURCE_FILES_MAX} source files"
                    return
                try:
                    text = read_bounded(path, SOURCE_FILE_MAX_BYTES)
                except Unreadable:
                    continue
                total += len(text)
                if total > SOURCE_TOTAL_MAX_BYTES:
                    self.cut_short = f"it stopped after reading {SOURCE_TOTAL_MAX_BYTES // (1024 * 1024)} MiB"
                    return
                yield path.relative_to(real_root), text
