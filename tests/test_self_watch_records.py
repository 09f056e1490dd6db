"""The crash records a restarted Horus reads back at its start: one that is not of this world (a wall time of
JSON's Infinity, from a corrupted or foreign file) is skipped, so it neither stops Horus from starting nor
hides every later record."""

from __future__ import annotations

import json
from pathlib import Path

from horus.engine.self_watch import previous_crash


def crash_record(crash_dir: Path, pid: int, wall_time: str) -> Path:
    path = crash_dir / f"horus-crash-{pid}.json"
    path.write_text(
        f'{{"format": "horus-crash/1", "pid": {pid}, "wall_time": {wall_time}, "reason": "event loop blocked"}}'
    )
    return path


def test_a_crash_record_with_a_wall_time_out_of_this_world_is_skipped_and_later_ones_still_told(
    tmp_path: Path,
) -> None:
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    crash_record(crash_dir, 1, "1e999")
    real = crash_record(crash_dir, 2, "1796000000.5")

    told = previous_crash(crash_dir, tmp_path)

    assert told is not None and told.path == real
    assert json.loads((tmp_path / "self_watch.json").read_text())["reported_until"] == 1796000000.5
    later = crash_record(crash_dir, 3, "1796000100.0")
    again = previous_crash(crash_dir, tmp_path)
    assert again is not None and again.path == later


def test_a_marker_that_says_infinity_does_not_hide_every_later_record(tmp_path: Path) -> None:
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    (tmp_path / "self_watch.json").write_text('{"reported_until": Infinity}')
    record = crash_record(crash_dir, 7, "1796000000.0")

    told = previous_crash(crash_dir, tmp_path)

    assert told is not None and told.path == record
