"""`make bench`: Horus and monit side by side, on this machine, in one run.

    python bench/run.py                      # every scenario
    python bench/run.py detection            # one scenario
    python bench/run.py scale --repeats 3
Each scenario prints a table and writes bench/results/<scenario>.json (with the machine it ran on).
monit is measured when it is installed (`make bench` installs it from the distribution's packages).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import control_plane
import detection
import hot_reload
import journal_cost
import scale
import sdk_cost
from harness import machine, monit_binary

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = {
    "detection": detection,
    "scale": scale,
    "sdk": sdk_cost,
    "control": control_plane,
    "journal": journal_cost,
    "reload": hot_reload,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], metavar="SCENARIO", default=[])
    parser.add_argument("--repeats", type=int, default=5, help="samples per case where samples apply (default 5)")
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    if monit_binary() is None:
        print("monit is not installed: measuring Horus only (make bench installs monit)", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        module = SCENARIOS[name]
        result = {**module.run(args.repeats), "machine": machine()}
        out = RESULTS / f"{name}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)
        print(f"\n== {name} -> {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
        for line in module.table(result):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
