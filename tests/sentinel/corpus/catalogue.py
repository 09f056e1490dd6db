"""Every scenario of the corpus, in one list: what the test and the accuracy benchmark run."""

from __future__ import annotations

from tests.sentinel.corpus import (
    scenarios_blind,
    scenarios_crashes,
    scenarios_database,
    scenarios_deploys,
    scenarios_holdout,
    scenarios_network,
    scenarios_network_async,
    scenarios_resources,
    scenarios_stalls,
    scenarios_startup,
)
from tests.sentinel.corpus.harness import Scenario

__all__ = ["SCENARIOS", "causes"]

SCENARIOS: list[Scenario] = [
    *scenarios_network.SCENARIOS,
    *scenarios_network_async.SCENARIOS,
    *scenarios_database.SCENARIOS,
    *scenarios_resources.SCENARIOS,
    *scenarios_startup.SCENARIOS,
    *scenarios_deploys.SCENARIOS,
    *scenarios_crashes.SCENARIOS,
    *scenarios_stalls.SCENARIOS,
    # Written by someone who had not read the rules, to measure how they do on failures they were not
    # tuned on; the benchmark reports them apart as well.
    *scenarios_holdout.SCENARIOS,
    # A second such set, written last, after the rules were tuned on everything above: the nearest this
    # corpus has to failures never seen.
    *scenarios_blind.SCENARIOS,
]


def causes(scenarios: list[Scenario] = SCENARIOS) -> set[str]:
    """The causes the scenarios expect, with and without py-spy."""
    return {s.cause for s in scenarios} | {s.cause_with_py_spy for s in scenarios if s.cause_with_py_spy}
