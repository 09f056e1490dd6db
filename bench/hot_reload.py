"""The handover gap: a hot reload under horus-runner against a stop-then-start restart, on the same bot.

The example trading bot (examples/sdk/trading_bot.py, ``--cycle 0.2``, an order every cycle) runs under the
real runner (``python -m horus_sdk.runner``) and trades on the paper exchange, in this process
(examples/exchange/paper_exchange.py, loaded by its path). Two runs, each with its own exchange and runner:

- hot reloads: RELOADS times, a new version of the bot's source is written whole (a new file renamed over
  the old one, as a deploy does), then a ``reload`` request (``horus_sdk.runner_files.new_request``, what
  ``horus reload`` writes) asks the runner for it. The file watcher is off (``--no-watch``), so that each
  reload starts when the bench asks and not after a debounce. ``--probation 0``: the next reload may follow
  at once;
- stop-then-start: RESTARTS ``restart`` requests (what the ``runner_restart`` heal writes): the runner stops
  the active instance at its cycle boundary, waits for its exit, then starts a new one, which boots,
  reconciles and is promoted with no one trading meanwhile. This is what uvicorn ``--reload`` and hupper do.

After each reload or restart the bench waits until the new instance has placed MIN_ORDERS_PER_EPOCH orders,
so that every instance traded in its own steady state before the next handover.

The judge is the exchange's order log: each order's client order id holds its instance's epoch, and the
exchange stamps when it received it. At each handover, the trading gap is the first order of the new epoch
minus the last order of the old one, less the ordinary spacing between two orders (the median spacing
within epochs: about one cycle plus the time an order takes), so that 0 means "no order was missed". The
bench fails loudly when two epochs ever traded at the same moment (an order of the old epoch after the
first of the new one), in either run. Beside it, for the reloads: the runner's own ``gap_ms`` from
``runner.json`` (from the old instance's "released" to the new one's "trading") and how long each reload took
(the runner's reload entry, from taking the request to the old instance's exit).

The counts are the issue's (50 reloads; 20 restarts are enough to show the difference), whatever
``--repeats`` says. About a minute and a half.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness import workdir

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "examples" / "sdk" / "trading_bot.py"
EXCHANGE_SCRIPT = ROOT / "examples" / "exchange" / "paper_exchange.py"
SDK = ROOT / "sdk" / "src"
CYCLE = 0.2
RELOADS = 50
RESTARTS = 20
MIN_ORDERS_PER_EPOCH = 3
TIMEOUT = 60.0
# The goal for a hot reload: the longest gap at most one cycle.
GOAL_GAP_SECONDS = CYCLE
RUNNER_OPTIONS = {
    "ready-timeout": 30,
    "handover-timeout": 5,
    "probation": 0,
    "stop-timeout": 10,
}


def _sdk() -> None:
    if str(SDK) not in sys.path:
        sys.path.insert(0, str(SDK))


def _paper_exchange() -> ModuleType:
    """The paper exchange module: examples are scripts, not a package, so it is loaded by its path."""
    name = "paper_exchange"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, EXCHANGE_SCRIPT)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the paper exchange from {EXCHANGE_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up in sys.modules while they are built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _bot_source(label: str) -> str:
    return BOT.read_text() + f"\n# deployed version {label}\n"


@dataclass
class _Deployment:
    """The bot's source dir and its runner's state dir, and the runner itself."""

    work: Path
    exchange: Any
    process: subprocess.Popen[bytes] | None = None

    @property
    def source(self) -> Path:
        return self.work / "src"

    @property
    def state_dir(self) -> Path:
        return self.work / "runner"

    def start(self) -> None:
        self.source.mkdir()
        (self.source / "bot.py").write_text(_bot_source("1"))
        flags = [part for key, value in RUNNER_OPTIONS.items() for part in (f"--{key}", str(value))]
        bot = [sys.executable, "bot.py", "--exchange", self.exchange.url, "--control", str(self.work / "control")]
        bot += ["--cycle", str(CYCLE), "--journal", str(self.work / "orders.db"), "--log", str(self.work / "bot.log")]
        bot += ["--reduce-after", "50", "--halt-after", "100"]  # the paper exchange rejects nothing here
        command = [sys.executable, "-m", "horus_sdk.runner", "--name", "bench-bot", "--state-dir", str(self.state_dir)]
        command += ["--source", str(self.source), "--no-watch", *flags, "--", *bot]
        with (self.work / "runner.out").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def deploy(self, label: str) -> None:
        """A new version written the way a deploy writes it: the file replaced whole."""
        staged = self.work / "staged-bot.py"
        staged.write_text(_bot_source(label))
        os.replace(staged, self.source / "bot.py")

    def state(self) -> dict[str, Any]:
        from horus_sdk.runner_files import read_runner_state

        try:
            return read_runner_state(self.state_dir)
        except (OSError, ValueError):
            return {}

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the runner exited with {self.process.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {TIMEOUT:g} s waiting for {what}{self.evidence()}")
            time.sleep(0.02)

    def evidence(self) -> str:
        out = self.work / "runner.out"
        tail = out.read_text(errors="replace")[-2000:] if out.exists() else ""
        return (
            f"; runner state {self.state().get('state')!r}: {self.state().get('state_reason')!r}; runner output: {tail}"
        )

    def ask(self, op: str) -> tuple[dict[str, Any], float]:
        """Send a runner request and wait for its answer: the result, and the seconds it took to come."""
        from horus_sdk.runner_files import new_request, read_result

        start = time.monotonic()
        request = new_request(self.state_dir, op, requested_by="bench/hot_reload.py")
        answer: dict[str, Any] = {}

        def answered() -> bool:
            answer.update(read_result(self.state_dir, request) or {})
            return bool(answer)

        self.wait(answered, f"the runner's answer to the {op} request {request}")
        took = time.monotonic() - start
        if answer.get("outcome") != "done":
            raise RuntimeError(f"the {op} request {request} ended {answer.get('outcome')!r}: {answer.get('reason')}")
        return answer, took

    def active_epoch(self) -> int:
        epoch = (self.state().get("active") or {}).get("epoch")
        if not isinstance(epoch, int):
            raise RuntimeError(f"the runner names no active epoch{self.evidence()}")
        return epoch

    def wait_orders_of(self, epoch: int) -> None:
        def placed() -> bool:
            return len(trading_by_epoch(self.exchange.orders_received()).get(epoch, [])) >= MIN_ORDERS_PER_EPOCH

        self.wait(placed, f"{MIN_ORDERS_PER_EPOCH} orders of epoch {epoch} at the exchange")

    def wait_trading(self) -> int:
        def trading() -> bool:
            state = self.state()
            return state.get("state") == "running" and bool((state.get("active") or {}).get("trading_since"))

        self.wait(trading, "the bot to trade under its runner")
        epoch = self.active_epoch()
        self.wait_orders_of(epoch)
        return epoch


@contextlib.contextmanager
def _deployed(prefix: str) -> Iterator[_Deployment]:
    _sdk()
    with workdir(prefix) as work, _paper_exchange().PaperExchange() as exchange:
        deployment = _Deployment(work, exchange)
        try:
            deployment.start()
            yield deployment
        finally:
            deployment.stop()


# -- the judge: the exchange's order log ---------------------------------------------------------------------


def trading_by_epoch(orders: list[dict[str, Any]]) -> dict[int, list[float]]:
    """Epoch -> when the exchange received each of that epoch's orders."""
    from horus_sdk.journal import epoch_of_client_order_id

    times: dict[int, list[float]] = {}
    for order in orders:
        epoch = epoch_of_client_order_id(str(order.get("client_order_id")))
        if epoch is None:
            raise RuntimeError(f"the exchange received an order without an epoch in its id: {order}")
        times.setdefault(epoch, []).append(float(order["at"]))
    return times


def idle_between_epochs(times: dict[int, list[float]], what: str) -> list[float]:
    """Seconds without an order at each handover (the next epoch's first order minus the last one's last).

    Raises RuntimeError when two epochs ever traded at the same moment: an order of one epoch after the
    first of the next."""
    spans = sorted((min(t), max(t), epoch) for epoch, t in times.items())
    idle = []
    for (_, last, before), (first, _, after) in itertools.pairwise(spans):
        if first <= last:
            raise RuntimeError(
                f"{what}: epochs {before} and {after} traded at the same time: epoch {after}'s first order came "
                f"{(last - first) * 1000:.1f} ms before epoch {before}'s last"
            )
        idle.append(first - last)
    return idle


def judge(orders: list[dict[str, Any]], handovers: int, what: str) -> dict[str, Any]:
    """The trading gap at each handover, from the order log, beyond the ordinary spacing between two orders.

    Raises RuntimeError when two epochs ever traded at the same moment, or when the log does not hold one
    epoch more than there were handovers (each one traded)."""
    times = {epoch: sorted(t) for epoch, t in trading_by_epoch(orders).items()}
    if len(times) != handovers + 1:
        raise RuntimeError(f"{what}: {len(times)} epochs traded, not {handovers + 1} ({handovers} handovers)")
    spacings = [b - a for t in times.values() for a, b in itertools.pairwise(t)]
    if not spacings:
        raise RuntimeError(f"{what}: no epoch placed two orders, so there is no ordinary spacing to judge by")
    spacing = statistics.median(spacings)
    idle = idle_between_epochs(times, what)
    beyond = [gap - spacing for gap in idle]
    return {
        "handovers": handovers,
        "orders": sum(len(t) for t in times.values()),
        "epochs": len(times),
        "overlaps": 0,
        "spacing_ms": round(spacing * 1000, 1),
        # The longest stall of a steady bot within one epoch, beyond the ordinary spacing: this machine's jitter.
        "stall_max_ms": round((max(spacings) - spacing) * 1000, 1),
        "gap_p50_ms": round(statistics.median(beyond) * 1000, 1),
        "gap_max_ms": round(max(beyond) * 1000, 1),
        "idle_p50_ms": round(statistics.median(idle) * 1000, 1),
        "idle_max_ms": round(max(idle) * 1000, 1),
    }


# -- the two runs ----------------------------------------------------------------------------------------------


def _ms(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1)}


def hot_reloads(count: int) -> dict[str, Any]:
    with _deployed("horus-reload-bench-") as d:
        epoch = d.wait_trading()
        runner_gaps: list[float] = []
        durations: list[float] = []
        answered_after: list[float] = []
        for number in range(2, count + 2):
            d.deploy(str(number))
            answer, took = d.ask("reload")
            reload_id = (answer.get("reload") or {}).get("id")
            # The runner's own account, as runner.json holds it (it keeps the last 20 reloads).
            entry = next((e for e in d.state().get("reloads") or [] if e.get("id") == reload_id), None)
            if entry is None or not isinstance(entry.get("gap_ms"), int | float):
                raise RuntimeError(f"runner.json has no gap for reload {reload_id}: {entry}")
            if entry["from_epoch"] != epoch or entry["to_epoch"] <= epoch:
                raise RuntimeError(f"reload {reload_id} went from epoch {entry['from_epoch']}, not {epoch}: {entry}")
            runner_gaps.append(entry["gap_ms"] / 1000)
            durations.append(entry["finished_at"] - entry["started_at"])
            answered_after.append(took)
            epoch = entry["to_epoch"]
            d.wait_orders_of(epoch)
        d.stop()
        orders = d.exchange.orders_received()
    return {
        "reloads": count,
        "order_log": judge(orders, count, "hot reloads"),
        "runner_gap": _ms(runner_gaps),
        "reload_took": _ms(durations),
        "request_answered_after": _ms(answered_after),
    }


def restarts(count: int) -> dict[str, Any]:
    with _deployed("horus-restart-bench-") as d:
        epoch = d.wait_trading()
        took: list[float] = []
        for _ in range(count):
            _, seconds = d.ask("restart")
            new_epoch = d.active_epoch()
            if new_epoch <= epoch:
                raise RuntimeError(f"the restart left epoch {new_epoch} active, not a later one than {epoch}")
            took.append(seconds)
            epoch = new_epoch
            d.wait_orders_of(epoch)
        d.stop()
        orders = d.exchange.orders_received()
    return {"restarts": count, "order_log": judge(orders, count, "stop-then-start restarts"), "restart_took": _ms(took)}


# -- the scenario ----------------------------------------------------------------------------------------------


def run(repeats: int, *, reloads: int = RELOADS, restart_count: int = RESTARTS) -> dict:
    reload_figures = hot_reloads(reloads)
    restart_figures = restarts(restart_count)
    return {
        "scenario": "reload",
        "cycle_seconds": CYCLE,
        "goal_gap_ms": round(GOAL_GAP_SECONDS * 1000),
        "runner_options": RUNNER_OPTIONS,
        "hot_reload": reload_figures,
        "restart": restart_figures,
        "within_goal": reload_figures["order_log"]["gap_max_ms"] <= GOAL_GAP_SECONDS * 1000,
    }


def _row(name: str, figures: dict[str, Any], took: dict[str, float]) -> str:
    return (
        f"  {name:<28} {figures['handovers']:>9} {figures['gap_p50_ms']:>6.0f} ms {figures['gap_max_ms']:>6.0f} ms "
        f"{figures['spacing_ms']:>6.0f} ms {figures['overlaps']:>8} {took['p50_ms']:>6.0f} ms"
    )


def table(result: dict) -> list[str]:
    hot, restart = result["hot_reload"], result["restart"]
    verdict = "met" if result["within_goal"] else "MISSED"
    return [
        f"trading gap at a handover, the example bot on a {result['cycle_seconds']:g} s cycle (from the exchange's "
        "order log: first order of the new epoch minus last of the old, less the ordinary spacing between orders):",
        f"  {'':<28} {'handovers':>9} {'gap p50':>9} {'gap max':>9} {'spacing':>9} {'overlaps':>8} {'took p50':>9}",
        _row("hot reload (horus-runner)", hot["order_log"], hot["reload_took"]),
        _row("stop-then-start restart", restart["order_log"], restart["restart_took"]),
        f"  the runner's own gap_ms at a reload (released -> trading): p50 {hot['runner_gap']['p50_ms']:.0f} ms, "
        f"max {hot['runner_gap']['max_ms']:.0f} ms",
        f"  goal: a hot reload's longest gap within one cycle ({result['goal_gap_ms']} ms): {verdict}",
    ]
