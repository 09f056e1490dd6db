"""How often Sentinel names the right cause first, on the scenario corpus (tests/sentinel/corpus).

Runs every scenario for real (the same runs as tests/sentinel/corpus/test_corpus.py, without pytest) and
prints a markdown table: per expected cause, how many runs, and how many had the right top-1 cause with
its proving evidence line and an honest confidence, without and with py-spy; then the totals, the misses
(with the top hypothesis each one gave and why it is wrong), and the scenarios this machine skipped.

    .venv/bin/python bench/rootcause_accuracy.py [--workers 6] [--only name,name]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sentinel.corpus.catalogue import SCENARIOS
from tests.sentinel.corpus.harness import Outcome, misses, run_corpus, use_py_spy_from_venv

MODES = ((False, "without py-spy"), (True, "with py-spy"))
HELD_OUT = (("holdout-", "the hold-out set"), ("blind-", "the blind set"))


def table(outcomes: list[Outcome]) -> list[str]:
    runs: dict[str, dict[bool, int]] = defaultdict(lambda: {False: 0, True: 0})
    right: dict[str, dict[bool, int]] = defaultdict(lambda: {False: 0, True: 0})
    for outcome in outcomes:
        for py_spy, _ in MODES:
            cause = outcome.scenario.expected_cause(py_spy)
            runs[cause][py_spy] += 1
            right[cause][py_spy] += not misses(outcome, py_spy)
    lines = [
        "| cause | runs | top-1 right without py-spy | top-1 right with py-spy |",
        "|---|---|---|---|",
    ]
    for cause in sorted(runs):
        cells = [f"{right[cause][m]}/{runs[cause][m]}" for m, _ in MODES]
        lines.append(f"| {cause} | {max(runs[cause].values())} | {cells[0]} | {cells[1]} |")
    totals = []
    for py_spy, _ in MODES:
        n = sum(r[py_spy] for r in runs.values())
        k = sum(r[py_spy] for r in right.values())
        totals.append(f"**{k}/{n} ({k / n:.0%})**" if n else "0/0")
    lines.append(f"| **total** | {len(outcomes)} | {totals[0]} | {totals[1]} |")
    return lines


def miss_list(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for outcome in sorted(outcomes, key=lambda o: o.scenario.name):
        for py_spy, label in MODES:
            wrong = misses(outcome, py_spy)
            if not wrong:
                continue
            diagnosis = outcome.diagnoses.get(py_spy)
            top = "no diagnosis"
            if diagnosis:
                quoted = diagnosis.top.evidence[0][:160] if diagnosis.top.evidence else "no evidence"
                top = f"{diagnosis.top.title!r} ({diagnosis.top.confidence:.2f}), citing {quoted!r}"
            expected = outcome.scenario.expected_cause(py_spy)
            lines.append(f"- `{outcome.scenario.name}` {label}: expected {expected}; top-1 {top}; " + "; ".join(wrong))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=6, help="scenarios run at once (default 6)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    wanted = {name for name in args.only.split(",") if name}
    scenarios = [s for s in SCENARIOS if not wanted or s.name in wanted]
    if not use_py_spy_from_venv():
        print("note: py-spy is not installed in this venv; the 'with py-spy' runs cannot use it", file=sys.stderr)
    started = time.monotonic()
    results = run_corpus(scenarios, workers=args.workers)
    elapsed = time.monotonic() - started
    ran = [results[s.name] for s in scenarios if not results[s.name].skipped]
    skipped = [results[s.name] for s in scenarios if results[s.name].skipped]
    print(f"Root-cause accuracy on {len(ran)} scenarios ({len({o.scenario.cause for o in ran})} causes), "
          f"{elapsed:.0f} s.\n")  # fmt: skip
    print("\n".join(table(ran)))
    for prefix, words in HELD_OUT:
        held = [o for o in ran if o.scenario.name.startswith(prefix)]
        if held:
            print(f"\nOf which {words} ({len(held)} scenarios written without reading the rules):\n")
            print("\n".join(table(held)[-1:]))
    missed = miss_list(ran)
    print("\nMisses:\n" + ("\n".join(missed) if missed else "none"))
    if skipped:
        print("\nSkipped here:\n" + "\n".join(f"- `{o.scenario.name}`: {o.skipped}" for o in skipped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
