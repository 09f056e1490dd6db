"""Services that stop without a word: blocked event loops and awaits (with and without horus-sdk), a read
that never returns, a spin at full CPU, and silences that nothing in the evidence explains."""

from __future__ import annotations

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Plan, Run, Scenario
from tests.sentinel.corpus.scenarios_database import kill_db, set_db_mode, start_db
from tests.sentinel.corpus.scenarios_network import break_api, start_api


def service_pid(run: Run) -> str:
    """The evidence a hung process leaves when nothing says why: the process itself, by its pid."""
    return f"pid {run.service_pid()}"


def sdk_blocked_call(run: Run) -> Plan:
    run.install("sdk_bot.py")
    api = start_api(run)
    log = run.log("bot.log")
    crash_dir = run.path("crash")
    crash_dir.mkdir()
    beat = run.path("bot.heartbeat.json")
    return Plan(
        service="sdk_bot.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="bot",
            log=log,
            noise=("zero_stats", "deprecation"),
            mode="blocked_call",
            order_url=f"http://127.0.0.1:{api.port}/v1/orders",
            pending_file=str(run.path("pending-order")),
            heartbeat_file=str(beat),
            crash_dir=str(crash_dir),
        ),
        monitor=blocks.monitor(
            blocks.heartbeat(beat, crash_dir=crash_dir),
            logs=[log, run.log("loop.log")],
            process=run.pattern("sdk_bot.py"),
        ),
        output=run.log("loop.log"),
        loop_message="bot exited with $?; restarting",
        steady_restarts=2,
        trigger=lambda: break_api(run, "silent"),
        healthy_looks=6,
    )


def sdk_warns_of_sleep(run: Run) -> Plan:
    run.install("sdk_bot.py")
    log = run.log("bot.log")
    crash_dir = run.path("crash")
    crash_dir.mkdir()
    return Plan(
        service="sdk_bot.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="bot",
            log=log,
            noise=("slow_request", "zero_stats"),
            mode="sleep_warn",
            warn_after=0.4,
            heartbeat_file=str(run.path("bot.heartbeat.json")),
            crash_dir=str(crash_dir),
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("sdk_bot.py"), crash_dir=crash_dir),
        output=run.log("bot.stderr"),
    )


def sdk_await_never_returns(run: Run) -> Plan:
    run.install("sdk_bot.py")
    stream_port = run.free_port()
    run.helper("port_holder.py", str(stream_port), ready="held")  # the fills stream: accepts, never writes
    log = run.log("fills.log")
    crash_dir = run.path("crash")
    crash_dir.mkdir()
    beat = run.path("fills.heartbeat.json")
    return Plan(
        service="sdk_bot.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="fills",
            log=log,
            noise=("retry_ok", "zero_stats"),
            mode="await_stream",
            # The watchdog acts before Horus would: its record exists by the time the channel is late.
            warn_after=0.4,
            kill_after=0.8,
            stream_port=stream_port,
            heartbeat_file=str(beat),
            crash_dir=str(crash_dir),
        ),
        monitor=blocks.monitor(
            blocks.heartbeat(beat, channels={"fills": 1.5}, crash_dir=crash_dir),
            logs=[log, run.log("loop.log")],
            process=run.pattern("sdk_bot.py"),
        ),
        output=run.log("loop.log"),
        loop_message="fills bot exited with $?; restarting",
        steady_restarts=1,
    )


def hung_in_socket_read(run: Run) -> Plan:
    run.install("quote_reader.py")
    feed = start_db(run)
    log = run.log("quotes.log")
    return Plan(
        service="quote_reader.py",
        params=blocks.service_params(
            run, "asctime", logger="quotes", log=log, noise=("timeout_retry", "zero_stats"), feed_port=feed.port
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("quote_reader.py")),
        output=run.log("quotes.stderr"),
        trigger=lambda: set_db_mode(run, "silent"),
    )


def await_never_set(run: Run) -> Plan:
    run.install("ledger.py")
    log = run.log("ledger.log")
    return Plan(
        service="ledger.py",
        params=blocks.service_params(run, "structlog", logger="ledger", log=log, noise=("zero_stats", "deprecation")),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("ledger.py")),
        output=run.log("ledger.stderr"),
    )


def spins_reconnecting(run: Run) -> Plan:
    run.install("risk_engine.py")
    feed = start_db(run)
    log = run.log("risk.log")
    return Plan(
        service="risk_engine.py",
        params=blocks.service_params(
            run, "gunicorn", logger="risk", log=log, noise=("memory_usage", "zero_stats"), feed_port=feed.port
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("risk_engine.py")),
        output=run.log("risk.stderr"),
        trigger=lambda: kill_db(run, feed),
    )


def silent_stop(run: Run) -> Plan:
    run.install("market_maker.py")
    log = run.log("collector.log")
    return Plan(
        service="market_maker.py",
        params=blocks.service_params(
            run, "asctime", logger="collector", log=log, noise=("zero_stats", "deprecation"), after_healthy="stop"
        ),
        monitor=blocks.monitor(blocks.artifacts(run.out, "quote-*.json"), logs=[log]),
        output=run.log("collector.stderr"),
    )


def stops_after_scary_healthy_period(run: Run) -> Plan:
    run.install("market_maker.py")
    log = run.log("mm.log")
    return Plan(
        service="market_maker.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="mm",
            log=log,
            noise=("statsd", "traceback_ok", "timeout_retry", "retry_ok", "oom_in_path", "deprecation"),
            after_healthy="stop",
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "quote-*.json"), logs=[log], process=run.pattern("market_maker.py")
        ),
        output=run.log("mm.stderr"),
    )


def quiet_exit(run: Run) -> Plan:
    run.install("market_maker.py")
    log = run.log("quoter.log")
    return Plan(
        service="market_maker.py",
        params=blocks.service_params(
            run, "jsonlogger", logger="quoter", log=log, noise=("retry_ok", "memory_usage"), after_healthy="exit"
        ),
        monitor=blocks.monitor(
            blocks.fresh_file(run.out / "last-quote.json"), logs=[log], process=run.pattern("market_maker.py")
        ),
        output=run.log("quoter.stderr"),
    )


SCENARIOS = [
    Scenario(
        "sdk-blocked-sync-call",
        "event_loop_blocked",
        "place_order",
        sdk_blocked_call,
        "place_order makes a synchronous requests.post without a timeout; LoopWatchdog records where the loop "
        "is stuck and ends the process, at every restart of its shell loop.",
    ),
    Scenario(
        "sdk-warns-of-sleep",
        "event_loop_blocked",
        "refresh_positions",
        sdk_warns_of_sleep,
        "time.sleep(3600) inside a coroutine; LoopWatchdog only warns (with the stack) and the log stops.",
    ),
    Scenario(
        "sdk-await-never-returns",
        "await_never_returned",
        "stream_fills",
        sdk_await_never_returns,
        "stream_fills awaits a read that never comes; the heartbeat channel stalls and LoopWatchdog records "
        "the awaiting task before ending the process.",
    ),
    Scenario(
        "hung-in-socket-read",
        "hung",
        service_pid,
        hung_in_socket_read,
        "The feed stops answering but keeps the connection; recv() without a timeout never returns, the log "
        "stops, and nothing says why (py-spy shows where).",
        evidence_with_py_spy="read_quote",
    ),
    Scenario(
        "await-never-set",
        "hung",
        service_pid,
        await_never_set,
        "The ledger awaits an event nothing will set; the loop is idle. Only py-spy can tell it is an await "
        "that does not return.",
        cause_with_py_spy="await_never_returned",
        evidence_with_py_spy="ledger.py",
    ),
    Scenario(
        "spins-reconnecting",
        "busy_loop",
        "cpu",
        spins_reconnecting,
        "The exposure feed dies and the engine reconnects in a loop with no pause and no log, at full CPU.",
        evidence_with_py_spy="reconnect",
    ),
    Scenario(
        "silent-stop",
        "unknown",
        "quote-",
        silent_stop,
        "The collector stops writing and says nothing; its monitor names no process, only a log of routine "
        "lines. Nothing supports a cause.",
    ),
    Scenario(
        "stops-after-scary-healthy-period",
        "hung",
        service_pid,
        stops_after_scary_healthy_period,
        "The quoter stops and waits, saying nothing, after a healthy period full of errors, timeouts, "
        "tracebacks and an OOM in a path, all routine: none of them is why.",
    ),
    Scenario(
        "quiet-exit",
        "unknown",
        "last-quote.json",
        quiet_exit,
        "The quoter returns with status 0 and no word; its process is gone and nothing says why.",
    ),
]
