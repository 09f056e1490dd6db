"""Services that cannot start again, or are not let to run: a port held by another program, a SIGKILL."""

from __future__ import annotations

import socket
import sys
import time

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Plan, Run, Scenario


def stop_for_a_deploy(run: Run) -> None:
    run.mark_failing()
    pids = [proc.pid for proc in run.service_processes()]
    run.stop_service_process()
    run.wait_service_gone(pids)


def wait_accepting(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def deploy_into_a_taken_port(run: Run, port: int) -> None:
    """A deploy with bad luck: it stops the service, another program binds the port, the service restarts."""
    stop_for_a_deploy(run)
    run.helper("port_holder.py", str(port), ready="held")
    run.start_service()


def address_in_use_uvicorn(run: Run) -> Plan:
    run.install("gateway.py")
    port = run.free_port()
    loop_log = run.log("gateway.out")

    def stray_takes_the_port() -> None:
        # Someone's debugging server gets the port in the gap between two runs of the loop (which is held
        # still meanwhile, so that the stray always wins the race it won in real life).
        loop = run.supervisor()
        loop.suspend()
        try:
            stop_for_a_deploy(run)
            argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
            run.detached(argv, run.log("stray.out"), cwd=run.dir)
            wait_accepting(port)
        finally:
            loop.resume()

    return Plan(
        service="gateway.py",
        params=blocks.service_params(
            run, "uvicorn", logger="uvicorn.error", noise=("deprecation",), style="uvicorn", port=port
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"), logs=[loop_log], process=run.pattern("gateway.py")
        ),
        output=loop_log,
        loop_message="gateway exited with code $?; restarting",
        steady_restarts=2,
        loop_pause=0.3,
        trigger=stray_takes_the_port,
    )


def address_in_use_werkzeug(run: Run) -> Plan:
    run.install("gateway.py")
    port = run.free_port()
    stderr = run.log("gateway.stderr")

    return Plan(
        service="gateway.py",
        params=blocks.service_params(run, "basic", logger="desk", style="werkzeug", port=port),
        monitor=blocks.monitor(blocks.alive(run.pattern("gateway.py")), logs=[stderr]),
        output=stderr,
        trigger=lambda: deploy_into_a_taken_port(run, port),
    )


def address_in_use_zap(run: Run) -> Plan:
    run.install("gateway.py")
    port = run.free_port()
    log = run.log("gateway.jsonl")

    return Plan(
        service="gateway.py",
        params=blocks.service_params(
            run, "zap", logger="gateway", log=log, noise=("zero_stats", "slow_request"), style="zap", port=port
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("gateway.py")),
        output=run.log("gateway.stderr"),
        trigger=lambda: deploy_into_a_taken_port(run, port),
    )


ROUTES = """routes:
  - market: ETH-PERP
    desk: desk-a
    max_position: 5
  - market: BTC-PERP
    desk: desk-b
    max_position: 2
"""


def config_typo(run: Run) -> Plan:
    run.install("signal_router.py")
    config = run.path("router.yaml")
    config.write_text(ROUTES)
    loop_log = run.log("router.log")

    def operator_edits_the_config() -> None:
        # Edited by hand on the host (not in git), then the service restarted to read it.
        config.write_text(ROUTES.replace("    max_position: 2\n", "    max_position: 2 units: contracts\n"))
        stop_for_a_deploy(run)

    return Plan(
        service="signal_router.py",
        params=blocks.service_params(
            run, "asctime", logger="router", noise=("deprecation", "zero_stats"), config_file=str(config)
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "routed-*.json"), logs=[loop_log], process=run.pattern("signal_router.py")
        ),
        output=loop_log,
        loop_message="router exited with code $?, restarting",
        steady_restarts=2,
        trigger=operator_edits_the_config,
    )


def killed_in_shell_loop(run: Run) -> Plan:
    run.install("market_maker.py")
    loop_log = run.log("mm.log")
    program = run.pattern("market_maker.py")

    def cron_kills_it() -> None:
        run.mark_failing()
        run.helper("reaper.py", program, ready="reaping")

    return Plan(
        service="market_maker.py",
        params=blocks.service_params(run, "asctime", logger="mm", noise=("zero_stats", "deprecation", "retry_ok")),
        monitor=blocks.monitor(blocks.artifacts(run.out, "quote-*.json"), logs=[loop_log], process=program),
        output=loop_log,
        loop_message="market_maker.py crashed with exit code $?. Respawning..",
        steady_restarts=2,
        trigger=cron_kills_it,
    )


def gunicorn_workers_killed(run: Run) -> Plan:
    run.install("gunicorn_like.py")
    log = run.log("gunicorn.error.log")
    port = run.free_port()
    pid_file = run.path("gunicorn.pid")

    def cron_kills_the_workers() -> None:
        run.mark_failing()
        run.helper("reaper.py", "--children-of", str(pid_file), ready="reaping")

    return Plan(
        service="gunicorn_like.py",
        params=blocks.service_params(
            run, "gunicorn", logger="gunicorn.error", log=log, port=port, pid_file=str(pid_file), workers=2
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"), logs=[log], process=run.pattern("gunicorn_like.py")
        ),
        output=run.log("gunicorn.stderr"),
        trigger=cron_kills_the_workers,
    )


SCENARIOS = [
    Scenario(
        "address-in-use-uvicorn",
        "address_in_use",
        "address already in use",
        address_in_use_uvicorn,
        "While its shell loop sleeps between runs, a stray http.server takes the gateway's port; uvicorn's "
        "bind error at every restart, and /health answers 404 from the stray.",
    ),
    Scenario(
        "address-in-use-werkzeug",
        "address_in_use",
        "already in use",
        address_in_use_werkzeug,
        "A deploy restarts the Flask development server into a port another program holds; it exits.",
    ),
    Scenario(
        "address-in-use-zap",
        "address_in_use",
        "bind: address already in use",
        address_in_use_zap,
        "A Go-style gateway restarted into a taken port logs its fatal zap line and exits.",
    ),
    Scenario(
        "config-typo",
        "import_or_config_error",
        "mapping values are not allowed here",
        config_typo,
        "A hand edit leaves a YAML config that does not parse; PyYAML's ScannerError at every restart.",
    ),
    Scenario(
        "killed-in-shell-loop",
        "killed",
        "exit code 137",
        killed_in_shell_loop,
        "A stray cron SIGKILLs the bot as soon as it starts; sh says 'Killed', the loop says exit code 137.",
    ),
    Scenario(
        "gunicorn-workers-killed",
        "killed",
        "was sent SIGKILL",
        gunicorn_workers_killed,
        "A clean-up cron SIGKILLs every worker as it boots; the arbiter says so, in gunicorn's words.",
    ),
]
