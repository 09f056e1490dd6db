"""The hot-reload benchmark, at a tiny size: it finishes, its figures are well formed, and its judge catches
two epochs trading at once."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from horus_sdk.journal import format_client_order_id

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def scenario(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # the bench's modules import each other by their bare names
    return importlib.import_module("hot_reload")


def order(epoch: int, at: float) -> dict:
    """An entry of the exchange's order log, with the client order id the bot's journal gives it."""
    return {"client_order_id": format_client_order_id("h", epoch, int(at * 1000)), "at": at}


@pytest.mark.slow
def test_a_tiny_run_measures_both_handovers_from_the_order_log(scenario):
    result = scenario.run(1, reloads=3, restart_count=2)
    json.dumps(result)  # bench/run.py writes it as JSON

    hot, restart = result["hot_reload"], result["restart"]
    for figures, handovers in ((hot["order_log"], 3), (restart["order_log"], 2)):
        assert figures["handovers"] == handovers and figures["epochs"] == handovers + 1, figures
        assert figures["overlaps"] == 0
        assert figures["orders"] >= scenario.MIN_ORDERS_PER_EPOCH * (handovers + 1), figures
        # About one cycle plus an order's round trip between two orders of one instance.
        assert scenario.CYCLE * 1000 <= figures["spacing_ms"] < 2 * scenario.CYCLE * 1000, figures
        assert figures["gap_p50_ms"] <= figures["gap_max_ms"], figures
        assert 0 < figures["idle_p50_ms"] <= figures["idle_max_ms"] < 30_000, figures
        assert figures["idle_max_ms"] - figures["gap_max_ms"] == pytest.approx(figures["spacing_ms"], abs=0.2)
    for timing in (hot["runner_gap"], hot["reload_took"], hot["request_answered_after"], restart["restart_took"]):
        assert 0 < timing["p50_ms"] <= timing["max_ms"] < 60_000, timing
    # The runner measures its gap inside the handover, which is inside the reload.
    assert hot["runner_gap"]["max_ms"] < hot["reload_took"]["p50_ms"]

    printed = "\n".join(scenario.table(result))
    assert "hot reload (horus-runner)" in printed and "stop-then-start restart" in printed


def test_the_judge_refuses_an_order_log_where_two_epochs_traded_at_once(scenario):
    clean = [order(1, 10.0), order(1, 10.2), order(1, 10.4), order(2, 10.7), order(2, 10.9)]
    figures = scenario.judge(clean, 1, "clean")
    assert figures["spacing_ms"] == pytest.approx(200.0)
    assert figures["gap_max_ms"] == pytest.approx(100.0)  # 300 ms without an order, less the 200 ms spacing

    overlapping = [*clean, order(1, 10.8)]  # the old epoch sent one more after the new one began
    with pytest.raises(RuntimeError, match="epochs 1 and 2 traded at the same time"):
        scenario.judge(overlapping, 1, "overlapping")
    with pytest.raises(RuntimeError, match="2 epochs traded, not 3"):
        scenario.judge(clean, 2, "a handover that never traded")
