"""The order journal's cost per order, and how long a reconcile with the broker takes.

Per order: a real OrderJournal (SQLite in WAL, ``synchronous=FULL``) in a temporary directory on this
machine's disk, a fresh file for every case and repeat. Each order is timed on its own with perf_counter:

- intent to sent: ``journal.intend(...)`` then ``journal.mark_sent(cid)``, two committed, fsynced
  transactions: what the journal adds before an order's bytes may leave;
- the full life: intend, sent, acked, filled, four transactions;
- ``orders.submit()`` against an in-process ``send`` that answers "filled" at once (no network), with and
  without a running Control's ``permit()``: the SDK's own cost per order, three transactions (the answer is
  recorded in one);
- the same ``submit()`` with its journal on tmpfs (/dev/shm), where an fsync costs nothing: what is left is
  the CPU (Python and SQLite), and the difference is the disk;
- the floor: appending 128 bytes to a file beside the journal and fsyncing it, once per sample: what one
  durable write costs on this disk, whatever writes it.

"written" is what the process had written to storage during the case (Linux's /proc/self/io), per order,
the journal's creation included: SQLite writes whole pages to the WAL, several per commit (the order's row,
its indexes, its event and the counter), and copies them into the database at each checkpoint.

The first WARM_UP orders of each journal are not counted (the WAL file and SQLite's caches are made then).
The figures are p50, p99 and max over ORDERS (or LIFE_ORDERS) orders x repeats.

Reconcile: a journal of RECONCILE_OPEN_ORDERS open orders (a quarter partly filled) and the orders that
filled, so that the broker's report has RECONCILE_FILLS fills since the checkpoint; of the filled orders,
FILLS_WHILE_DOWN are still ACKED in the journal (their fills came while the bot was down), and the broker's
positions include them. It is a reconcile on demand, in the epoch the orders were placed in. Timed: reading
the known orders back from the journal (``journal.orders()``), the pure ``reconcile()`` (the broker's side
already as BrokerOrder and BrokerFill), and ``run_reconcile()`` over async fetchers that return the same data
as JSON-like dicts (so it parses them too). Each result is checked: clean, complete, every open order
matched, every fill while down found; a reconcile that gave up early would be fast and wrong.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import quiet_sdk_log

SDK = Path(__file__).resolve().parents[1] / "sdk" / "src"
ORDERS = 2_000  # intent -> sent, per repeat
LIFE_ORDERS = 1_000  # the full life and each submit() case, per repeat
WARM_UP = 20
RECONCILE_OPEN_ORDERS = 1_000
RECONCILE_FILLS = 10_000
FILLS_WHILE_DOWN = 50
RECONCILE_SAMPLES_PER_REPEAT = 2
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOGE-USD", "AVAX-USD", "DOT-USD")
TMPFS = Path("/dev/shm")

# The journal must cost little beside the round trip it guards: an order to a major exchange's REST API
# takes some 20 to 200 ms. So: intent to sent p50 within 5 ms, p99 within 50 ms.
INTENT_TO_SENT_GOAL_P50_MS = 5.0
INTENT_TO_SENT_GOAL_P99_MS = 50.0
# A restart trades only once its reconcile is done (horus's trading check allows 120 s by default): the SDK's
# share should be small beside fetching 11,000 items from a broker.
RECONCILE_GOAL_MS = 1_000.0


def _sdk() -> None:
    if str(SDK) not in sys.path:
        sys.path.insert(0, str(SDK))


def _percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was measured."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _summary_ms(seconds: list[float]) -> dict[str, Any]:
    return {
        "samples": len(seconds),
        "p50_ms": round(_percentile(seconds, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(seconds, 0.99) * 1000, 3),
        "max_ms": round(max(seconds) * 1000, 3),
        "mean_ms": round(statistics.fmean(seconds) * 1000, 3),
    }


# -- per order ---------------------------------------------------------------------------------------------


async def _send_filled(cid: str, symbol: str, side: str, quantity: float, type: str, price: float | None) -> Any:
    """An exchange in the process that fills every order at once."""
    return {"client_order_id": cid, "order_id": f"x-{cid}", "status": "filled", "filled_quantity": quantity,
            "avg_price": 50_000.0}  # fmt: skip


async def _lookup_nothing(cid: str) -> Any:
    return None


def _time_each(orders: int, one: Callable[[int], Any]) -> list[float]:
    for n in range(WARM_UP):
        one(-1 - n)
    took = []
    for n in range(orders):
        start = time.perf_counter()
        one(n)
        took.append(time.perf_counter() - start)
    return took


def _floor(directory: Path, orders: int) -> tuple[list[float], int]:
    path = directory / "floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:

        def one(_: int) -> None:
            os.write(fd, b"x" * 128)
            os.fsync(fd)

        return _time_each(orders, one), 0
    finally:
        os.close(fd)


def _intent_to_sent(directory: Path, orders: int) -> tuple[list[float], int]:
    from horus_sdk.journal import OrderJournal, OrderState

    with OrderJournal(directory / "orders.db") as journal:

        def one(_: int) -> None:
            entry = journal.intend("BTC-USD", "buy", 0.1)
            journal.mark_sent(entry.client_order_id)

        took = _time_each(orders, one)
        return took, sum(1 for e in journal.orders() if e.state is not OrderState.SENT)


def _full_life(directory: Path, orders: int) -> tuple[list[float], int]:
    from horus_sdk.journal import OrderJournal, OrderState

    with OrderJournal(directory / "orders.db") as journal:

        def one(_: int) -> None:
            cid = journal.intend("BTC-USD", "buy", 0.1).client_order_id
            journal.mark_sent(cid)
            journal.mark_acked(cid, f"x-{cid}")
            journal.record_fill(cid, 0.1, 50_000.0)

        took = _time_each(orders, one)
        return took, sum(1 for e in journal.orders() if e.state is not OrderState.FILLED)


def _submit(directory: Path, orders: int, *, with_control: bool) -> tuple[list[float], int]:
    from horus_sdk import Control
    from horus_sdk.journal import OrderJournal, OrderState
    from horus_sdk.orders import submit

    async def main() -> tuple[list[float], int]:
        control = Control(directory / "control") if with_control else None
        if control is not None:
            control.start()
            control.reconciled(positions={})
        try:
            with OrderJournal(directory / "orders.db") as journal:
                took = []
                not_filled = 0
                for n in range(WARM_UP + orders):
                    start = time.perf_counter()
                    entry = await submit(
                        journal, _send_filled, _lookup_nothing, symbol="BTC-USD", side="buy", quantity=0.1,
                        control=control,
                    )  # fmt: skip
                    elapsed = time.perf_counter() - start
                    if n >= WARM_UP:
                        took.append(elapsed)
                    not_filled += entry.state is not OrderState.FILLED
                return took, not_filled
        finally:
            if control is not None:
                control.stop()

    return asyncio.run(main())


# (name, transactions committed per order, on tmpfs, measure)
_CASES: tuple[tuple[str, int, bool, Callable[[Path, int], tuple[list[float], int]]], ...] = (
    ("floor: append 128 B to a file and fsync it", 1, False, _floor),
    ("intend + mark_sent (intent to sent)", 2, False, _intent_to_sent),
    ("full life: intend, sent, acked, filled", 4, False, _full_life),
    ("submit(), send answers at once", 3, False, lambda d, n: _submit(d, n, with_control=False)),
    ("submit(), with a running Control's permit()", 3, False, lambda d, n: _submit(d, n, with_control=True)),
    ("submit(), journal on tmpfs (no fsync cost)", 3, True, lambda d, n: _submit(d, n, with_control=False)),
)


def _written_bytes() -> int | None:
    """What this process has had written to storage so far (Linux's /proc/self/io), None where unknown."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def per_order(repeats: int, orders: int, life_orders: int) -> dict[str, Any]:
    _sdk()
    samples: dict[str, list[float]] = {name: [] for name, *_ in _CASES}
    wrong: dict[str, int] = dict.fromkeys(samples, 0)
    written: dict[str, list[float]] = {name: [] for name in samples}  # bytes per order, by repeat
    skipped: dict[str, str] = {}
    disk_root = Path(tempfile.gettempdir())
    with quiet_sdk_log():
        for _ in range(repeats):  # the cases take turns, so a slow spell of the disk is shared among them
            for name, commits, on_tmpfs, measure in _CASES:
                root = TMPFS if on_tmpfs else disk_root
                if on_tmpfs and not TMPFS.is_dir():
                    skipped[name] = f"{TMPFS} is not here"
                    continue
                count = orders if commits <= 2 else life_orders
                with tempfile.TemporaryDirectory(prefix="horus-journal-bench-", dir=root) as tmp:
                    before = _written_bytes()
                    took, bad = measure(Path(tmp), count)
                    after = _written_bytes()
                if before is not None and after is not None:
                    written[name].append((after - before) / (count + WARM_UP))
                samples[name] += took
                wrong[name] += bad
    return {
        "orders_per_repeat": orders,
        "life_orders_per_repeat": life_orders,
        "repeats": repeats,
        "warm_up_orders": WARM_UP,
        "directory": str(disk_root),
        "goal_p50_ms": INTENT_TO_SENT_GOAL_P50_MS,
        "goal_p99_ms": INTENT_TO_SENT_GOAL_P99_MS,
        "cases": {
            name: {
                "commits_per_order": commits,
                "on_tmpfs": on_tmpfs,
                **(_summary_ms(samples[name]) if samples[name] else {"samples": 0, "skipped": skipped.get(name)}),
                "written_kb_per_order": round(statistics.median(written[name]) / 1024, 1) if written[name] else None,
                "orders_not_as_expected": wrong[name],
            }
            for name, commits, on_tmpfs, _ in _CASES
        },
    }


# -- reconcile ---------------------------------------------------------------------------------------------


def _build_journal(journal: Any, open_orders: int, fills: int, while_down: int) -> dict[str, Any]:
    """Fill ``journal`` with orders, and make a broker that agrees but for ``while_down`` orders filled while
    the bot was down.

    Open orders: 1.0 each, every fourth with 0.25 filled (one fill). Filled orders: 1.0 each, in two fills of
    0.5, as many as make ``fills`` fills in all. Quantities are exact in binary, so the sums are exact too."""
    from horus_sdk.reconcile import BrokerFill, BrokerOrder

    broker_orders: list[BrokerOrder] = []
    broker_fills: list[BrokerFill] = []
    known_positions: dict[str, float] = dict.fromkeys(SYMBOLS, 0.0)
    broker_positions: dict[str, float] = dict.fromkeys(SYMBOLS, 0.0)
    partly = list(range(0, open_orders, 4))
    remainder = fills - len(partly)
    filled_orders = (remainder + 1) // 2  # the last one fills in one go when the fills left are odd
    if remainder < 0 or filled_orders < while_down:
        raise ValueError(f"cannot make {fills} fills from {open_orders} open orders ({while_down} while down)")
    fill_ids = iter(range(1, fills + 1))

    def fill(cid: str, symbol: str, side: str, quantity: float) -> None:
        broker_fills.append(BrokerFill(f"f{next(fill_ids)}", cid, symbol, side, quantity, 50_000.0, None))
        broker_positions[symbol] += quantity if side == "buy" else -quantity

    with journal.transaction():  # one commit: building it is not measured
        for n in range(open_orders + filled_orders):
            symbol, side = SYMBOLS[n % len(SYMBOLS)], ("buy", "sell")[n // len(SYMBOLS) % 2]
            cid = journal.intend(symbol, side, 1.0).client_order_id
            journal.mark_sent(cid)
            journal.mark_acked(cid, f"x-{n}")
            if n < open_orders:
                done = 0.25 if n % 4 == 0 else 0.0
                if done:
                    fill(cid, symbol, side, done)
                    journal.record_fill(cid, done, 50_000.0)
                    known_positions[symbol] += done if side == "buy" else -done
                broker_orders.append(BrokerOrder(cid, f"x-{n}", symbol, side, 1.0, done, "open"))
                continue
            if remainder % 2 and n == open_orders + filled_orders - 1:
                fill(cid, symbol, side, 1.0)
            else:
                fill(cid, symbol, side, 0.5)
                fill(cid, symbol, side, 0.5)
            if n < open_orders + filled_orders - while_down:
                journal.record_fill(cid, 1.0, 50_000.0)
                known_positions[symbol] += 1.0 if side == "buy" else -1.0
    return {
        "orders": open_orders + filled_orders,
        "open_orders": broker_orders,
        "fills": broker_fills,
        "known_positions": known_positions,
        "broker_positions": broker_positions,
    }


def _as_json(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def reconcile_cost(repeats: int, open_orders: int, fills: int, while_down: int) -> dict[str, Any]:
    _sdk()
    from horus_sdk.journal import OrderJournal
    from horus_sdk.reconcile import BrokerReport, reconcile, run_reconcile

    took: dict[str, list[float]] = {"journal.orders()": [], "reconcile()": [], "run_reconcile()": []}
    outcomes: list[dict[str, Any]] = []
    samples = max(1, repeats) * RECONCILE_SAMPLES_PER_REPEAT

    def outcome(result: Any) -> dict[str, Any]:
        return {"complete": result.complete, "clean": result.clean, "counts": dict(result.counts),
                "fills_to_apply": len(result.fills_to_apply), "to_cancel": len(result.to_cancel)}  # fmt: skip

    # A reconcile on demand, in the epoch the orders were placed in: at a restart, a new epoch's reconcile would
    # cancel every one of them as stale, which is another workload (and a cancel per order at the broker).
    with (
        tempfile.TemporaryDirectory(prefix="horus-reconcile-bench-") as tmp,
        OrderJournal(Path(tmp) / "orders.db") as journal,
    ):
        data = _build_journal(journal, open_orders, fills, while_down)
        report = BrokerReport(data["open_orders"], data["broker_positions"], data["fills"])
        orders_json = [_as_json(o) for o in data["open_orders"]]
        fills_json = [_as_json(f) for f in data["fills"]]

        async def fetch_open_orders() -> Any:
            return orders_json

        async def fetch_positions() -> Any:
            return dict(data["broker_positions"])

        async def fetch_fills_since(checkpoint: Any) -> Any:
            return fills_json

        async def main() -> None:
            for _ in range(samples):
                start = time.perf_counter()
                known = journal.orders()
                took["journal.orders()"].append(time.perf_counter() - start)

                start = time.perf_counter()
                result = reconcile(known, data["known_positions"], report, current_epoch=journal.epoch)
                took["reconcile()"].append(time.perf_counter() - start)
                outcomes.append(outcome(result))

                start = time.perf_counter()
                result = await run_reconcile(
                    fetch_open_orders, fetch_positions, fetch_fills_since, 0, known, data["known_positions"],
                    journal.epoch,
                )  # fmt: skip
                took["run_reconcile()"].append(time.perf_counter() - start)
                outcomes.append(outcome(result))

        asyncio.run(main())
    expected_matched = open_orders + sum(1 for q in data["broker_positions"].values() if q != 0)
    return {
        "journal_orders": data["orders"],
        "open_orders": open_orders,
        "fills": len(data["fills"]),
        "fills_while_down": while_down,
        "samples": samples,
        "goal_ms": RECONCILE_GOAL_MS,
        "outcome": outcomes[0],
        "every_run_as_expected": all(
            o["complete"]
            and o["clean"]
            and o["counts"]["matched"] == expected_matched
            and o["counts"]["fill_while_down"] == while_down
            and o["fills_to_apply"] == while_down
            and o["to_cancel"] == 0
            for o in outcomes
        ),
        "cases": {
            name: {
                "samples": len(values),
                "median_ms": round(statistics.median(values) * 1000, 2),
                "min_ms": round(min(values) * 1000, 2),
                "max_ms": round(max(values) * 1000, 2),
            }
            for name, values in took.items()
        },
    }


# -- the scenario ------------------------------------------------------------------------------------------


def run(
    repeats: int,
    *,
    orders: int = ORDERS,
    life_orders: int = LIFE_ORDERS,
    open_orders: int = RECONCILE_OPEN_ORDERS,
    fills: int = RECONCILE_FILLS,
    fills_while_down: int = FILLS_WHILE_DOWN,
) -> dict:
    repeats = max(1, repeats)
    return {
        "scenario": "journal",
        "per_order": per_order(repeats, orders, life_orders),
        "reconcile": reconcile_cost(repeats, open_orders, fills, fills_while_down),
    }


def _per_order_missed(case: dict[str, Any], p: dict[str, Any]) -> str:
    missed = []
    if case["p50_ms"] > p["goal_p50_ms"]:
        missed.append(f"p50 over {p['goal_p50_ms']:g} ms")
    if case["p99_ms"] > p["goal_p99_ms"]:
        missed.append(f"p99 over {p['goal_p99_ms']:g} ms")
    return f"  MISSED ({', '.join(missed)})" if missed else ""


def _kilobytes(per_order: float | None) -> str:
    return "?" if per_order is None else f"{per_order:.1f} KB"


def table(result: dict) -> list[str]:
    p = result["per_order"]
    lines = [
        f"the order journal per order, each timed alone ({p['orders_per_repeat']:,} orders x {p['repeats']} for "
        f"intent->sent, {p['life_orders_per_repeat']:,} x {p['repeats']} for the others; SQLite WAL, "
        f"synchronous=FULL, in {p['directory']}; goal for intent->sent: p50 <= {p['goal_p50_ms']:g} ms, "
        f"p99 <= {p['goal_p99_ms']:g} ms):",
        f"  {'case':<46} {'commits':>7} {'p50':>9} {'p99':>9} {'max':>9} {'mean':>9} {'written':>11}",
    ]
    for name, case in p["cases"].items():
        if not case["samples"]:
            lines.append(f"  {name:<46} not measured: {case.get('skipped')}")
            continue
        verdict = _per_order_missed(case, p) if name.startswith("intend + mark_sent") else ""
        if case["orders_not_as_expected"]:
            verdict += f"  WRONG ({case['orders_not_as_expected']} orders did not end as they should)"
        lines.append(
            f"  {name:<46} {case['commits_per_order']:>7} {case['p50_ms']:>6.2f} ms {case['p99_ms']:>6.2f} ms "
            f"{case['max_ms']:>6.1f} ms {case['mean_ms']:>6.2f} ms {_kilobytes(case['written_kb_per_order']):>11}"
            f"{verdict}"
        )
    r = result["reconcile"]
    o = r["outcome"]
    lines += [
        "",
        f"reconcile: {r['open_orders']:,} open orders and {r['fills']:,} fills, known orders from a journal of "
        f"{r['journal_orders']:,} ({r['fills_while_down']} filled while down), on demand; "
        f"median of {r['samples']} runs, goal <= {r['goal_ms']:g} ms:",
        f"  {'step':<46} {'median':>10} {'min':>10} {'max':>10}",
    ]
    for name, case in r["cases"].items():
        verdict = ""
        if name != "journal.orders()" and case["median_ms"] > r["goal_ms"]:
            verdict = f"  MISSED (over {r['goal_ms']:g} ms)"
        lines.append(
            f"  {name:<46} {case['median_ms']:>7.1f} ms {case['min_ms']:>7.1f} ms {case['max_ms']:>7.1f} ms{verdict}"
        )
    found = ", ".join(f"{count} {kind}" for kind, count in o["counts"].items() if count)
    lines.append(
        f"  found: {found}; {'clean' if o['clean'] else 'NOT clean'}"
        + ("" if r["every_run_as_expected"] else "  WRONG (a run did not find what the data holds)")
    )
    return lines
