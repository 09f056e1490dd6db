"""The decision log: whole JSON lines, bounded and rotated, that never raise into the service."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from horus_sdk.control import Order, Permit
from horus_sdk.control_files import Mode
from horus_sdk.decisions import MAX_LINE_BYTES, DecisionLog, encode_line, tail
from horus_sdk.formats import RefusedFileError


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_each_record_is_one_json_line_and_a_permit_shows_what_the_gate_said(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    denied = Permit(False, "halted: exchange maintenance", Mode.HALTED)
    assert log.write({"at": 1.5, "kind": "entry", "signal": 0.8, "permit": denied})
    assert log.write({"at": 2.0, "kind": "order", "order": Order("BTC-USD", "buy", 0.1), "tags": {"a"}})
    log.close()

    first, second = lines_of(tmp_path / "decisions.jsonl")
    assert first == {
        "at": 1.5,
        "kind": "entry",
        "signal": 0.8,
        "permit": {"allowed": False, "reason": "halted: exchange maintenance", "mode": "halted"},
    }
    assert second["order"] == {
        "symbol": "BTC-USD",
        "side": "buy",
        "quantity": 0.1,
        "feed": None,
        "client_order_id": None,
    }
    assert second["tags"] == ["a"]


def test_a_record_too_large_for_a_line_is_shortened_never_broken(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    huge = {"at": 3.0, "kind": "scan", "book": "x" * 100_000, "levels": list(range(50_000))}
    assert log.write(huge)
    log.close()

    raw = (tmp_path / "decisions.jsonl").read_bytes()
    assert len(raw) <= MAX_LINE_BYTES
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    record = json.loads(raw)
    assert record["kind"] == "scan" and record["at"] == 3.0
    assert record["book"].startswith("xxx") and "100000 characters" in record["book"]


def test_a_record_of_many_keys_keeps_what_names_it() -> None:
    record = {"at": 1.0, "kind": "wide", **{f"key{i:05d}": "v" * 30 for i in range(5000)}}
    line = encode_line(record)
    assert len(line) <= MAX_LINE_BYTES
    decoded = json.loads(line)
    assert decoded["kind"] == "wide"


def test_values_json_cannot_hold_are_written_as_text() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    circular: dict = {}
    circular["self"] = circular
    line = encode_line({"at": 1.0, "kind": "odd", (1, 2): "tuple key", "loop": circular, "bad": Unprintable()})
    decoded = json.loads(line)
    assert decoded["(1, 2)"] == "tuple key"
    assert "cannot be shown" in decoded["bad"]


def test_rotation_keeps_keep_files_each_under_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, max_bytes=2000, keep=2)
    for number in range(400):
        assert log.write({"at": float(number), "kind": "tick", "n": number})
    log.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2"]
    seen = []
    for name in ("decisions.jsonl.2", "decisions.jsonl.1", "decisions.jsonl"):
        file = tmp_path / name
        assert file.stat().st_size <= 2000
        seen += [record["n"] for record in lines_of(file)]
    # The newest lines, in order, none lost between the files that are kept.
    assert seen == list(range(seen[0], 400))
    assert len(seen) > 50


def test_a_log_that_cannot_be_written_loses_the_line_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gone" / "decisions.jsonl"
    log = DecisionLog(path)
    with caplog.at_level(logging.WARNING, logger="horus_sdk"):
        assert log.write({"at": 1.0, "kind": "a"}) is False
        assert log.write({"at": 2.0, "kind": "b"}) is False
    assert log.lines_lost == 2
    assert len([r for r in caplog.records if "decisions.write_failed" in r.getMessage()]) == 1

    path.parent.mkdir()
    assert log.write({"at": 3.0, "kind": "c"}) is True
    log.close()
    assert [r["kind"] for r in lines_of(path)] == ["c"]


def test_a_named_pipe_in_place_of_the_log_is_never_written_or_blocked_on(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    os.mkfifo(path)
    log = DecisionLog(path)
    assert log.write({"at": 1.0, "kind": "a"}) is False  # returns at once: no reader, no block
    with pytest.raises(RefusedFileError, match="named pipe"):
        tail(path)


def test_a_log_moved_away_by_someone_else_is_written_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import horus_sdk.decisions as decisions

    monkeypatch.setattr(decisions, "_REOPEN_CHECK_SECONDS", 0.0)
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path)
    log.write({"at": 1.0, "kind": "before"})
    path.rename(tmp_path / "elsewhere.jsonl")
    log.write({"at": 2.0, "kind": "after"})
    log.close()
    assert [r["kind"] for r in lines_of(path)] == ["after"]


def test_tail_reads_the_newest_lines_across_the_last_rotation(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, max_bytes=1000, keep=3)
    for number in range(70):
        log.write({"at": float(number), "kind": "tick", "n": number})
    log.close()
    current = len(lines_of(path))
    assert 0 < current < 20  # the current file alone cannot give 20

    records = tail(path, lines=20)
    assert [r["n"] for r in records] == list(range(50, 70))
    assert [r["n"] for r in tail(path, lines=3)] == [67, 68, 69]


def test_tail_is_bounded_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with path.open("w") as f:
        for number in range(1000):
            f.write(json.dumps({"kind": "tick", "n": number}) + "\n")
        f.write('{"kind": "half')
    records = tail(path, lines=1000, max_bytes=4096)
    numbers = [r["n"] for r in records]
    assert numbers[-1] == 999
    assert numbers == list(range(numbers[0], 1000))
    assert len(numbers) < 200  # no more than 4 KiB was read

    assert tail(tmp_path / "missing.jsonl") == []
    (tmp_path / "text.jsonl").write_text("not json\n[1, 2]\n" + json.dumps({"kind": "ok"}) + "\n")
    assert tail(tmp_path / "text.jsonl") == [{"kind": "ok"}]
