"""Sentinel's top-1 cause on real failures: each scenario's service is run, watched by its real check,
and diagnosed without and with py-spy while it is still failing (see harness.py).

The whole corpus runs once per session, several scenarios at a time, when the first of its tests asks
for the outcomes; each test then judges one scenario's diagnosis. ``-k`` selects scenarios as usual:
only the selected ones are run.
"""

from __future__ import annotations

import pytest

from horus.sentinel.hypothesis import CAUSES
from tests.sentinel.corpus.catalogue import SCENARIOS, causes
from tests.sentinel.corpus.harness import Outcome, misses, run_corpus, use_py_spy_from_venv

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> dict[str, Outcome]:
    wanted = {
        item.callspec.params["scenario"].name
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "scenario" in item.callspec.params
    }
    return run_corpus([s for s in SCENARIOS if s.name in wanted])


def describe(outcome: Outcome, py_spy: bool) -> str:
    """What a reader needs to judge a miss: the check's reason, the ranked causes, and their evidence."""
    lines = [f"{outcome.scenario.name}: {outcome.scenario.story}", f"check: {outcome.reason}"]
    diagnosis = outcome.diagnoses.get(py_spy)
    for hypothesis in (diagnosis.hypotheses if diagnosis else [])[:4]:
        lines.append(f"  {hypothesis.confidence:.2f} {hypothesis.cause}: {hypothesis.title}")
        lines += [f"      {line[:300]}" for line in hypothesis.evidence]
    if outcome.error:
        lines += [outcome.error, *outcome.looks[-5:]]
    return "\n".join(lines)


def test_the_corpus_spans_forty_failures_of_fourteen_causes():
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names)), "scenario names must be unique"
    assert len(SCENARIOS) >= 40
    assert len(causes()) >= 14
    assert causes() <= set(CAUSES)


# Runs that can miss, each with why. Not strict: each passes in some runs (the order of two writes, or of a
# restart and the diagnosis, decides it).
KNOWN_MISSES = {
    "threshold-raised-by-deploy": (
        "racy by construction: the bot stops trading when the harness marks the failure, and the diagnosis can "
        "come before the shell loop has started the new code, when nothing yet shows the deploy went live"
    ),
    "holdout-poll-interval-commit": (
        "racy like threshold-raised-by-deploy: under the whole suite's load the diagnosis can see the shell loop "
        "between the old process and the new one, and without the new process nothing shows the deploy went live"
    ),
    "blind-migration-renamed-table-cron-export": (
        "a job that no longer runs, whose UndefinedTable is in an untimed stderr log: unless that log was "
        "written after the migration's commit, nothing dates the error after it, and the traceback outranks it"
    ),
}


def _marks(scenario: object) -> list[pytest.MarkDecorator]:
    reason = KNOWN_MISSES.get(getattr(scenario, "name", ""))
    return [pytest.mark.xfail(reason=reason, strict=False)] if reason else []


@pytest.mark.parametrize("py_spy", [False, True], ids=["without-py-spy", "with-py-spy"])
@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=_marks(s)) for s in SCENARIOS])
def test_the_top_cause_is_the_one_the_evidence_proves(scenario, py_spy, outcomes):
    outcome = outcomes[scenario.name]
    if outcome.skipped:
        pytest.skip(f"{scenario.name}: {outcome.skipped}")
    if py_spy and not use_py_spy_from_venv():
        pytest.skip("py-spy is not installed in this venv")
    wrong = misses(outcome, py_spy)
    assert not wrong, "; ".join(wrong) + "\n" + describe(outcome, py_spy)
