"""Builds a feature matrix per tick with numpy, under an address-space cap (``memory_limit_mb``).

After the healthy period the lookback grows to ``big_rows`` rows: numpy cannot allocate the matrix, and
says so in its own words (no "MemoryError" in the message), on every tick from then on.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
from service_kit import Kit

kit = Kit()
log = kit.log


def build_features(rows: int) -> np.ndarray:
    return np.zeros((rows, 64), dtype="float64")


def main() -> None:
    limit = int(kit["memory_limit_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for tick in kit.ticks():
        rows = 2048
        if not kit.healthy():
            kit.failing()
            rows = int(kit["big_rows"])
        try:
            matrix = build_features(rows)
        except MemoryError:
            log.exception("feature build %d failed (lookback %d rows)", tick, rows)
            continue
        Path(kit["out_dir"], f"features-{tick:05d}.json").write_text(json.dumps({"bytes": matrix.nbytes}))
        log.info("features %d built: %d rows", tick, rows)
        kit.tick_noise(tick)


main()
