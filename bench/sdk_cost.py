"""The SDK's cost inside a service, and how soon its watchdog catches a stall.

Overhead: a busy asyncio loop doing about 60,000 iterations a second (each iteration does a little
work, calibrated on this machine, marks heartbeat progress and yields to the loop), run for a fixed
time with and without Heartbeat + LoopWatchdog + BlockingDetector; throughput lost in %.
Stall detection: a subprocess blocks its loop with time.sleep; the time from the block to the
watchdog's crash record, against kill_after.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import wait_for

SDK = Path(__file__).resolve().parents[1] / "sdk" / "src"
RUN_SECONDS = 3.0
KILL_AFTER = 1.0
TARGET_ITERATIONS_PER_SECOND = 60_000

_STALLER = """
import asyncio, sys, time
sys.path.insert(0, {sdk!r})
from horus_sdk import Heartbeat, LoopWatchdog
async def main():
    hb = Heartbeat({hb!r}, interval=0.2)
    async with hb, LoopWatchdog(warn_after={warn}, kill_after={kill}, crash_dir={crash!r}, heartbeat=hb, kill=False):
        await asyncio.sleep(1.0)
        print(time.time(), flush=True)   # the moment the loop blocks
        time.sleep({kill} + 3)
asyncio.run(main())
"""


def _work(size: int) -> int:
    return sum(i * i for i in range(size))


def _calibrate(work_dir: Path) -> int:
    """The work size that makes the plain loop (work, then a yield to the loop) run at about
    TARGET_ITERATIONS_PER_SECOND here. Measured on the loop itself, as a fixed cost per iteration (the
    yield) plus a cost per unit of work, since the yield alone costs several microseconds."""
    small, large = 1, 201
    per_iteration_small = 1 / asyncio.run(_busy(0.3, False, work_dir, small))
    per_iteration_large = 1 / asyncio.run(_busy(0.3, False, work_dir, large))
    per_unit = (per_iteration_large - per_iteration_small) / (large - small)
    fixed = per_iteration_small - per_unit * small
    return max(1, round((1 / TARGET_ITERATIONS_PER_SECOND - fixed) / per_unit))


async def _busy(seconds: float, instrumented: bool, work_dir: Path, size: int) -> float:
    from horus_sdk import BlockingDetector, Heartbeat, LoopWatchdog

    async def spin(hb: Heartbeat | None) -> int:
        count = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for _ in range(100):
                _work(size)
                if hb is not None:
                    hb.progress("work")
                await asyncio.sleep(0)
                count += 1
        return count

    if not instrumented:
        return await spin(None) / seconds
    hb = Heartbeat(work_dir / "heartbeat.json", interval=1.0)
    async with (
        hb,
        BlockingDetector(threshold=0.1),
        LoopWatchdog(warn_after=5, kill_after=10, crash_dir=work_dir, heartbeat=hb, kill=False),
    ):
        return await spin(hb) / seconds


def overhead(rounds: int) -> dict:
    sys.path.insert(0, str(SDK))
    with tempfile.TemporaryDirectory(prefix="horus-sdk-bench-") as tmp:
        size = _calibrate(Path(tmp))
        plain, instrumented = [], []
        for _ in range(rounds):  # interleaved, so drift on the machine hits both alike
            plain.append(asyncio.run(_busy(RUN_SECONDS, False, Path(tmp), size)))
            instrumented.append(asyncio.run(_busy(RUN_SECONDS, True, Path(tmp), size)))
    base, with_sdk = statistics.median(plain), statistics.median(instrumented)
    return {
        "iterations_per_second_plain": round(base),
        "iterations_per_second_with_sdk": round(with_sdk),
        "throughput_lost_percent": round((base - with_sdk) / base * 100, 2),
    }


def stall_once() -> float:
    with tempfile.TemporaryDirectory(prefix="horus-sdk-stall-") as tmp:
        work = Path(tmp)
        script = _STALLER.format(
            sdk=str(SDK), hb=str(work / "hb.json"), warn=KILL_AFTER / 2, kill=KILL_AFTER, crash=str(work)
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            blocked_at = float(proc.stdout.readline())
            wait_for(lambda: any(work.glob("horus-crash-*.json")), KILL_AFTER + 10, "the crash record")
            record = next(work.glob("horus-crash-*.json"))
            return json.loads(record.read_text())["wall_time"] - blocked_at
        finally:
            proc.kill()
            proc.wait()


def run(repeats: int) -> dict:
    stalls = [stall_once() for _ in range(repeats)]
    return {
        "scenario": "sdk",
        "overhead": overhead(max(3, repeats)),
        "stall_detection": {
            "kill_after_seconds": KILL_AFTER,
            "median_seconds": round(statistics.median(stalls), 3),
            "max_seconds": round(max(stalls), 3),
            "samples": [round(s, 3) for s in stalls],
        },
    }


def table(result: dict) -> list[str]:
    o, s = result["overhead"], result["stall_detection"]
    return [
        f"busy loop: {o['iterations_per_second_plain']:,} iterations/s plain, "
        f"{o['iterations_per_second_with_sdk']:,} with the SDK: {o['throughput_lost_percent']:.2f}% lost",
        f"stall detection with kill_after {s['kill_after_seconds']:g} s: median {s['median_seconds']:.3f} s, "
        f"max {s['max_seconds']:.3f} s",
    ]
