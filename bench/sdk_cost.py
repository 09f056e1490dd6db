"""The SDK's cost inside a service, and how soon its watchdog catches a stall.

Overhead: a busy asyncio loop doing about 60,000 iterations a second (each iteration does a little
work, calibrated on this machine, marks heartbeat progress and yields to the loop), with and without
Heartbeat + LoopWatchdog + BlockingDetector; throughput lost in %. Both loops also have one timer
pending, as every real service's loop does (a periodic task, a timeout): asyncio's scheduler pays about
0.1 µs an iteration for a non-empty timer heap, and the SDK is not charged for being the first timer.

This machine's speed drifts by several percent from one second to the next (a VM sharing its host),
more than the cost being measured. So the runs are short slices in blocks of four (plain, with the
SDK, with the SDK, plain), which cancels a drift that is steady across a block, and the figure is the
median of the blocks' losses, with their quartiles. Each slice with the SDK starts at a random point of
its one-second rhythm (a random warm-up), so that the beat's file write falls inside slices as often
as it does in a service.

Stall detection: a subprocess blocks its loop with time.sleep; the time from the block to the
watchdog's crash record, against kill_after.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import wait_for

SDK = Path(__file__).resolve().parents[1] / "sdk" / "src"
SLICE_SECONDS = 0.2
BLOCKS = 100
HEARTBEAT_INTERVAL = 1.0
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
    yield) plus a cost per unit of work, since the yield alone costs several microseconds; each size is
    measured five times, interleaved, and the medians taken, because the machine's speed drifts."""
    small, large = 1, 201
    rates: dict[int, list[float]] = {small: [], large: []}
    for _ in range(5):
        for size in rates:
            rates[size].append(asyncio.run(_busy(0.1, False, work_dir, size)))
    per_iteration_small = 1 / statistics.median(rates[small])
    per_iteration_large = 1 / statistics.median(rates[large])
    per_unit = (per_iteration_large - per_iteration_small) / (large - small)
    fixed = per_iteration_small - per_unit * small
    return max(1, round((1 / TARGET_ITERATIONS_PER_SECOND - fixed) / per_unit))


async def _service_timer() -> None:
    await asyncio.sleep(3600)


async def _busy(seconds: float, instrumented: bool, work_dir: Path, size: int, warm_up: float = 0.0) -> float:
    from horus_sdk import BlockingDetector, Heartbeat, LoopWatchdog

    async def spin(hb: Heartbeat | None, seconds: float) -> float:
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(100):
                _work(size)
                if hb is not None:
                    hb.progress("work")
                await asyncio.sleep(0)
                count += 1
        return count / (time.perf_counter() - start)

    timer = asyncio.get_running_loop().create_task(_service_timer())
    try:
        if not instrumented:
            return await spin(None, seconds)
        hb = Heartbeat(work_dir / "heartbeat.json", interval=HEARTBEAT_INTERVAL)
        async with (
            hb,
            BlockingDetector(threshold=0.1),
            LoopWatchdog(warn_after=5, kill_after=10, crash_dir=work_dir, heartbeat=hb, kill=False),
        ):
            await spin(hb, warm_up)
            return await spin(hb, seconds)
    finally:
        timer.cancel()


def overhead(blocks: int) -> dict:
    sys.path.insert(0, str(SDK))
    plain, instrumented, losses = [], [], []
    with tempfile.TemporaryDirectory(prefix="horus-sdk-bench-") as tmp:
        size = _calibrate(Path(tmp))

        def one(with_sdk: bool) -> float:
            warm_up = random.uniform(0, HEARTBEAT_INTERVAL) if with_sdk else 0.0
            return asyncio.run(_busy(SLICE_SECONDS, with_sdk, Path(tmp), size, warm_up))

        for _ in range(blocks):
            first, sdk = one(False), [one(True), one(True)]
            block_plain = [first, one(False)]
            plain += block_plain
            instrumented += sdk
            losses.append((1 - sum(sdk) / sum(block_plain)) * 100)
    quartiles = statistics.quantiles(losses, n=4)
    return {
        "iterations_per_second_plain": round(statistics.median(plain)),
        "iterations_per_second_with_sdk": round(statistics.median(instrumented)),
        "throughput_lost_percent": round(statistics.median(losses), 2),
        "throughput_lost_quartiles_percent": [round(quartiles[0], 2), round(quartiles[2], 2)],
        "blocks": blocks,
        "slice_seconds": SLICE_SECONDS,
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
        "overhead": overhead(max(BLOCKS, 20 * repeats)),
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
        f"{o['iterations_per_second_with_sdk']:,} with the SDK: {o['throughput_lost_percent']:.2f}% lost "
        f"(median of {o['blocks']} blocks; quartiles {o['throughput_lost_quartiles_percent'][0]:.2f}% "
        f"to {o['throughput_lost_quartiles_percent'][1]:.2f}%)",
        f"stall detection with kill_after {s['kill_after_seconds']:g} s: median {s['median_seconds']:.3f} s, "
        f"max {s['max_seconds']:.3f} s",
    ]
