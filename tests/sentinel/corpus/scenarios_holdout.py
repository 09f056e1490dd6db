"""Hold-out scenarios: failures written apart from Sentinel's rules, to measure them on what they have not seen.

Each scenario is a real service (``services/holdout/``) writing a real log in a real library's format, with
an hour of routine history behind it (lines that look alarming but repeat all along, counts of zero), a
real failure (a refused connect, a bind on a held port, a full tmpfs, an allocation over ``ulimit -v``, a
bad commit in its git work tree, an HTTP 429 or 401 from a loopback API, a certificate for another host, a
lock held by another process, descriptors run out, a spin, a read that never returns), and the cause a
careful operator would name from that evidence, with a substring of the line that proves it. When nothing
says why, the honest answer is ``hung`` or ``unknown`` and must not be claimed as probable.

``SCENARIOS`` is the list the corpus test and ``bench/rootcause_accuracy.py`` collect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.sentinel.corpus.blocks import (
    alive,
    artifacts,
    command,
    fresh_file,
    heartbeat,
    http,
    monitor,
    port_open,
    sqlite_rows,
    stale_log,
    upstream,
)
from tests.sentinel.corpus.harness import SERVICES, Helper, Plan, Run, Scenario

__all__ = ["SCENARIOS"]

HOLDOUT = SERVICES / "holdout"
KIT = "holdout_kit.py"
WAIT_SECONDS = 15.0
NOBODY = 65534
TWO_DAYS = 2 * 86400


# -- building blocks ---------------------------------------------------------------------------------------


def _install(run: Run, *programs: str) -> None:
    run.install(*(f"holdout/{name}" for name in (KIT, *programs)))


def _helper(run: Run, script: str, *args: str, ready: str) -> Helper:
    # The harness starts helpers from services/helpers/; the hold-out ones live beside the hold-out services.
    return run.helper(f"../holdout/{script}", *args, ready=ready)


def _api(run: Run, *certificates: Path) -> Helper:
    """The loopback API (``exchange_api.py``), answering ``ok`` until :func:`_set_mode` says otherwise."""
    return _helper(run, "exchange_api.py", str(run.path("api.mode")), *map(str, certificates), ready="api.ready")


def _set_mode(run: Run, mode: str) -> None:
    run.path("api.mode").write_text(mode)


def _ready_value(run: Run, name: str) -> str:
    return run.path(name).read_text().strip()


def _wait_for_file(path: Path, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.01)


def _params(run: Run, log: Path | None, style: str, **more: object) -> dict[str, object]:
    return {"log_file": str(log) if log else None, "log_style": style, "tick_seconds": 0.1, **more}


def _python_format(fmt: str, datefmt: str | None = None) -> dict[str, object]:
    return {"log_format": fmt, "date_format": datefmt}


def _after_restarts(block: dict[str, object], looks: int = 8) -> dict[str, object]:
    """A monitor that calls a failure only after a few looks: time for the shell loop to start the new code
    and for it to fail, as it has by the time a production monitor (30 s between looks) notices."""
    return {**block, "min_failures_to_heal": looks}


def _restart(run: Run) -> None:
    """A deploy: SIGTERM to the running service; its shell loop starts the new code.

    It returns once a new process has been seen (or half a minute passed: new code that crashes at once may
    come and go unseen), so that Horus's detection, due a second later, never comes before the deploy went
    live: while the corpus runs its scenarios side by side, the loop's pause and Python's start-up can take
    several seconds.
    """
    pids = [proc.pid for proc in run.service_processes()]
    run.stop_service_process()
    run.wait_service_gone(pids)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and not [p for p in run.service_processes() if p.pid not in pids]:
        time.sleep(0.02)


def _git_tree(run: Run, files: dict[str, str], subject: str) -> None:
    """The service's work tree, its first commit two days old (long outside any change window)."""
    for name, text in files.items():
        target = run.app / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    run.git("init", "-q", "-b", "main")
    run.git("add", "-A")
    run.git("commit", "-q", "-m", subject, at=time.time() - TWO_DAYS)


def _commit(run: Run, files: dict[str, str], subject: str) -> None:
    for name, text in files.items():
        (run.app / name).write_text(text)
    run.git("add", *files)
    run.git("commit", "-q", "-m", subject)


def _pid_of_service(run: Run) -> str:
    return str(run.service_pid())


# -- dependencies refused ----------------------------------------------------------------------------------


def build_redis_refused(run: Run) -> Plan:
    _install(run, "quote_cache.py")
    redis = _helper(run, "redis_stub.py", ready="redis.ready")
    port = run.free_port()
    log = run.log("quote-cache.log")
    fmt = _python_format(
        "%(asctime)s.%(msecs)03d %(process)d %(levelname)-8s %(name)s [%(threadName)s] %(message)s", "%Y-%m-%d %H:%M:%S"
    )

    def redis_dies() -> None:
        run.mark_failing()
        redis.kill()

    return Plan(
        service="quote_cache.py",
        params=_params(run, log, "python", port=port, redis_port=redis.port, **fmt),
        monitor=monitor(port_open(port), logs=[log], process=run.pattern("quote_cache.py"), depends_on=["redis-cache"]),
        output=run.log("quote-cache.out"),
        others=[upstream("redis-cache", port_open(redis.port))],
        upstreams=["redis-cache"],
        trigger=redis_dies,
    )


def build_postgres_refused(run: Run) -> Plan:
    _install(run, "ledger_export.py")
    postgres = _helper(run, "pg_stub.py", ready="pg.ready")
    log = run.log("ledger-exporter.log")

    def postgres_dies() -> None:
        run.mark_failing()
        postgres.kill()

    return Plan(
        service="ledger_export.py",
        params=_params(
            run, log, "logrus_text", pg_port=postgres.port, pushgateway_port=run.free_port(), out_dir=str(run.out)
        ),
        monitor=monitor(artifacts(run.out, "journal-*.parquet"), logs=[log], process=run.pattern("ledger_export.py")),
        output=run.log("ledger-exporter.out"),
        trigger=postgres_dies,
    )


# -- the port is held ---------------------------------------------------------------------------------------


def build_port_held(run: Run) -> Plan:
    _install(run, "ws_gateway.py")
    port = run.free_port()
    log = run.log("gateway.log")
    output = run.log("gateway-supervisor.out")

    def old_console_takes_the_port() -> None:
        run.mark_failing()
        ready = run.path("squatter.ready")
        # Started before the deploy's restart, it binds the moment the old gateway lets go.
        run.detached(
            [sys.executable, str(HOLDOUT / "port_squatter.py"), str(port), str(ready)], run.log("admin-console.out")
        )
        _wait_for_file(Path(f"{ready}.waiting"))
        _restart(run)
        _wait_for_file(ready)

    return Plan(
        service="ws_gateway.py",
        params=_params(run, log, "pino", port=port),
        monitor=_after_restarts(
            monitor(http(f"http://127.0.0.1:{port}/healthz"), logs=[log, output], process=run.pattern("ws_gateway.py"))
        ),
        output=output,
        loop_message="gateway exited with code $?; restarting in 0.2 s",
        loop_pause=0.2,
        trigger=old_console_takes_the_port,
    )


# -- resources ----------------------------------------------------------------------------------------------


def build_disk_full(run: Run) -> Plan:
    spool = run.path("spool")
    run.mount_tmpfs(spool, "64k")
    _install(run, "tick_recorder.py")
    log = run.log("recorder.log")
    return Plan(
        service="tick_recorder.py",
        params=_params(run, log, "loguru", spool_dir=str(spool), snapshot_bytes=3000, every=0.25),
        monitor=monitor(artifacts(spool, "book-*.bin"), logs=[log], process=run.pattern("tick_recorder.py")),
        output=run.log("recorder.out"),
    )


def build_java_heap(run: Run) -> Plan:
    _install(run, "ingest_jvm.py")
    output = run.log("ingest-console.log")
    status = run.out / "consumer-status.json"
    flag = run.path("replay-requested")

    def replay_requested() -> None:
        run.mark_failing()
        flag.touch()

    return Plan(
        service="ingest_jvm.py",
        params=_params(
            run, None, "logback", status_file=str(status), replay_flag=str(flag), heap_bytes=64 * 1024 * 1024
        ),
        monitor=monitor(fresh_file(status, 1.0), logs=[output], process=run.pattern("ingest_jvm.py")),
        output=output,
        trigger=replay_requested,
    )


def build_memory_limit_loop(run: Run) -> Plan:
    _install(run, "risk_calc.py")
    log = run.log("risk.log")
    output = run.log("risk-supervisor.out")
    inbox = run.path("inbox")
    inbox.mkdir()

    def big_portfolio_arrives() -> None:
        run.mark_failing()
        (inbox / "portfolio-eod.json").write_text(json.dumps({"positions": 12_000}))

    return Plan(
        service="risk_calc.py",
        params=_params(run, log, "structlog", inbox=str(inbox), heartbeat=str(run.path("risk.hb"))),
        monitor=monitor(heartbeat(run.path("risk.hb"), 1.0), logs=[log, output], process=run.pattern("risk_calc.py")),
        output=output,
        loop_message="risk-calc exited with status $?; restarting in 0.5 s",
        loop_pause=0.5,
        ulimit="-v 600000",
        trigger=big_portfolio_arrives,
    )


def build_descriptors_exhausted(run: Run) -> Plan:
    _install(run, "ws_hub.py")
    port = run.free_port()
    log = run.log("hub.log")

    def subscribers_pile_up() -> None:
        run.mark_failing()
        _helper(run, "subscribers.py", str(port), "60", ready="subscribers.ready")

    return Plan(
        service="ws_hub.py",
        params=_params(run, log, "uvicorn", port=port),
        monitor=monitor(http(f"http://127.0.0.1:{port}/health"), logs=[log], process=run.pattern("ws_hub.py")),
        output=run.log("hub-supervisor.out"),
        loop_message="hub exited with status $?; restarting",
        loop_pause=1.0,
        ulimit="-n 64",
        trigger=subscribers_pile_up,
    )


def build_permission_after_rotation(run: Run) -> Plan:
    _install(run, "audit_trail.py")
    audit = run.path("audit")
    audit.mkdir()
    os.chown(audit, NOBODY, NOBODY)
    trail = audit / "trail.csv"
    log = run.log("audit.log")

    def logrotate_creates_root_file() -> None:
        # logrotate with "create 0600 root root": the old file moves aside, the new one is root's alone.
        run.mark_failing()
        trail.rename(audit / "trail.csv.1")
        trail.touch(mode=0o600)
        os.chown(trail, 0, 0)
        trail.chmod(0o600)

    return Plan(
        service="audit_trail.py",
        params=_params(run, log, "jsonlogger", trail=str(trail)),
        monitor=monitor(
            {"type": "artifact_growth", "file_size": str(trail), "window_seconds": 1.0},
            logs=[log],
            process=run.pattern("audit_trail.py"),
            user="nobody",
        ),
        output=run.log("audit.out"),
        trigger=logrotate_creates_root_file,
    )


# -- deploys ------------------------------------------------------------------------------------------------

PRICING_SETTINGS = """\
# Pricing settings: spreads in basis points, with per-market overrides.
spread_bps: 6
max_skew: 0.4
markets:
  - ETH-PERP
  - SOL-PERP
  - BTC-PERP
overrides:
  ETH-PERP:
    spread_bps: 5
  SOL-PERP:
    spread_bps: 8
"""
# The override's max_skew is indented one column too far: PyYAML's scanner refuses it.
PRICING_SETTINGS_BAD = PRICING_SETTINGS.replace(
    "  ETH-PERP:\n    spread_bps: 5\n  SOL-PERP:\n    spread_bps: 8\n",
    "  ETH-PERP:\n    spread_bps: 4\n  SOL-PERP:\n    spread_bps: 6\n     max_skew: 0.3\n",
)


def build_bad_yaml_commit(run: Run) -> Plan:
    _install(run, "pricing_api.py")
    _git_tree(
        run,
        {"config/settings.yaml": PRICING_SETTINGS, ".gitignore": "__pycache__/\n"},
        "pricing api: settings in config/settings.yaml",
    )
    port = run.free_port()
    log = run.log("gunicorn-error.log")

    def deploy() -> None:
        _commit(run, {"config/settings.yaml": PRICING_SETTINGS_BAD}, "pricing: tighten spreads for ETH and SOL")
        run.mark_failing()
        _restart(run)

    return Plan(
        service="pricing_api.py",
        params=_params(run, log, "gunicorn", port=port),
        monitor=_after_restarts(
            monitor(
                http(f"http://127.0.0.1:{port}/health"),
                logs=[log],
                process=run.pattern("pricing_api.py"),
                work_tree=run.app,
            )
        ),
        output=run.log("pricing-supervisor.out"),
        loop_message="pricing-api exited with status $?; restarting",
        loop_pause=0.2,
        trigger=deploy,
    )


LEDGER_SETTINGS = '''\
"""Where the ledger sync reads and writes."""

LEDGER_NAME = "desk-main"
LEDGER_DSN = "postgresql://ledger@127.0.0.1:5432/ledger"
'''
LEDGER_SETTINGS_FROM_ENV = '''\
"""Where the ledger sync reads and writes. Secrets come from the environment, never from git."""

import os

LEDGER_NAME = "desk-main"
LEDGER_DSN = os.environ["LEDGER_DSN"]
'''


def build_missing_env_var(run: Run) -> Plan:
    _install(run, "ledger_sync.py", "ledgerctl.py")
    _git_tree(
        run, {"ledger_settings.py": LEDGER_SETTINGS, ".gitignore": "__pycache__/\n"}, "ledger sync: first version"
    )
    port = run.free_port()
    log = run.log("ledger.log")
    output = run.log("ledger-supervisor.out")

    def deploy() -> None:
        _commit(
            run,
            {"ledger_settings.py": LEDGER_SETTINGS_FROM_ENV},
            "settings: read the ledger DSN from the environment (12-factor)",
        )
        run.mark_failing()
        _restart(run)

    return Plan(
        service="ledger_sync.py",
        params=_params(run, log, "loguru", port=port),
        monitor=_after_restarts(
            monitor(
                command([sys.executable, str(run.app / "ledgerctl.py"), str(port)]),
                logs=[log, output],
                process=run.pattern("ledger_sync.py"),
                work_tree=run.app,
            )
        ),
        output=output,
        loop_message="ledger-sync exited with code $?, restarting in 0.2 s",
        loop_pause=0.2,
        trigger=deploy,
    )


WATCH_SETTINGS = """\
# How often the funding watcher polls, and which markets it watches.
poll_seconds = 0.1
markets = ["ETH-PERP", "BTC-PERP", "SOL-PERP"]
"""


def build_poll_interval_commit(run: Run) -> Plan:
    _install(run, "funding_watch.py")
    _git_tree(run, {"watch.toml": WATCH_SETTINGS, ".gitignore": "__pycache__/\n"}, "funding watch: three markets")
    log = run.log("funding.log")
    output = run.log("funding-supervisor.out")

    def deploy() -> None:
        _commit(
            run,
            {"watch.toml": WATCH_SETTINGS.replace("poll_seconds = 0.1", "poll_seconds = 3600")},
            "watch: poll funding rates every hour instead of every 100 ms to save API quota",
        )
        run.mark_failing()
        _restart(run)

    return Plan(
        service="funding_watch.py",
        params=_params(run, log, "python", **_python_format("%(asctime)s [%(levelname)s] %(name)s: %(message)s")),
        monitor=monitor(stale_log(log, 1.0), logs=[output], process=run.pattern("funding_watch.py"), work_tree=run.app),
        output=output,
        loop_message="funding-watch exited with status $?; restarting in 0.5 s",
        loop_pause=0.5,
        trigger=deploy,
    )


# -- upstream APIs ------------------------------------------------------------------------------------------


def build_stripe_429(run: Run) -> Plan:
    _install(run, "fills_sync.py")
    api = _api(run)
    database = run.path("billing.db")
    log = run.log("billing.log")

    def throttled() -> None:
        run.mark_failing()
        _set_mode(run, "429")

    return Plan(
        service="fills_sync.py",
        params=_params(run, log, "structlog", api_port=api.port, database=str(database)),
        monitor=monitor(
            sqlite_rows(database, "SELECT count(*) FROM charges"), logs=[log], process=run.pattern("fills_sync.py")
        ),
        output=run.log("billing.out"),
        trigger=throttled,
    )


def build_ec2_request_limit(run: Run) -> Plan:
    _install(run, "fleet_inventory.py", "aws_cli.py")
    api = _api(run)
    report = run.out / "inventory.json"
    log = run.log("inventory.log")

    def throttled() -> None:
        run.mark_failing()
        _set_mode(run, "ec2-limit")

    return Plan(
        service="fleet_inventory.py",
        params=_params(
            run,
            log,
            "python",
            api_port=api.port,
            report=str(report),
            **_python_format("%(asctime)s - %(name)s - %(levelname)s - %(message)s"),
        ),
        monitor=monitor(fresh_file(report, 1.5), logs=[log], process=run.pattern("fleet_inventory.py")),
        output=run.log("inventory.out"),
        trigger=throttled,
    )


def build_token_expired(run: Run) -> Plan:
    _install(run, "positions_bridge.py")
    api = _api(run)
    port = run.free_port()
    log = run.log("bridge.log")

    def token_expires() -> None:
        run.mark_failing()
        _set_mode(run, "token-expired")

    return Plan(
        service="positions_bridge.py",
        params=_params(run, log, "logrus_json", api_port=api.port, port=port),
        monitor=monitor(
            http(f"http://127.0.0.1:{port}/healthz"), logs=[log], process=run.pattern("positions_bridge.py")
        ),
        output=run.log("bridge.out"),
        trigger=token_expires,
    )


def _certificates(run: Run) -> dict[str, Path]:
    """A partner CA, and two server certificates it issued: for localhost, and for another host name."""
    folder = run.path("tls")
    folder.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=Partner Feeds Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    for name in ("localhost", "feeds.partner.example"):
        openssl("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (folder / f"{name}.ext").write_text(
            f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "30",
            "-extfile",
            f"{name}.ext",
        )
    return {
        name: folder / name
        for name in (
            "ca.pem",
            "localhost.pem",
            "localhost.key",
            "feeds.partner.example.pem",
            "feeds.partner.example.key",
        )
    }


def build_tls_hostname_mismatch(run: Run) -> Plan:
    _install(run, "partner_feed.py")
    certs = _certificates(run)
    api = _api(
        run,
        certs["localhost.pem"],
        certs["localhost.key"],
        certs["feeds.partner.example.pem"],
        certs["feeds.partner.example.key"],
    )
    log = run.log("syslog")

    def certificate_rotated() -> None:
        run.mark_failing()
        _set_mode(run, "rotated")

    return Plan(
        service="partner_feed.py",
        params=_params(
            run,
            log,
            "syslog",
            tag="partner-feed",
            api_port=api.port,
            ca_file=str(certs["ca.pem"]),
            out_dir=str(run.out),
        ),
        monitor=monitor(artifacts(run.out, "feed-*.json"), logs=[log], process=run.pattern("partner_feed.py")),
        output=run.log("partner-feed.out"),
        trigger=certificate_rotated,
    )


def build_upstream_timeout(run: Run) -> Plan:
    _install(run, "quote_mirror.py", "mirrorctl.py")
    api = _api(run)
    state = run.out / "mirror-state.json"
    log = run.log("mirror.log")

    def upstream_slows() -> None:
        run.mark_failing()
        _set_mode(run, "slow")

    return Plan(
        service="quote_mirror.py",
        params=_params(run, log, "zap", api_port=api.port, state_file=str(state), client_timeout=0.3),
        monitor=monitor(
            command([sys.executable, str(run.app / "mirrorctl.py"), str(state), "2.0"]),
            logs=[log],
            process=run.pattern("quote_mirror.py"),
        ),
        output=run.log("mirror.out"),
        trigger=upstream_slows,
    )


def build_dns_after_deregistration(run: Run) -> Plan:
    _install(run, "orders_relay.py")
    api = _api(run)
    discovery = run.path("upstreams.json")
    discovery.write_text(json.dumps({"orders_api": {"host": "localhost", "port": api.port}}))
    log = run.log("relay.log")

    def deregistered() -> None:
        # The discovery agent renders the orders API under its new service name, which no DNS knows.
        run.mark_failing()
        discovery.write_text(json.dumps({"orders_api": {"host": "orders-api.service.consul", "port": 8080}}))

    return Plan(
        service="orders_relay.py",
        params=_params(run, log, "golog", discovery_file=str(discovery)),
        monitor=monitor(alive(run.pattern("orders_relay.py")), logs=[log]),
        output=run.log("relay.out"),
        trigger=deregistered,
    )


# -- databases ----------------------------------------------------------------------------------------------


def build_sqlite_locked(run: Run) -> Plan:
    _install(run, "journal_writer.py")
    database = run.path("journal.db")
    log = run.log("journal.log")

    def backup_holds_the_lock() -> None:
        run.mark_failing()
        _helper(run, "sqlite_backup.py", str(database), ready="backup.ready")

    return Plan(
        service="journal_writer.py",
        params=_params(
            run,
            log,
            "python",
            database=str(database),
            heartbeat=str(run.path("journal.hb")),
            **_python_format("%(asctime)s|%(levelname)s|%(module)s:%(lineno)d|%(message)s"),
        ),
        monitor=monitor(
            heartbeat(run.path("journal.hb"), 1.0, channels={"writes": 1.0}),
            logs=[log],
            process=run.pattern("journal_writer.py"),
        ),
        output=run.log("journal.out"),
        trigger=backup_holds_the_lock,
    )


# -- stuck processes ----------------------------------------------------------------------------------------


def build_spin_without_log(run: Run) -> Plan:
    _install(run, "settle_calendar.py")
    status = run.out / "settlement.json"
    calendar = run.path("calendar.json")
    calendar.write_text(json.dumps({"weekend": [5, 6]}))

    def every_day_a_weekend() -> None:
        run.mark_failing()
        calendar.write_text(json.dumps({"weekend": [0, 1, 2, 3, 4, 5, 6]}))

    return Plan(
        service="settle_calendar.py",
        params=_params(run, None, "python", status_file=str(status), calendar_file=str(calendar)),
        monitor=monitor(fresh_file(status, 1.0), process=run.pattern("settle_calendar.py")),
        output=run.log("settle.out"),
        trigger=every_day_a_weekend,
    )


def build_read_never_answered(run: Run) -> Plan:
    _install(run, "depth_sync.py")
    api = _api(run)
    log = run.log("depth.log")

    def gateway_goes_silent() -> None:
        run.mark_failing()
        _set_mode(run, "silent")

    return Plan(
        service="depth_sync.py",
        params=_params(
            run, log, "python", api_port=api.port, **_python_format("%(asctime)s %(levelname)s:%(name)s:%(message)s")
        ),
        monitor=monitor(stale_log(log, 1.0), process=run.pattern("depth_sync.py")),
        output=run.log("depth.out"),
        trigger=gateway_goes_silent,
    )


def build_loop_blocked_by_sync_call(run: Run) -> Plan:
    _install(run, "maker_bot.py")
    api = _api(run)
    crash_dir = run.path("crash")
    crash_dir.mkdir()
    log = run.log("maker.log")

    def fee_api_goes_silent() -> None:
        run.mark_failing()
        _set_mode(run, "silent")

    return Plan(
        service="maker_bot.py",
        params=_params(
            run, log, "jsonlogger", api_port=api.port, heartbeat=str(run.path("maker.hb")), crash_dir=str(crash_dir)
        ),
        monitor=monitor(
            heartbeat(run.path("maker.hb"), 1.5, crash_dir=crash_dir), logs=[log], process=run.pattern("maker_bot.py")
        ),
        output=run.log("maker.out"),
        trigger=fee_api_goes_silent,
    )


def build_silent_exit(run: Run) -> Plan:
    _install(run, "eod_report.py")
    log = run.log("eod.log")
    stop = run.path("eod.stop")

    def returns_quietly() -> None:
        run.mark_failing()
        stop.touch()

    return Plan(
        service="eod_report.py",
        params=_params(run, log, "loguru", stop_flag=str(stop)),
        monitor=monitor(stale_log(log, 1.0), process=run.pattern("eod_report.py")),
        output=run.log("eod.out"),
        trigger=returns_quietly,
    )


SCENARIOS: list[Scenario] = [
    Scenario(
        name="holdout-redis-refused-behind-port",
        cause="dependency_refused",
        evidence="Error 111 connecting to localhost",
        build=build_redis_refused,
        story="Redis dies; the quote cache retries three times, logs redis-py's ConnectionError and closes its port.",
    ),
    Scenario(
        name="holdout-go-postgres-refused",
        cause="dependency_refused",
        evidence=lambda run: f"dial tcp 127.0.0.1:{_ready_value(run, 'pg.ready')}: connect: connection refused",
        build=build_postgres_refused,
        story="PostgreSQL goes away under a Go exporter (logrus text) whose metrics push was refused all along.",
    ),
    Scenario(
        name="holdout-node-eaddrinuse",
        cause="address_in_use",
        evidence="EADDRINUSE",
        build=build_port_held,
        story="An old admin console takes the gateway's port during a restart; Node's listen fails, in a loop.",
    ),
    Scenario(
        name="holdout-enospc-tmpfs-spool",
        cause="disk_full",
        evidence="No space left on device",
        build=build_disk_full,
        story="A tick recorder fills its 64 KiB spool; every snapshot after that fails with ENOSPC.",
        requires=("root",),
    ),
    Scenario(
        name="holdout-java-heap-space",
        cause="out_of_memory",
        evidence="java.lang.OutOfMemoryError",
        build=build_java_heap,
        story="A replay grows the consumer's buffer past -Xmx; its thread dies, the JVM lives on, status stops.",
    ),
    Scenario(
        name="holdout-memoryerror-crash-loop",
        cause="out_of_memory",
        evidence="MemoryError",
        build=build_memory_limit_loop,
        story="A portfolio too big for ulimit -v makes the risk engine crash at every start of its shell loop.",
    ),
    Scenario(
        name="holdout-emfile-accept-loop",
        cause="too_many_open_files",
        evidence="Too many open files",
        build=build_descriptors_exhausted,
        story="Idle subscribers use up the hub's 64 descriptors; asyncio's accept fails with EMFILE.",
    ),
    Scenario(
        name="holdout-permission-after-logrotate",
        cause="permission_denied",
        evidence="Permission denied",
        build=build_permission_after_rotation,
        story="logrotate recreates the audit trail as root's 0600 file; the writer, running as nobody, cannot open it.",
        requires=("root",),
    ),
    Scenario(
        name="holdout-yaml-bad-commit",
        cause="import_or_config_error",
        evidence="ScannerError",
        build=build_bad_yaml_commit,
        story="A commit mis-indents settings.yaml; the restarted gunicorn worker fails to boot, again and again.",
        requires=("git",),
    ),
    Scenario(
        name="holdout-missing-env-var",
        cause="import_or_config_error",
        evidence="KeyError: 'LEDGER_DSN'",
        build=build_missing_env_var,
        story="A commit reads the DSN from the environment; the deploy does not set it; the import fails in a loop.",
        requires=("git",),
    ),
    Scenario(
        name="holdout-poll-interval-commit",
        cause="recent_change",
        evidence="poll funding rates every hour",
        build=build_poll_interval_commit,
        story="A commit sets the poll to an hour; nothing fails, the log just goes quiet after the restart.",
        requires=("git",),
    ),
    Scenario(
        name="holdout-stripe-429-retry-after",
        cause="rate_limited",
        evidence="Too many requests",
        build=build_stripe_429,
        story="The billing API answers 429 with Retry-After: 30; the sync waits, and no rows arrive.",
    ),
    Scenario(
        name="holdout-ec2-request-limit",
        cause="rate_limited",
        evidence="RequestLimitExceeded",
        build=build_ec2_request_limit,
        story="EC2 throttles describe-instances; the CLI gives up after its retries and the report goes stale.",
    ),
    Scenario(
        name="holdout-expired-token-401",
        cause="auth_failure",
        evidence="401 Unauthorized",
        build=build_token_expired,
        story="The broker's access token expires and is never refreshed; every poll gets 401, /healthz says 503.",
    ),
    Scenario(
        name="holdout-tls-hostname-mismatch",
        cause="tls_failure",
        evidence="Hostname mismatch",
        build=build_tls_hostname_mismatch,
        story="The partner rotates to a certificate for another host name; every fetch fails verification.",
        requires=("openssl",),
    ),
    Scenario(
        name="holdout-go-client-timeout",
        cause="upstream_timeout",
        evidence="Client.Timeout exceeded",
        build=build_upstream_timeout,
        story="The quote API slows past the client timeout on every attempt (a recovered timeout was routine).",
    ),
    Scenario(
        name="holdout-dns-no-such-host",
        cause="dns_failure",
        evidence="no such host",
        build=build_dns_after_deregistration,
        story="Discovery renders a service name no DNS knows; the Go relay fails three lookups and exits.",
    ),
    Scenario(
        name="holdout-sqlite-locked-by-backup",
        cause="database_error",
        evidence="database is locked",
        build=build_sqlite_locked,
        story="A stuck backup holds SQLite's exclusive lock; the journal's writes channel stops while beats go on.",
    ),
    Scenario(
        name="holdout-spin-no-log",
        cause="busy_loop",
        evidence="cpu",
        build=build_spin_without_log,
        story="A calendar with every day a weekend makes next_business_day spin at full CPU; no log exists.",
        evidence_with_py_spy="next_business_day",
    ),
    Scenario(
        name="holdout-read-never-answered",
        cause="hung",
        evidence=_pid_of_service,
        build=build_read_never_answered,
        story="The gateway accepts the request and never answers; the sync has no timeout; its log just stops.",
        cause_with_py_spy="await_never_returned",
        evidence_with_py_spy="fetch_depth",
    ),
    Scenario(
        name="holdout-loop-blocked-by-urlopen",
        cause="event_loop_blocked",
        evidence="fetch_fee_schedule",
        build=build_loop_blocked_by_sync_call,
        story="A synchronous urlopen inside a coroutine blocks the loop; the SDK watchdog records where and ends it.",
    ),
    Scenario(
        name="holdout-silent-exit",
        cause="unknown",
        evidence="not running",
        build=build_silent_exit,
        story="The report builder returns from its loop and exits 0 without a word: nothing says why.",
    ),
]
