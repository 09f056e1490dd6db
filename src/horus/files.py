"""Files another program or user may have put in Horus's way: read only when regular, bounded and without
blocking; written so that a crash or a power cut leaves the old one or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "FILE_KINDS",
    "FileTooLarge",
    "NotARegularFile",
    "fsync_directory",
    "read_regular_file",
    "write_file_atomically",
]


# What is at a path instead of a regular file, in words.
FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}


class NotARegularFile(OSError):
    """``kind`` says what is there instead: "a FIFO", "a directory", "a symbolic link" (when not followed)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


class FileTooLarge(OSError):
    def __init__(self, path: Path, size: int, limit: int) -> None:
        super().__init__(f"{path} is {size} bytes, more than {limit}")
        self.size = size
        self.limit = limit


def read_regular_file(path: Path, *, max_bytes: int, follow_links: bool = True) -> bytes:
    """The bytes of the regular file ``path``, read without ever blocking: a FIFO or a device is refused
    (NotARegularFile) without being read, and so is a link when ``follow_links`` is False; more than
    ``max_bytes`` is FileTooLarge, even when the file grows while it is read. Other failures are the OSError
    (FileNotFoundError, PermissionError ...)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError:
        if not follow_links and os.path.islink(path):  # O_NOFOLLOW's ELOOP
            raise NotARegularFile(path, "a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(path, FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file"))
        if info.st_size > max_bytes:
            raise FileTooLarge(path, info.st_size, max_bytes)
        data = bytearray()
        # One byte past the bound tells a file that grew from one that fits.
        while len(data) <= max_bytes and (chunk := os.read(fd, min(1 << 20, max_bytes + 1 - len(data)))):
            data += chunk
        if len(data) > max_bytes:
            raise FileTooLarge(path, len(data), max_bytes)
        return bytes(data)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, content: bytes, *, mode: int = 0o600) -> None:
    """Temp file beside ``path`` (created with ``mode`` whatever the umask), fsync, rename, fsync of the
    directory. Raises OSError; the temp file never stays behind."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """A rename or an unlink is durable only once the directory itself is on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
