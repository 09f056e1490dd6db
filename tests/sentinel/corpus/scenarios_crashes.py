"""Exceptions in business code that nothing handles: the process ends, a thread dies, a task's exception
is never retrieved, or a poison record ends every restart."""

from __future__ import annotations

import sys

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Plan, Run, Scenario


def keyerror_ends_the_process(run: Run) -> Plan:
    run.install("pricer.py")
    stderr = run.log("pricer.log")
    return Plan(
        service="pricer.py",
        params=blocks.service_params(
            run, "basic", logger="pricer", noise=("deprecation", "traceback_ok", "zero_stats")
        ),
        monitor=blocks.monitor(blocks.alive(run.pattern("pricer.py")), logs=[stderr]),
        output=stderr,
    )


def thread_dies_structlog(run: Run) -> Plan:
    run.install("settlement.py")
    log = run.log("settlement.log")
    return Plan(
        service="settlement.py",
        params=blocks.service_params(run, "structlog", logger="settlement", log=log, noise=("zero_stats", "retry_ok")),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "settlement-*.json"), logs=[log], process=run.pattern("settlement.py")
        ),
        output=run.log("settlement.stderr"),
    )


def task_exception_never_retrieved(run: Run) -> Plan:
    run.install("consumer.py")
    log = run.log("marks-consumer.log")
    beat = run.path("consumer.heartbeat.json")
    return Plan(
        service="consumer.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="marks",
            log=log,
            noise=("traceback_ok", "deprecation"),
            heartbeat_file=str(beat),
            loud_after=["ws_late"],
        ),
        monitor=blocks.monitor(
            blocks.heartbeat(beat, channels={"consume": 1.5}), logs=[log], process=run.pattern("consumer.py")
        ),
        output=run.log("marks-consumer.stderr"),
    )


def poison_record_in_loop(run: Run) -> Plan:
    run.install("reconciler.py", "healthcheck.py")
    log = run.log("reconciler.json.log")
    status = run.out / "status.json"
    return Plan(
        service="reconciler.py",
        params=blocks.service_params(
            run,
            "jsonlogger",
            logger="reconciler",
            log=log,
            noise=("zero_stats", "traceback_ok"),
            inbox=str(run.path("inbox.jsonl")),
            offset_file=str(run.path("inbox.offset")),
            status_file=str(status),
        ),
        monitor=blocks.monitor(
            blocks.command([sys.executable, str(run.app / "healthcheck.py"), str(status), "1.5"]),
            logs=[log, run.log("reconciler.out")],
            process=run.pattern("reconciler.py"),
        ),
        output=run.log("reconciler.out"),
        loop_message="reconciler exited with code $?, restarting",
        steady_restarts=2,
    )


SCENARIOS = [
    Scenario(
        "keyerror-ends-the-process",
        "unhandled_exception",
        "KeyError: 'best_bid'",
        keyerror_ends_the_process,
        "A halted market's quote lacks best_bid; the KeyError ends the process (Python's own traceback), "
        "beside a handled traceback logged all through the healthy period.",
    ),
    Scenario(
        "thread-dies-structlog",
        "unhandled_exception",
        "ZeroDivisionError",
        thread_dies_structlog,
        "The settlement thread divides by a zero notional and dies; its traceback is one structlog JSON line, "
        "and the main thread keeps warning about pending fills.",
    ),
    Scenario(
        "task-exception-never-retrieved",
        "unhandled_exception",
        "could not convert string to float",
        task_exception_never_retrieved,
        "A forgotten asyncio task raises ValueError on a mark of 'N/A'; asyncio reports it when the task is "
        "collected, and the heartbeat's consume channel stops.",
    ),
    Scenario(
        "poison-record-in-loop",
        "unhandled_exception",
        "unsupported operand type(s)",
        poison_record_in_loop,
        "A record with a null fee ends the reconciler at every restart (TypeError, python-json-logger).",
    ),
]
