"""read_json reads only what the SDK could have written: a regular file of bounded size, never blocking."""

from __future__ import annotations

import os
import threading

import pytest

from horus_sdk.formats import (
    FORMAT_CRASH,
    FORMAT_HEARTBEAT,
    HEARTBEAT_MAX_BYTES,
    RefusedFileError,
    read_json,
    write_json_atomic,
)


def read_within_seconds(path, seconds: float = 5.0, **kwargs):
    """read_json on a thread, so that a read that blocks fails the test instead of hanging it."""
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["value"] = read_json(path, FORMAT_HEARTBEAT, **kwargs)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"read_json blocked on {path}"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def test_a_heartbeat_the_sdk_wrote_is_read_back(tmp_path):
    write_json_atomic(tmp_path / "hb.json", {"format": FORMAT_HEARTBEAT, "pid": 7})
    assert read_within_seconds(tmp_path / "hb.json")["pid"] == 7


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "hb.json")
    with pytest.raises(RefusedFileError, match=r"hb.json: a named pipe, not a regular file \(not read\)"):
        read_within_seconds(tmp_path / "hb.json")


def test_a_symlink_to_a_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "hb.json").symlink_to(tmp_path / "pipe")
    with pytest.raises(RefusedFileError, match="a named pipe"):
        read_within_seconds(tmp_path / "hb.json")


def test_a_device_is_never_opened(tmp_path):
    # /dev/zero would never end; it must be refused from its stat alone.
    (tmp_path / "hb.json").symlink_to("/dev/zero")
    with pytest.raises(RefusedFileError, match="a device, not a regular file"):
        read_within_seconds(tmp_path / "hb.json")


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "hb.json").mkdir()
    with pytest.raises(RefusedFileError, match="a directory"):
        read_within_seconds(tmp_path / "hb.json")


def test_a_heartbeat_file_larger_than_its_bound_is_refused_unread(tmp_path):
    with open(tmp_path / "hb.json", "wb") as f:
        f.truncate(256 * 1024 * 1024)
    with pytest.raises(RefusedFileError, match=r"256 MiB, larger than the 1 MiB limit \(not read\)"):
        read_within_seconds(tmp_path / "hb.json")


def test_the_bound_is_exact_and_a_crash_record_may_be_larger(tmp_path):
    body = b'{"format": "' + FORMAT_HEARTBEAT.encode() + b'", "pad": "'
    exactly = body + b"x" * (HEARTBEAT_MAX_BYTES - len(body) - 2) + b'"}'
    (tmp_path / "hb.json").write_bytes(exactly)
    assert len(read_within_seconds(tmp_path / "hb.json")["pad"]) > 1000
    (tmp_path / "hb.json").write_bytes(exactly + b" ")
    with pytest.raises(RefusedFileError):
        read_within_seconds(tmp_path / "hb.json")
    crash = tmp_path / "crash.json"
    write_json_atomic(crash, {"format": FORMAT_CRASH, "pad": "x" * (2 * HEARTBEAT_MAX_BYTES)})
    assert read_json(crash, FORMAT_CRASH)["format"] == FORMAT_CRASH


def test_a_missing_file_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "nope.json", FORMAT_HEARTBEAT)


@pytest.mark.parametrize("content", [b"[" * 100_000, b"\xff\xfe not text", b"{", b"[]"])
def test_what_is_not_a_heartbeat_is_a_value_error_that_names_the_file(tmp_path, content):
    (tmp_path / "hb.json").write_bytes(content)
    with pytest.raises(ValueError, match=r"hb\.json: not a horus-heartbeat/1 file"):
        read_within_seconds(tmp_path / "hb.json")


def test_an_atomic_write_never_follows_a_symlink_planted_at_its_temp_name(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "status.json"
    (tmp_path / f".{target.name}.{os.getpid()}.tmp").symlink_to(victim)
    write_json_atomic(target, {"format": "x"})
    assert victim.read_text() == "precious"
    assert target.read_text() == '{"format":"x"}'
