"""The control plane's benchmark, at a tiny size: it finishes, and what it measures is sane."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def scenario(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # the bench's modules import each other by their bare names
    return importlib.import_module("control_plane")


@pytest.mark.slow
def test_a_tiny_run_measures_every_case_and_each_halt_is_acknowledged_by_the_watcher(scenario):
    result = scenario.run(1, permit_calls=2_000, samples_per_repeat=2, cli_runs=1)
    json.dumps(result)  # bench/run.py writes it as JSON

    permit = result["permit"]
    assert permit["watcher_running"], "permit() must be measured with the watcher thread on"
    assert permit["stale_feeds"] == {}, "the feed was kept fresh, so every order met the stale-feed check and passed"
    cases = permit["cases"]
    allowed = {name: case["allowed"] for name, case in cases.items()}
    assert allowed == {
        "floor: a method that does nothing": None,
        "ACTIVE, allowed": True,
        "ACTIVE, allowed (order as a dict)": True,
        "REDUCING, reducing order allowed": True,
        "REDUCING, denied": False,
        "HALTED, denied": False,
    }
    for name, case in cases.items():
        assert 0 < case["min_ns"] <= case["median_ns"] <= case["max_ns"] < 1_000_000, name
    assert cases["floor: a method that does nothing"]["median_ns"] < cases["ACTIVE, allowed"]["median_ns"]

    ack = result["acknowledgement"]["cases"]
    assert [case["loop"] for case in ack] == ["await", "await", "block", "spin"]
    for case in ack:
        halt = case["halt"]
        assert case["unanswered"] == 0, case
        assert halt["samples"] == 2 and case["resume"]["samples"] == 2, case
        assert 0 < halt["p50_ms"] <= halt["p99_ms"] <= halt["max_ms"], case
    for case in ack[2:]:
        # A loop stuck for 5 s would answer after seconds: an answer well within its cycle came from the watcher.
        assert case["halt"]["max_ms"] < 2_000, case

    assert result["cli"]["runs"] == 1 and result["cli"]["halt_median_ms"] > 0

    printed = "\n".join(scenario.table(result))
    for name in [*cases, *(case["case"] for case in ack)]:
        assert name in printed


def test_the_table_says_when_a_goal_was_missed(scenario):
    halt = {"samples": 3, "p50_ms": 150.0, "p99_ms": 400.0, "max_ms": 400.0}
    missed = {
        "case": "cycle 0.1 s",
        "cycle_seconds": 0.1,
        "loop": "await",
        "goal_ms": 200,
        "halt": halt,
        "resume": halt,
        "bot_applied_after_issue_p50_ms": 140.0,
        "unanswered": 1,
        "within_goal": False,
    }
    result = {
        "permit": {"samples_per_case": 1, "calls_per_sample": 10, "goal_ns": 5000, "cases": {}},
        "acknowledgement": {"poll_interval_seconds": 0.1, "cases": [missed]},
        "cli": {"runs": 1, "halt_median_ms": 1200, "halt_max_ms": 1200, "version_median_ms": 1100},
    }
    row = next(line for line in scenario.table(result) if "cycle 0.1 s" in line)
    assert "MISSED (1 unanswered)" in row
