"""horus.files: the one bounded, never-blocking read of a file someone else may have put in Horus's way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from horus.files import FileTooLarge, NotARegularFile, read_regular_file


def test_a_regular_file_is_read_whole_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "unit"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, max_bytes=100) == b"x" * 100
    with pytest.raises(FileTooLarge) as too_large:
        read_regular_file(path, max_bytes=99)
    assert too_large.value.size == 100


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile) as refused:
        read_regular_file(fifo, max_bytes=1024)  # would block for ever without O_NONBLOCK
    assert refused.value.kind == "a FIFO"


def test_a_link_is_followed_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"content")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_regular_file(link, max_bytes=1024) == b"content"
    with pytest.raises(NotARegularFile) as refused:
        read_regular_file(link, max_bytes=1024, follow_links=False)
    assert refused.value.kind == "a symbolic link"
    with pytest.raises(NotARegularFile):
        read_regular_file(tmp_path, max_bytes=1024)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", max_bytes=1024)
