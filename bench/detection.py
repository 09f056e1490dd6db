"""Detection latency: a log goes stale with threshold T; how long after crossing T does the heal run?

Horus and monit each get the same log and a heal that stamps the time, alone and beside twenty HTTP
checks against servers that accept and never answer (timeout 5 s, monit's default); Horus also beside
two hundred, which all fail at once and each open an incident whose snapshot waits out its own HTTP
request. monit runs its checks in one serial loop every 2 s; Horus watches the staleness deadline.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from harness import horus_daemon, monit_binary, monit_daemon, silent_listeners, wait_for, workdir

THRESHOLD_SECONDS = 2
CYCLE_SECONDS = 2
PROBE_TIMEOUT_SECONDS = 5
HUNG_PROBES = (0, 20, 200)
# monit's serial loop over 200 hung checks takes over half an hour a cycle: it is measured up to this many.
MONIT_HUNG_AT_MOST = 20


def _let_it_go_stale(log: Path, stamps: Path, give_up_after: float) -> float:
    """Keep the log fresh for a random moment (a random phase against any cycle), stop, wait for the heal."""
    until = time.monotonic() + 3 + random.uniform(0, CYCLE_SECONDS)
    while time.monotonic() < until:
        log.write_text("scan\n")
        time.sleep(0.1)
    log.write_text("scan\n")
    went_stale = log.stat().st_mtime + THRESHOLD_SECONDS
    wait_for(lambda: stamps.exists() and stamps.read_text().strip() != "", give_up_after, "the heal")
    return float(stamps.read_text().split()[0]) - went_stale


def horus_once(hung: int) -> float:
    with workdir("horus-bench-") as work, silent_listeners(hung) as ports:
        log, stamps = work / "bot.log", work / "healed.txt"
        log.write_text("scan\n")
        monitors = [
            {
                "name": "bot",
                "interval_seconds": CYCLE_SECONDS,
                "min_failures_to_heal": 1,
                "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": THRESHOLD_SECONDS},
                "heal": {"action": "run_script", "command": f"date +%s.%N >> {stamps}", "shell": True},
            },
            *[
                {
                    "name": f"hung-{i}",
                    "interval_seconds": CYCLE_SECONDS,
                    "check_timeout_seconds": PROBE_TIMEOUT_SECONDS,
                    "check": {"type": "http_health", "url": f"http://127.0.0.1:{port}/health"},
                }
                for i, port in enumerate(ports)
            ],
        ]
        with horus_daemon(work, {"defaults": {"start_jitter_seconds": 0.5}, "monitors": monitors}):
            return _let_it_go_stale(log, stamps, give_up_after=60)


def monit_once(hung: int) -> float:
    with workdir("monit-bench-") as work, silent_listeners(hung) as ports:
        log, stamps = work / "bot.log", work / "healed.txt"
        log.write_text("scan\n")
        services = "".join(
            f"check host hung-{i} with address 127.0.0.1\n"
            f'    if failed port {port} protocol http request "/health" with timeout {PROBE_TIMEOUT_SECONDS} seconds'
            " then alert\n"
            for i, port in enumerate(ports)
        )
        services += (
            f"check file bot with path {log}\n"
            f"    if timestamp > {THRESHOLD_SECONDS} seconds then exec \"/bin/sh -c 'date +%s.%N >> {stamps}'\"\n"
        )
        with monit_daemon(work, CYCLE_SECONDS, services):
            # A serial loop over twenty 5 s timeouts takes minutes per cycle.
            return _let_it_go_stale(log, stamps, give_up_after=30 + hung * PROBE_TIMEOUT_SECONDS * 3)


def run(repeats: int) -> dict:
    rows = []
    for hung in HUNG_PROBES:
        row: dict = {"hung_http_probes": hung, "threshold_seconds": THRESHOLD_SECONDS}
        row["horus"] = _summary([horus_once(hung) for _ in range(repeats)])
        if monit_binary() and hung <= MONIT_HUNG_AT_MOST:
            # monit's slow case takes minutes a sample; fewer samples say enough.
            row["monit"] = _summary([monit_once(hung) for _ in range(repeats if hung == 0 else max(1, repeats // 2))])
        rows.append(row)
    return {"scenario": "detection", "cycle_seconds": CYCLE_SECONDS, "rows": rows}


def table(result: dict) -> list[str]:
    lines = [
        f"{'hung HTTP probes':>16}  {'Horus median':>12}  {'Horus max':>9}  {'monit median':>12}  {'monit max':>9}"
    ]
    for row in result["rows"]:
        h, m = row["horus"], row.get("monit")
        monit = f"{m['median']:>10.2f} s  {m['max']:>7.2f} s" if m else f"{'n/a':>12}  {'n/a':>9}"
        lines.append(f"{row['hung_http_probes']:>16}  {h['median']:>10.2f} s  {h['max']:>7.2f} s  {monit}")
    return lines


def _summary(samples: list[float]) -> dict:
    return {
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
        "samples": [round(s, 3) for s in samples],
    }
