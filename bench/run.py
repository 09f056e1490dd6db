"""`make bench`: how soon Horus acts on a stale log, alone and beside twenty probes that never answer.

Each run starts a real `horus run` on a temporary config: one log_staleness monitor whose log stops at
a known moment (threshold T, interval far longer than T, so only deadline scheduling can be on time),
healed by a script that stamps the time. Latency = heal stamp - (last write + T).

    python bench/run.py                 # every scenario
    python bench/run.py detection       # one scenario by name
Results are printed as a table and written to bench/results/<scenario>.json.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLD_SECONDS = 2.0
REPEATS = 5


def _silent_listeners(count: int) -> list[socket.socket]:
    listeners = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        listeners.append(sock)
    return listeners


def detection_once(hung_probes: int) -> float:
    with tempfile.TemporaryDirectory(prefix="horus-bench-") as tmp:
        work = Path(tmp)
        log, stamps = work / "bot.log", work / "healed.txt"
        listeners = _silent_listeners(hung_probes)
        monitors = [
            {
                "name": "bot",
                "interval_seconds": 30,
                "min_failures_to_heal": 1,
                "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": THRESHOLD_SECONDS},
                "heal": {"action": "run_script", "command": f"date +%s.%N > {stamps}", "shell": True},
            },
            *[
                {
                    "name": f"hung-{i}",
                    "interval_seconds": 1,
                    "check_timeout_seconds": 30,
                    "check": {"type": "http_health", "url": f"http://127.0.0.1:{s.getsockname()[1]}/health"},
                }
                for i, s in enumerate(listeners)
            ],
        ]
        config = work / "horus.json"
        config.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0.5}, "monitors": monitors}))
        log.write_text("scan\n")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "horus", "run", "-c", str(config), "--state-dir", str(work / "state")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Keep the log fresh until the daemon is surely watching, then stop writing.
            for _ in range(10):
                log.write_text("scan\n")
                time.sleep(0.1)
            last_write = log.stat().st_mtime
            deadline = time.monotonic() + THRESHOLD_SECONDS + 20
            while not (stamps.exists() and stamps.read_text().strip()):
                if time.monotonic() > deadline:
                    raise RuntimeError("horus never healed the stale log")
                time.sleep(0.01)
            return float(stamps.read_text()) - (last_write + THRESHOLD_SECONDS)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=15)
            for s in listeners:
                s.close()


def detection() -> dict:
    rows = []
    for hung in (0, 20):
        samples = [detection_once(hung) for _ in range(REPEATS)]
        rows.append(
            {
                "hung_http_probes": hung,
                "threshold_seconds": THRESHOLD_SECONDS,
                "latency_after_threshold_seconds": {
                    "median": round(statistics.median(samples), 3),
                    "max": round(max(samples), 3),
                    "samples": [round(s, 3) for s in samples],
                },
            }
        )
    return {"scenario": "detection", "rows": rows}


SCENARIOS = {"detection": detection}


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        result = {**SCENARIOS[name](), "machine": machine()}
        out = RESULTS / f"{name}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)
        print(f"\n{name} (threshold {THRESHOLD_SECONDS:g} s, {REPEATS} runs each) -> {out.relative_to(Path.cwd())}")
        print(f"{'hung HTTP probes':>18}  {'median after T':>15}  {'max after T':>12}")
        for row in result["rows"]:
            latency = row["latency_after_threshold_seconds"]
            print(f"{row['hung_http_probes']:>18}  {latency['median']:>13.3f} s  {latency['max']:>10.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
