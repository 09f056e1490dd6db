"""The trading control plane: what ``permit()`` costs a bot, and how soon a halt is acknowledged.

permit(): a real, running Control (its watcher thread polling control.json, a stale-feed check
configured on a fresh feed) is asked PERMIT_CALLS times in a row per sample, timed with perf_counter_ns,
in each mode the bot meets: ACTIVE (the common path), REDUCING (an order that reduces the position and
one that would not), HALTED. The figure is the median ns per call over the samples. A loop calling a
method that does nothing is timed the same way, as the floor of the measurement.

halt -> acknowledgement: a bot subprocess (Control with its default 0.1 s poll, and a cycle loop) is
halted and resumed in turn through ``horus.control_plane.send_command``, the path ``horus control`` and
the halt heal use. A sample is the time from the call to the returned Acknowledgement (writing
control.json included). Each command waits a random fraction of the poll first, so that commands land
at every phase of the watcher's poll rather than just after it. The bot's loop either awaits its cycle
(0.1 s, 1 s), blocks in time.sleep(5) (the GIL released), or spins in Python for 5 s (the GIL held,
handed over only every switch interval): the watcher thread acknowledges in all of them.

The CLI: ``python -m horus control NAME halt --reason ...``, timed from outside, start-up included.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import quiet_sdk_log, wait_for

SDK = Path(__file__).resolve().parents[1] / "sdk" / "src"
PERMIT_CALLS = 200_000
PERMIT_GOAL_NS = 5_000
SAMPLES_PER_REPEAT = 10  # halts per bot case for each --repeats (5 by default: 50 halts, 50 resumes)
CLI_RUNS = 3
ACK_TIMEOUT = 10.0
POLL_INTERVAL = 0.1  # the Control's default; the bot keeps it
ACK_GOAL_SLACK = 0.1  # the goal: within one cycle of the bot plus 100 ms

# (name, how the cycle spends its time, cycle seconds)
BOT_CASES = (
    ("cycle 0.1 s", "await", 0.1),
    ("cycle 1 s", "await", 1.0),
    ("loop blocked: time.sleep(5) per cycle", "block", 5.0),
    ("loop busy: 5 s of Python per cycle (GIL held)", "spin", 5.0),
)

_BOT = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    sys.path.insert(0, {sdk!r})
    from horus_sdk import Control, Order
    logging.getLogger("horus_sdk").setLevel(logging.ERROR)  # a line per command applied is noise here

    async def main(control_dir, kind, seconds):
        async with Control(control_dir, poll_interval={poll!r}) as control:
            control.reconciled(positions={{"BTC-USD": 1.0}})
            while True:
                await control.cycle()
                control.permit(Order("BTC-USD", "buy", 0.01))
                if kind == "await":
                    await asyncio.sleep(seconds)
                elif kind == "block":
                    time.sleep(seconds)
                else:
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        pass

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
    """
)


# -- permit() ----------------------------------------------------------------------------------------------


def _time_calls(call: Callable[[Any], Any], order: Any, calls: int) -> float:
    """ns per call of ``call(order)``, over ``calls`` calls in a row."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        call(order)
    return (time.perf_counter_ns() - start) / calls


class _Nothing:
    def permit(self, order: Any) -> None:
        return None


def permit_cost(repeats: int, calls: int) -> dict[str, Any]:
    if str(SDK) not in sys.path:
        sys.path.insert(0, str(SDK))
    from horus_sdk import Control, Heartbeat, Mode, Order
    from horus_sdk.control_files import issue_command

    buy = Order("BTC-USD", "buy", 0.1, feed="prices")
    sell_part = Order("BTC-USD", "sell", 0.5, feed="prices")
    as_mapping = {"symbol": "BTC-USD", "side": "buy", "quantity": 0.1, "feed": "prices"}
    samples: dict[str, list[float]] = {}
    answers: dict[str, bool] = {}
    with quiet_sdk_log(), tempfile.TemporaryDirectory(prefix="horus-permit-bench-") as tmp:
        heartbeat = Heartbeat()
        heartbeat.progress("prices")
        # A limit no sample comes near: the feed stays fresh, and the check is paid on every call.
        control = Control(Path(tmp) / "control", heartbeat=heartbeat, feeds={"prices": 600.0})
        control.start()
        try:
            control.reconciled(positions={"BTC-USD": 1.0})

            def measure(phase: Mode, cases: dict[str, tuple[Callable[[Any], Any], Any]]) -> None:
                if control.mode is not phase:
                    raise RuntimeError(f"the control is {control.mode}, not {phase}, before measuring")
                for name, (call, order) in cases.items():
                    answer = call(order)
                    if answer is not None:
                        answers[name] = bool(answer)
                    _time_calls(call, order, min(calls, 10_000))  # warm up
                for _ in range(repeats):
                    for name, (call, order) in cases.items():
                        heartbeat.progress("prices")
                        samples.setdefault(name, []).append(_time_calls(call, order, calls))

            def switch(command: str, mode: Mode) -> None:
                issue_command(control.control_dir, command, "bench", "bench/control_plane.py")
                wait_for(lambda: control.mode is mode, ACK_TIMEOUT, f"the control to become {mode}")

            measure(
                Mode.ACTIVE,
                {
                    "floor: a method that does nothing": (_Nothing().permit, buy),
                    "ACTIVE, allowed": (control.permit, buy),
                    "ACTIVE, allowed (order as a dict)": (control.permit, as_mapping),
                },
            )
            switch("reduce", Mode.REDUCING)
            measure(
                Mode.REDUCING,
                {
                    "REDUCING, reducing order allowed": (control.permit, sell_part),
                    "REDUCING, denied": (control.permit, buy),
                },
            )
            switch("halt", Mode.HALTED)
            measure(Mode.HALTED, {"HALTED, denied": (control.permit, buy)})
            watcher_running = control.running
            stale_feeds = control.status()["stale_feeds"]
        finally:
            control.stop()
    return {
        "calls_per_sample": calls,
        "samples_per_case": repeats,
        "goal_ns": PERMIT_GOAL_NS,
        "watcher_running": watcher_running,
        "stale_feeds": stale_feeds,
        "cases": {
            name: {
                "median_ns": round(statistics.median(values), 1),
                "min_ns": round(min(values), 1),
                "max_ns": round(max(values), 1),
                "allowed": answers.get(name),
            }
            for name, values in samples.items()
        },
    }


# -- halt -> acknowledgement --------------------------------------------------------------------------------


@contextmanager
def _bot(control_dir: Path, kind: str, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    script = _BOT.format(sdk=str(SDK), poll=POLL_INTERVAL)
    proc = subprocess.Popen([sys.executable, "-c", script, str(control_dir), kind, str(seconds)])
    try:
        wait_for(lambda: _mode(control_dir) == "active" or proc.poll() is not None, 30, "the bot to start")
        if proc.poll() is not None:
            raise RuntimeError(f"the bench bot exited with {proc.returncode} before it was active")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _mode(control_dir: Path) -> str | None:
    from horus_sdk.control_files import read_status

    try:
        mode = read_status(control_dir).get("mode")
    except (OSError, ValueError):
        return None
    return mode if isinstance(mode, str) else None


async def _alternate(control_dir: Path, halts: int) -> tuple[dict[str, list[float]], int]:
    """Halt and resume ``halts`` times each: the seconds from send_command's call to its Acknowledgement
    by command (and, for halts, when the bot applied it after it was written), and how many went unanswered."""
    from horus.control_plane import send_command

    took: dict[str, list[float]] = {"halt": [], "resume": [], "bot_applied_after": []}
    unanswered = 0
    for _ in range(halts):
        for command in ("halt", "resume"):
            await asyncio.sleep(random.uniform(0, 1.5 * POLL_INTERVAL))
            start = time.perf_counter()
            ack = await send_command(control_dir, command, "bench", "bench/control_plane.py", timeout=ACK_TIMEOUT)
            elapsed = time.perf_counter() - start
            if not ack.applied:
                unanswered += 1
                continue
            took[command].append(elapsed)
            control = (ack.status or {}).get("control") or {}
            if command == "halt" and isinstance(control.get("at"), float):
                # The bot's own clock: when its watcher applied the command, from when it was written.
                took["bot_applied_after"].append(control["at"] - ack.command.issued_at)
    return took, unanswered


def _percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was measured, so p99 of 50 samples is the largest but none."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _summary_ms(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50_ms": round(_percentile(values, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def acknowledgement(halts: int) -> list[dict[str, Any]]:
    cases = []
    for name, kind, seconds in BOT_CASES:
        with tempfile.TemporaryDirectory(prefix="horus-ack-bench-") as tmp:
            control_dir = Path(tmp) / "control"
            with _bot(control_dir, kind, seconds):
                took, unanswered = asyncio.run(_alternate(control_dir, halts))
        goal = seconds + ACK_GOAL_SLACK
        halt = _summary_ms(took["halt"])
        cases.append(
            {
                "case": name,
                "cycle_seconds": seconds,
                "loop": kind,
                "goal_ms": round(goal * 1000),
                "halt": halt,
                "resume": _summary_ms(took["resume"]),
                "bot_applied_after_issue_p50_ms": (
                    round(statistics.median(took["bot_applied_after"]) * 1000, 1) if took["bot_applied_after"] else None
                ),
                "unanswered": unanswered,
                "within_goal": bool(took["halt"]) and max(took["halt"]) <= goal and not unanswered,
            }
        )
    return cases


def cli(runs: int) -> dict[str, Any]:
    """``python -m horus control desk halt`` against a bot on a 0.1 s cycle, timed from outside."""
    import json

    with tempfile.TemporaryDirectory(prefix="horus-cli-bench-") as tmp:
        control_dir = Path(tmp) / "control"
        config = Path(tmp) / "horus.json"
        config.write_text(
            json.dumps({"monitors": [{"name": "desk", "check": {"type": "trading", "control_dir": str(control_dir)}}]})
        )

        def horus(*args: str) -> float:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"horus {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
            return elapsed

        start_up, halts = [], []
        with _bot(control_dir, "await", 0.1):
            for _ in range(runs):
                start_up.append(horus("--version"))
                halts.append(horus("control", "desk", "halt", "--reason", "bench", "-c", str(config)))
                horus("control", "desk", "resume", "--reason", "bench", "-c", str(config))
    return {
        "runs": runs,
        "halt_median_ms": round(statistics.median(halts) * 1000),
        "halt_max_ms": round(max(halts) * 1000),
        "version_median_ms": round(statistics.median(start_up) * 1000),
    }


# -- the scenario ----------------------------------------------------------------------------------------


def run(
    repeats: int,
    *,
    permit_calls: int = PERMIT_CALLS,
    samples_per_repeat: int = SAMPLES_PER_REPEAT,
    cli_runs: int = CLI_RUNS,
) -> dict:
    return {
        "scenario": "control",
        "permit": permit_cost(max(1, repeats), permit_calls),
        "acknowledgement": {
            "poll_interval_seconds": POLL_INTERVAL,
            "cases": acknowledgement(max(1, samples_per_repeat * repeats)),
        },
        "cli": cli(max(1, cli_runs)),
    }


def table(result: dict) -> list[str]:
    p = result["permit"]
    lines = [
        f"permit() per call, a running Control with a stale-feed check (median of {p['samples_per_case']} "
        f"x {p['calls_per_sample']:,} calls; goal < {p['goal_ns'] / 1000:g} µs):",
        f"  {'case':<40} {'median':>9} {'min':>9} {'max':>9}",
    ]
    for name, case in p["cases"].items():
        lines.append(f"  {name:<40} {case['median_ns']:>6.0f} ns {case['min_ns']:>6.0f} ns {case['max_ns']:>6.0f} ns")
    a = result["acknowledgement"]
    lines += [
        "",
        f"halt -> acknowledgement through send_command (the bot's watcher polls every {a['poll_interval_seconds']:g} s;"
        " goal: one cycle + 100 ms):",
        f"  {'bot':<46} {'halts':>5} {'p50':>8} {'p99':>8} {'max':>8} {'goal':>8}  resume p50",
    ]
    for case in a["cases"]:
        h, r = case["halt"], case["resume"]
        if not h["samples"]:
            lines.append(f"  {case['case']:<46} no halt was acknowledged ({case['unanswered']} unanswered)")
            continue
        verdict = "" if case["within_goal"] else f"  MISSED ({case['unanswered']} unanswered)"
        lines.append(
            f"  {case['case']:<46} {h['samples']:>5} {h['p50_ms']:>5.0f} ms {h['p99_ms']:>5.0f} ms "
            f"{h['max_ms']:>5.0f} ms {case['goal_ms']:>5} ms  {r.get('p50_ms', 0):>5.0f} ms{verdict}"
        )
    c = result["cli"]
    lines += [
        "",
        f"`python -m horus control NAME halt` end to end, start-up included ({c['runs']} runs, bot on a 0.1 s "
        f"cycle): median {c['halt_median_ms']} ms, max {c['halt_max_ms']} ms; "
        f"`python -m horus --version` alone: {c['version_median_ms']} ms",
    ]
    return lines
