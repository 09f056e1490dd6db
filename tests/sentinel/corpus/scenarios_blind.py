"""A second hold-out set: failures that wake an on-call engineer, written without reading Sentinel's rules.

Each scenario runs a real process that writes a real log in a named library's format, with an hour of
back-dated routine (``holdout/holdout_kit.py``) and noise of its own, and fails the way such services fail:
a websocket feed that gives up reconnecting, a Celery worker that lost its broker, a pool exhausted behind a
locked table, a log rotated from under its writer, the kernel's OOM killer in a memory cgroup, a migration
that renamed a table a cron job reads, an expired certificate, S3 throttling, a resolver gone, an asyncio
task that died unnoticed, a Go panic and Node's heap limit under restart loops, a signature refused for
clock skew, a full tmpfs, a deadlock between two threads, a port taken by a forgotten debug server, gRPC
deadlines, a key file that config management made unreadable, a blocking call inside a coroutine, an env
file pydantic refuses, a descriptor leak under ulimit -n.

The expected cause is what a careful operator would conclude from the evidence the monitor can see. Where
the evidence says only that a process runs and stopped producing (a rotated log, a deadlock), the cause is
``hung`` and the harness requires that Sentinel not call it probable.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import SERVICES, Plan, Run, Scenario, Skip

__all__ = ["SCENARIOS"]

BLIND = SERVICES / "blind"
STUB_TIMEOUT = 15.0


# -- what the scenarios share ------------------------------------------------------------------------------


def install(run: Run, *services: str, vendor: tuple[str, ...] = ()) -> None:
    """The service programs (and holdout_kit.py, whose formats they write) in app/; stand-in libraries in
    the service's site-packages."""
    run.install("holdout/holdout_kit.py", *(f"blind/{name}" for name in services))
    for package in vendor:
        shutil.copytree(BLIND / "vendor" / package, run.site / package, dirs_exist_ok=True)


def stub(run: Run, script: str, *args: str) -> tuple[int, int]:
    """Start one of the blind stubs detached; its pid and the port it says it listens on."""
    ready = run.path(f".ready-{Path(script).stem}")
    pid = run.detached(
        [sys.executable, str(BLIND / script), *args, str(ready)], run.log(f"stub-{Path(script).stem}.out"), cwd=BLIND
    )
    deadline = time.monotonic() + STUB_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return pid, int(ready.read_text())
        if not _alive(pid):
            raise AssertionError(f"{script} exited before it listened: {run.log(f'stub-{Path(script).stem}.out')}")
        time.sleep(0.02)
    raise AssertionError(f"{script} did not listen within {STUB_TIMEOUT} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def kill_and_wait(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STUB_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def params(log: Path | None, style: str, **more: Any) -> dict[str, Any]:
    """The parameters every blind service reads: its log, the format it writes, and the rest."""
    return {"log_file": str(log) if log else None, "log_style": style, "tick_seconds": 0.1, **more}


def write_mode(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def service_pid(run: Run) -> str:
    """The evidence of a hang: the pid of the process that runs and says nothing."""
    return str(run.service_pid())


# -- dependency refused: a websocket feed gives up reconnecting ------------------------------------------


def _ws_feed(run: Run) -> Plan:
    install(run, "ws_feed.py", vendor=("websockets",))
    exchange, port = stub(run, "ws_exchange_stub.py")
    log = run.log("feed.log")
    beat = run.path("feed-heartbeat.json")

    def gateway_dies() -> None:
        run.mark_failing()
        kill_and_wait(exchange)

    return Plan(
        service="ws_feed.py",
        params=params(log, "structlog", url=f"ws://127.0.0.1:{port}/ws/v1", heartbeat=str(beat), max_attempts=5),
        monitor=blocks.monitor(
            blocks.heartbeat(beat, channels={"ticks": 1.5}), logs=[log], process=run.pattern("ws_feed.py")
        ),
        output=run.log("feed.out"),
        trigger=gateway_dies,
    )


# -- dependency refused: a Celery worker loses its broker -------------------------------------------------

CELERY_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


def _celery_broker_lost(run: Run) -> Plan:
    install(run, "settle_worker.py", vendor=("celery", "kombu", "amqp"))
    broker, port = stub(run, "amqp_broker_stub.py")
    log = run.log("celery-worker.log")

    def broker_dies() -> None:
        run.mark_failing()
        kill_and_wait(broker)

    return Plan(
        service="settle_worker.py",
        params=params(
            log,
            "python",
            log_format=CELERY_FORMAT,
            broker=f"amqp://guest:guest@127.0.0.1:{port}//",
            out_dir=str(run.out),
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "settlement-*.json"), logs=[log], process=run.pattern("settle_worker.py")
        ),
        output=run.log("celery-worker.out"),
        trigger=broker_dies,
    )


# -- database error: a locked table exhausts SQLAlchemy's pool, the API answers 502 -------------------------


def _pool_exhausted(run: Run) -> Plan:
    install(run, "positions_api.py", vendor=("sqlalchemy",))
    lock = run.path("db-mode")
    _, db_port = stub(run, "pg_lockable_stub.py", str(lock))
    port = run.free_port()
    stub(run, "dashboard_load_stub.py", f"http://127.0.0.1:{port}/v1/positions?account=acct-7")
    error_log, access_log = run.log("gunicorn-error.log"), run.log("gunicorn-access.log")

    def migration_locks_positions() -> None:
        run.mark_failing()
        write_mode(lock, "locked")

    return Plan(
        service="positions_api.py",
        params=params(
            error_log,
            "gunicorn",
            port=port,
            database_url=f"postgresql+psycopg2://desk:***@127.0.0.1:{db_port}/desk",
            access_log=str(access_log),
            pool_timeout=0.5,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/healthz"),
            logs=[error_log, access_log],
            process=run.pattern("positions_api.py"),
            min_failures=3,
        ),
        output=run.log("positions-api.out"),
        trigger=migration_locks_positions,
    )


# -- hung (as far as the evidence goes): logrotate leaves the writer in a deleted file ----------------------


def _rotated_from_under(run: Run) -> Plan:
    if shutil.which("logrotate") is None:
        raise Skip("logrotate is not installed")
    install(run, "journal_append.py")
    log = run.log("journal.log")
    config = run.path("logrotate.conf")
    # The daily rotation as packaged: no copytruncate and no postrotate signal, and this writer never reopens.
    config.write_text(
        textwrap.dedent(
            f"""\
            {log} {{
                rotate 4
                compress
                missingok
                notifempty
                create 0640 root root
            }}
            """
        )
    )

    def cron_daily_runs_logrotate() -> None:
        run.mark_failing()
        subprocess.run(
            ["logrotate", "-f", "-s", str(run.path("logrotate.state")), str(config)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    return Plan(
        service="journal_append.py",
        params=params(
            log,
            "python",
            log_format="%(asctime)s %(levelname)-8s %(name)s %(message)s",
            journal=str(run.out / "journal.jsonl"),
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("journal_append.py")),
        output=run.log("journal.out"),
        trigger=cron_daily_runs_logrotate,
    )


# -- killed: the kernel's OOM killer in a memory cgroup, under a shell loop --------------------------------

MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")
# Removes a memory cgroup once it has had members and then stayed empty (the run ended), or after a while.
_CGROUP_JANITOR = """
import os, sys, time
cgroup = sys.argv[1]
seen, empty_since, deadline = False, None, time.monotonic() + 1200
while time.monotonic() < deadline:
    try:
        members = open(os.path.join(cgroup, "cgroup.procs")).read().split()
    except OSError:
        sys.exit(0)
    seen = seen or bool(members)
    empty_since = None if members else (empty_since or time.monotonic())
    if seen and empty_since and time.monotonic() - empty_since > 3:
        break
    time.sleep(0.5)
try:
    os.rmdir(cgroup)
except OSError:
    pass
"""


def memory_cgroup(run: Run, limit_bytes: int) -> Path:
    """A memory cgroup (v1) of its own with ``limit_bytes`` and no swap beyond it (root only)."""
    if os.geteuid() != 0 or not os.access(MEMORY_CGROUPS, os.W_OK):
        raise Skip("a memory cgroup can only be made by root, on cgroup v1's memory hierarchy")
    cgroup = MEMORY_CGROUPS / f"horus-blind-{os.getpid()}-{run.dir.parent.name}-{time.monotonic_ns()}"
    try:
        cgroup.mkdir()
        (cgroup / "memory.limit_in_bytes").write_text(str(limit_bytes))
        swap = cgroup / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limit_bytes))
    except OSError as exc:
        with contextlib.suppress(OSError):
            cgroup.rmdir()
        raise Skip(f"cannot make a memory cgroup here: {exc}") from exc
    subprocess.Popen(
        [sys.executable, "-c", _CGROUP_JANITOR, str(cgroup)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return cgroup


def _oom_killed(run: Run) -> Plan:
    cgroup = memory_cgroup(run, 64 * 1024 * 1024)
    install(run, "fill_ingest.py")
    inbox = run.path("inbox")
    inbox.mkdir()
    stub(run, "fill_dropper_stub.py", str(inbox))
    log, output = run.log("ingest.log"), run.log("ingest.out")

    def backfill_arrives() -> None:
        run.mark_failing()
        partial = inbox / ".backfill.partial"
        with partial.open("w") as backfill:
            backfill.write("fill_id,account,market,qty,px\n")
            for block in range(40):
                backfill.writelines(
                    f"{block * 10000 + i},acct-{i % 977},ETH-PERP,{i % 9 + 1},2211.{i % 10}\n" for i in range(10000)
                )
        os.replace(partial, inbox / "fills-20261120-backfill.csv")

    return Plan(
        service="fill_ingest.py",
        params=params(
            log,
            "loguru",
            inbox=str(inbox),
            out_dir=str(run.out),
            memory_cgroup=str(cgroup),
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "summary-*.json"), logs=[log, output], process=run.pattern("fill_ingest.py")
        ),
        output=output,
        loop_message="fill-ingest exited with $?, restarting in 0.2 s",
        trigger=backfill_arrives,
        steady_restarts=2,
    )


# -- recent change: a migration renames the table a cron job reads ----------------------------------------

DAY = 86400.0


def commit(run: Run, subject: str, files: dict[str, str], *, age: float = 0.0) -> None:
    """Write ``files`` into app/ and commit them, ``age`` seconds ago."""
    for name, content in files.items():
        path = run.app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    run.git("add", "-A")
    run.git("commit", "-q", "-m", subject, at=time.time() - age)


def _migration_renamed_table(run: Run) -> Plan:
    if shutil.which("git") is None:
        raise Skip("needs git")
    install(run, "fills_export.py", vendor=("psycopg2",))
    pgdata = run.path("pgdata")
    pgdata.mkdir()
    with contextlib.closing(sqlite3.connect(pgdata / "desk.sqlite")) as db, db:
        db.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY, account TEXT, market TEXT, qty REAL, px REAL, ts TEXT)")
        today = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        db.executemany(
            "INSERT INTO fills (account, market, qty, px, ts) VALUES (?, ?, ?, ?, ?)",
            [(f"acct-{i % 31}", "ETH-PERP", i % 9 + 1, 2211.0 + i % 10, today) for i in range(400)],
        )
    (run.app / ".gitignore").write_text("__pycache__/\n")
    run.git("init", "-q", "-b", "main")
    commit(
        run,
        "ledger: fills table and models",
        {
            "migrations/0040_create_fills.sql": "CREATE TABLE fills (id bigserial PRIMARY KEY, account text, "
            "market text, qty numeric, px numeric, ts timestamptz);\n",
            "ledger/models.py": 'FILLS_TABLE = "fills"\n',
        },
        age=20 * DAY,
    )
    commit(
        run,
        "fills-export: the accountants' daily CSV",
        {"deploy/crontab": "*/5 * * * * desk /srv/desk/bin/fills-export --since today\n"},
        age=6 * DAY,
    )
    commit(
        run,
        "ledger: fee column on fills (0041)",
        {"migrations/0041_fills_fee.sql": "ALTER TABLE fills ADD COLUMN fee numeric DEFAULT 0;\n"},
        age=3 * DAY,
    )
    export = run.out / "fills-export.csv"

    def deploy_runs_migration() -> None:
        run.mark_failing()
        commit(
            run,
            "ledger: rename fills to trade_fills (migration 0042)",
            {
                "migrations/0042_rename_fills.sql": "ALTER TABLE fills RENAME TO trade_fills;\n",
                "ledger/models.py": 'FILLS_TABLE = "trade_fills"\n',
            },
        )
        with contextlib.closing(sqlite3.connect(pgdata / "desk.sqlite")) as db, db:
            db.execute("ALTER TABLE fills RENAME TO trade_fills")

    log, output = run.log("syslog"), run.log("fills-export.out")
    return Plan(
        service="fills_export.py",
        params=params(
            log, "syslog", tag="fills-export", dsn=f"host={pgdata} dbname=desk user=desk", export=str(export)
        ),
        monitor=blocks.monitor(
            blocks.fresh_file(export), logs=[log, output], process=run.pattern("fills_export.py"), work_tree=run.app
        ),
        output=output,
        loop_message="fills-export: exit status $?",
        loop_pause=0.3,
        trigger=deploy_runs_migration,
        steady_restarts=2,
    )


# -- TLS failure: the API's certificate expired ------------------------------------------------------------

_CA_CONFIG = """\
[ ca ]
default_ca = desk
[ desk ]
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
"""


def certificates(directory: Path) -> None:
    """A CA, and for 127.0.0.1 a valid certificate and one that expired months ago, both signed by it."""
    if shutil.which("openssl") is None:
        raise Skip("needs openssl")
    db = directory / "ca-db"
    db.mkdir(parents=True)
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    (directory / "ca.cnf").write_text(_CA_CONFIG.format(db=db))
    (directory / "san.cnf").write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
            "-subj", "/O=Desk/CN=Desk Internal Root CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/O=Desk/CN=127.0.0.1")  # fmt: skip
    signing = ["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-in", "server.csr",
               "-extfile", "san.cnf"]  # fmt: skip
    openssl(*signing, "-out", "valid.crt", "-days", "90")
    openssl(*signing, "-out", "expired.crt", "-startdate", "20250801000000Z", "-enddate", "20251030000000Z")


def _certificate_expired(run: Run) -> Plan:
    install(run, "marks_poller.py")
    certs = run.path("certs")
    certificates(certs)
    tls_mode = run.path("tls-mode")
    _, port = stub(run, "tls_api_stub.py", str(tls_mode), str(certs))
    log, marks = run.log("marks-poller.log"), run.out / "marks.jsonl"

    def certificate_expires() -> None:
        run.mark_failing()
        write_mode(tls_mode, "expired")

    return Plan(
        service="marks_poller.py",
        params=params(
            log,
            "loguru",
            url=f"https://127.0.0.1:{port}/v1/marks",
            ca_bundle=str(certs / "ca.crt"),
            output=str(marks),
        ),
        monitor=blocks.monitor(blocks.log_growth(marks), logs=[log], process=run.pattern("marks_poller.py")),
        output=run.log("marks-poller.out"),
        trigger=certificate_expires,
    )


# -- rate limited: S3 answers SlowDown to every PutObject --------------------------------------------------


def _s3_slow_down(run: Run) -> Plan:
    install(run, "fills_uploader.py", "check_uploads.py", vendor=("botocore", "boto3"))
    s3_mode = run.path("s3-mode")
    _, port = stub(run, "s3_stub.py", str(s3_mode))
    endpoint = f"http://127.0.0.1:{port}"
    spool = run.path("spool")
    spool.mkdir()
    log = run.log("uploader.log")

    def prefix_is_throttled() -> None:
        run.mark_failing()
        write_mode(s3_mode, "slowdown")

    check = blocks.command([sys.executable, str(run.app / "check_uploads.py"), endpoint, "desk-fills", "fills/", "1.5"])
    return Plan(
        service="fills_uploader.py",
        params=params(log, "jsonlogger", endpoint=endpoint, bucket="desk-fills", spool=str(spool)),
        monitor=blocks.monitor(check, logs=[log], process=run.pattern("fills_uploader.py")),
        output=run.log("uploader.out"),
        trigger=prefix_is_throttled,
    )


# -- DNS failure: the feed's name stops resolving ----------------------------------------------------------


def api(run: Run, name: str, routes: dict[str, Any]) -> tuple[Path, int]:
    """A JSON API stub answering ``routes``; the routes file (rewrite it to change the answers) and its port."""
    path = run.path(f"{name}-routes.json")
    write_mode(path, json.dumps(routes))
    _, port = stub(run, "json_api_stub.py", str(path))
    return path, port


RATES = {"/v1/rates": {"status": 200, "body": {"rates": {"EUR/USD": 1.0842, "USD/JPY": 151.2, "GBP/USD": 1.2711}}}}


def _resolver_lost_the_name(run: Run) -> Plan:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        raise Skip("a resolver configuration of its own needs root and unshare")
    install(run, "rates_poller.py")
    _, port = api(run, "rates", RATES)
    resolv, hosts = run.path("resolv.conf"), run.path("hosts")
    # The host's own resolver (127.0.0.1) answers for nothing here; the feed's name comes from /etc/hosts.
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    hosts.write_text("127.0.0.1 localhost\n10.20.0.4 ops-bastion.desk.internal\n127.0.0.1 feed.desk.internal\n")
    log = run.log("rates-poller.log")

    def config_management_rewrites_hosts() -> None:
        run.mark_failing()
        # In place: the service's /etc/hosts is this file's inode, bind-mounted.
        with hosts.open("r+") as text:
            text.truncate(0)
            text.write("127.0.0.1 localhost\n10.20.0.4 ops-bastion.desk.internal\n")

    return Plan(
        service="rates_poller.py",
        params=params(
            log,
            "python",
            log_format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
            url=f"http://feed.desk.internal:{port}/v1/rates",
            resolv_conf=str(resolv),
            hosts_file=str(hosts),
            backoff_seconds=30,
            output=str(run.out / "rates.jsonl"),
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("rates_poller.py")),
        output=run.log("rates-poller.out"),
        trigger=config_management_rewrites_hosts,
    )


# -- unhandled exception: a forgotten asyncio task dies on a schema change -------------------------------


def _task_never_retrieved(run: Run) -> Plan:
    install(run, "fill_consumer.py")
    feed_mode = run.path("feed-schema")
    _, port = stub(run, "fills_feed_stub.py", str(feed_mode))
    database, log = run.out / "dropcopy.db", run.log("dropcopy.log")

    def venue_rolls_out_schema_v2() -> None:
        run.mark_failing()
        write_mode(feed_mode, "v2")

    return Plan(
        service="fill_consumer.py",
        params=params(log, "jsonlogger", feed_port=port, database=str(database)),
        monitor=blocks.monitor(
            blocks.sqlite_rows(database, "SELECT count(*) FROM fills"),
            logs=[log],
            process=run.pattern("fill_consumer.py"),
        ),
        output=run.log("dropcopy.out"),
        trigger=venue_rolls_out_schema_v2,
    )


# -- unhandled exception: a Go panic under a restart loop ---------------------------------------------------


def book(levels: int) -> dict[str, Any]:
    bids = [[2211.4 - i / 10, 3.0 + i] for i in range(levels)]
    asks = [[2211.6 + i / 10, 2.0 + i] for i in range(levels)]
    return {"/v1/depth": {"status": 200, "body": {"market": "ETH-PERP", "bids": bids, "asks": asks}}}


def _go_panic(run: Run) -> Plan:
    install(run, "depth_sync.py")
    routes, api_port = api(run, "depth", book(4))
    port = run.free_port()
    log, output = run.log("depthsync.log"), run.log("depthsync.stderr")

    def venue_thins_the_book() -> None:
        run.mark_failing()
        write_mode(routes, json.dumps(book(3)))

    return Plan(
        service="depth_sync.py",
        params=params(log, "zap", tag="depthsync", api=f"http://127.0.0.1:{api_port}/v1/depth", port=port, depth=4),
        monitor=blocks.monitor(blocks.port_open(port), logs=[log, output], process=run.pattern("depth_sync.py")),
        output=output,
        loop_message="depthsync exited with status $?; restarting in 0.2 s",
        trigger=venue_thins_the_book,
        steady_restarts=2,
        env={"GOTRACEBACK": "all"},
    )


# -- auth failure: the host's clock fell behind, every signature is "expired" ------------------------------


def _clock_skew(run: Run) -> Plan:
    install(run, "hedger.py")
    venue_clock = run.path("venue-clock.json")
    secret = "8c0f5b1e2d7a4e39b6f1c2d3e4f5a6b7"
    _, api_port = stub(run, "signed_api_stub.py", secret, str(venue_clock))
    port = run.free_port()
    log = run.log("hedger.log")

    def ntp_stopped_and_the_clock_drifted() -> None:
        run.mark_failing()
        write_mode(venue_clock, json.dumps({"clock_offset": 312.0}))

    return Plan(
        service="hedger.py",
        params=params(log, "structlog", api=f"http://127.0.0.1:{api_port}", secret=secret, port=port, stale_after=1.0),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/healthz"), logs=[log], process=run.pattern("hedger.py")
        ),
        output=run.log("hedger.out"),
        trigger=ntp_stopped_and_the_clock_drifted,
    )


# -- disk full: a backfill fills the lake's volume under the Parquet writer ---------------------------------


def fill_volume(path: Path) -> None:
    """Write ``path`` until its filesystem has no space left."""
    chunk = b"\0" * 65536
    with contextlib.suppress(OSError), path.open("wb") as sink:
        while True:
            sink.write(chunk)
            sink.flush()


def _lake_volume_full(run: Run) -> Plan:
    lake = run.path("lake")
    run.mount_tmpfs(lake, "4m")
    install(run, "lake_writer.py", vendor=("pyarrow",))
    parts = lake / "fills" / f"date={time.strftime('%Y-%m-%d')}"
    log = run.log("lake-writer.log")

    def backfill_fills_the_volume() -> None:
        run.mark_failing()
        (lake / "_backfill").mkdir(exist_ok=True)
        fill_volume(lake / "_backfill" / "fills-2026-10.parquet")

    return Plan(
        service="lake_writer.py",
        params=params(log, "python", log_format="%(asctime)s - %(name)s - %(levelname)s - %(message)s", lake=str(lake)),
        monitor=blocks.monitor(blocks.artifacts(parts, "*.parquet"), logs=[log], process=run.pattern("lake_writer.py")),
        output=run.log("lake-writer.out"),
        trigger=backfill_fills_the_volume,
    )


# -- hung: two threads deadlock on two locks; the log says nothing ------------------------------------------


def _lock_order_deadlock(run: Run) -> Plan:
    install(run, "positions_cache.py")
    log = run.log("positions-cache.log")
    return Plan(
        service="positions_cache.py",
        params=params(
            log,
            "python",
            log_format="%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s",
            journal_dir=str(run.out),
            rotate_after=3.0,
        ),
        monitor=blocks.monitor(blocks.stale_log(log), process=run.pattern("positions_cache.py")),
        output=run.log("positions-cache.out"),
    )


# -- address in use and out of memory: Node services under restart loops ------------------------------------


def node_service(run: Run, script: str, history: str, log: Path, **more: Any) -> dict[str, Any]:
    """Install a Node service and its launcher; the launcher's parameters."""
    if shutil.which("node") is None:
        raise Skip("needs node")
    install(run, "node_launch.py", "pino.js", script)
    return params(log, "pino", script=script, history=history, **more)


def wait_listening(port: int, timeout: float = STUB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _port_taken_by_debug_server(run: Run) -> Plan:
    port = run.free_port()
    log, output = run.log("quote-api.log"), run.log("quote-api.out")
    parameters = node_service(run, "quote_api.js", "quote_api", log, port=port)
    share = run.path("share")
    share.mkdir()
    (share / "fills-2026-11-20.csv").write_text("fill_id,qty\n1,2\n")

    def deploy_restart_meets_a_forgotten_server() -> None:
        run.mark_failing()
        node = [p.pid for p in psutil_processes(run.pattern("quote_api.js"))]
        for pid in node:
            kill_and_wait(pid, signal.SIGTERM)
        # Someone's `python3 -m http.server` to share a file, started in the gap and left running.
        run.detached(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            run.log("http-server.out"),
            cwd=share,
        )
        wait_listening(port)

    return Plan(
        service="node_launch.py",
        params=parameters,
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/healthz"), logs=[log, output], process=run.pattern("quote_api.js")
        ),
        output=output,
        loop_message="quote-api exited with code $?, restarting",
        loop_pause=1.0,
        trigger=deploy_restart_meets_a_forgotten_server,
        steady_restarts=2,
    )


def psutil_processes(pattern: str) -> list[psutil.Process]:
    """Every process whose command line holds ``pattern``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if pattern in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def positions(count: int) -> str:
    rows = [
        {"id": i, "account": f"acct-{i % 977}", "market": "ETH-PERP", "qty": i % 9 + 1, "avg_px": 2211.5 + i % 13}
        for i in range(count)
    ]
    return json.dumps(rows)


def _node_heap_limit(run: Run) -> Plan:
    port = run.free_port()
    snapshot = run.path("positions-snapshot.json")
    write_mode(snapshot, positions(1000))
    log, output = run.log("report-api.log"), run.log("report-api.out")
    parameters = node_service(
        run,
        "report_api.js",
        "report_api",
        log,
        port=port,
        snapshot=str(snapshot),
        node_args=["--max-old-space-size=16"],
    )

    def month_end_snapshot_arrives() -> None:
        run.mark_failing()
        write_mode(snapshot, positions(200_000))

    return Plan(
        service="node_launch.py",
        params=parameters,
        monitor=blocks.monitor(blocks.port_open(port), logs=[log, output], process=run.pattern("report_api.js")),
        output=output,
        loop_message="report-api exited with code $?, restarting",
        trigger=month_end_snapshot_arrives,
        steady_restarts=2,
    )


# -- upstream timeout: every RPC outlives its deadline ------------------------------------------------------


def _rpc_deadline_exceeded(run: Run) -> Plan:
    install(run, "quote_stream.py")
    rpc_mode = run.path("rpc-mode")
    _, port = stub(run, "quote_rpc_stub.py", str(rpc_mode))
    log, quotes = run.log("quotes.log"), run.out / "quotes.jsonl"

    def quote_service_handlers_stall() -> None:
        run.mark_failing()
        write_mode(rpc_mode, "stalled")

    return Plan(
        service="quote_stream.py",
        params=params(log, "logrus_text", target=f"127.0.0.1:{port}", output=str(quotes)),
        monitor=blocks.monitor(blocks.log_growth(quotes), logs=[log], process=run.pattern("quote_stream.py")),
        output=run.log("quotes.out"),
        trigger=quote_service_handlers_stall,
    )


# -- permission denied: config management makes the key unreadable to the service's user ------------------


def _key_made_unreadable(run: Run) -> Plan:
    if os.geteuid() != 0:
        raise Skip("the service drops from root to nobody")
    nobody = pwd.getpwnam("nobody")
    install(run, "settlement_agent.py")
    secrets = run.path("secrets")
    secrets.mkdir()
    key = secrets / "api.key"
    key.write_text("sk_live_4f1d9a0c2b7e4e58a1c3\n")
    key.chmod(0o644)
    os.chown(run.out, nobody.pw_uid, nobody.pw_gid)
    log = run.log("syslog")
    log.touch()
    os.chown(log, nobody.pw_uid, nobody.pw_gid)

    def config_management_rotates_the_key() -> None:
        run.mark_failing()
        # Puppet's file resource with mode 0600 and owner root: the new key, readable by root alone.
        staged = secrets / ".api.key.puppet"
        staged.write_text("sk_live_9b2e7c1a5d3f4a60b8e2\n")
        staged.chmod(0o600)
        os.replace(staged, key)

    check = {**blocks.alive(run.pattern("settlement_agent.py")), "user": "nobody"}
    return Plan(
        service="settlement_agent.py",
        params=params(log, "syslog", tag="settlement-agent", key_file=str(key), out_dir=str(run.out), run_as="nobody"),
        monitor=blocks.monitor(check, logs=[log], process=run.pattern("settlement_agent.py"), user="nobody"),
        output=run.log("settlement-agent.out"),
        trigger=config_management_rotates_the_key,
    )


# -- event loop blocked: a synchronous request without a timeout inside a coroutine -----------------------

BOOK = {"/v1/book": {"status": 200, "body": {"market": "ETH-PERP", "bids": [[2211.4, 3]], "asks": [[2211.6, 2]]}}}


def _sync_call_blocks_loop(run: Run) -> Plan:
    install(run, "book_refresher.py")
    routes, port = api(run, "book", BOOK)
    beat, log = run.path("maker-heartbeat.json"), run.log("maker.log")

    def venue_endpoint_stops_answering() -> None:
        run.mark_failing()
        write_mode(routes, json.dumps({"/v1/book": {"silent": True}}))

    return Plan(
        service="book_refresher.py",
        params=params(log, "loguru", api=f"http://127.0.0.1:{port}/v1/book", heartbeat=str(beat)),
        monitor=blocks.monitor(blocks.heartbeat(beat), logs=[log], process=run.pattern("book_refresher.py")),
        output=run.log("maker.out"),
        trigger=venue_endpoint_stops_answering,
    )


# -- import or config error: a hand-edited env file pydantic cannot parse -----------------------------------

RISK_ENV = """\
# risk limits for the desk's deribit account; reviewed by risk weekly
VENUE=deribit
MAX_POSITION_USD={max_position}
MAX_ORDER_USD=25000
KILL_SWITCH_DRAWDOWN_PCT=4.5
"""


def _settings_do_not_parse(run: Run) -> Plan:
    install(run, "risk_limits.py")
    env_file = run.path("risk.env")
    env_file.write_text(RISK_ENV.format(max_position=250000))
    beat, log, output = run.path("risk-heartbeat.json"), run.log("risk-limits.log"), run.log("risk-limits.out")

    def operator_raises_the_limit_and_restarts() -> None:
        run.mark_failing()
        env_file.write_text(RISK_ENV.format(max_position="250k"))
        for proc in run.service_processes():
            kill_and_wait(proc.pid, signal.SIGTERM)

    return Plan(
        service="risk_limits.py",
        params=params(
            log,
            "python",
            log_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            env_file=str(env_file),
            heartbeat=str(beat),
        ),
        monitor=blocks.monitor(blocks.heartbeat(beat), logs=[log, output], process=run.pattern("risk_limits.py")),
        output=output,
        loop_message="risk-limits exited ($?), restarting",
        loop_pause=0.3,
        trigger=operator_raises_the_limit_and_restarts,
        steady_restarts=2,
    )


# -- too many open files: a Node writer leaks a descriptor per report ---------------------------------------


def _descriptor_leak(run: Run) -> Plan:
    log, output = run.log("report-writer.log"), run.log("report-writer.out")
    parameters = node_service(run, "report_writer.js", "report_writer", log, out_dir=str(run.out))
    return Plan(
        service="node_launch.py",
        params=parameters,
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "report-*.csv"), logs=[log, output], process=run.pattern("report_writer.js")
        ),
        output=output,
        loop_message="report-writer exited with code $?, restarting",
        ulimit="-n 100",
    )


SCENARIOS: list[Scenario] = [
    Scenario(
        name="blind-ws-feed-gives-up-after-1006",
        cause="dependency_refused",
        evidence="Connect call failed",
        build=_ws_feed,
        story="the exchange's websocket gateway dies (close code 1006); every reconnect is refused and the feed "
        "gives up, its loop still beating but no tick arriving",
    ),
    Scenario(
        name="blind-celery-broker-connection-refused",
        cause="dependency_refused",
        # Not the user: Horus masks a URL's credentials in what it quotes (amqp://***@...).
        evidence="Cannot connect to amqp://",
        build=_celery_broker_lost,
        story="the RabbitMQ node under a Celery worker dies: the worker logs the lost connection, then every "
        "reconnect is refused and no settlement is written",
    ),
    Scenario(
        name="blind-queuepool-exhausted-502",
        cause="database_error",
        evidence="QueuePool limit of size 5 overflow 10 reached",
        build=_pool_exhausted,
        story="a migration locks the positions table: every query waits, the 15 pooled connections are all "
        "checked out, new requests time out on the pool and the API answers 502",
    ),
    Scenario(
        name="blind-logrotate-left-writer-in-deleted-file",
        cause="hung",
        evidence=service_pid,
        build=_rotated_from_under,
        story="logrotate renames and compresses the journal writer's log; the writer goes on writing into the "
        "deleted file, so the watched log is new, empty and stale while the process runs and works",
    ),
    Scenario(
        name="blind-oom-killer-under-shell-loop",
        cause="killed",
        evidence="exited with 137",
        build=_oom_killed,
        story="a day's backfill lands in the ingester's inbox; loading it whole exceeds its cgroup's 64 MB and the "
        "kernel's OOM killer ends it, again at every restart ('Killed', exit 137); no summary is written",
        requires=("root",),
    ),
    Scenario(
        name="blind-migration-renamed-table-cron-export",
        cause="recent_change",
        evidence="rename fills to trade_fills",
        build=_migration_renamed_table,
        story="a deploy commits and runs migration 0042, renaming fills to trade_fills; the cron-run export "
        "still reads fills and fails at every run with psycopg2's UndefinedTable",
        requires=("git",),
    ),
    Scenario(
        name="blind-tls-certificate-expired",
        cause="tls_failure",
        evidence="certificate has expired",
        build=_certificate_expired,
        story="the marks API's certificate was never renewed and expires; every poll fails requests' "
        "verification (CERTIFICATE_VERIFY_FAILED) and the marks file stops growing",
        requires=("openssl",),
    ),
    Scenario(
        name="blind-s3-slowdown-every-put",
        cause="rate_limited",
        evidence="An error occurred (SlowDown) when calling the PutObject operation",
        build=_s3_slow_down,
        story="S3 throttles the fills prefix: every PutObject gets 503 SlowDown until botocore's retries run out; "
        "the spool grows and the health command sees no new object (routine throttling was absorbed before)",
    ),
    Scenario(
        name="blind-dns-temporary-failure-urllib",
        cause="dns_failure",
        evidence="Temporary failure in name resolution",
        build=_resolver_lost_the_name,
        story="config management rewrites the poller's hosts file without feed.desk.internal and no resolver "
        "answers; urllib fails with EAI_AGAIN and the poller backs off for 30 s, its log going quiet",
        requires=("root", "unshare"),
    ),
    Scenario(
        name="blind-asyncio-task-exception-never-retrieved",
        cause="unhandled_exception",
        evidence="KeyError",
        build=_task_never_retrieved,
        story="the venue renames price to px; the forgotten consumer task dies on KeyError('price') and asyncio "
        "logs 'Task exception was never retrieved' at the next collection, while the loop idles on",
    ),
    Scenario(
        name="blind-go-panic-index-out-of-range-restart-loop",
        cause="unhandled_exception",
        evidence="index out of range [3] with length 3",
        build=_go_panic,
        story="the venue thins ETH-PERP's book to three levels; the Go syncer, built for four, panics with index "
        "out of range and a goroutine dump before it listens, at every restart of its loop",
    ),
    Scenario(
        name="blind-signature-expired-clock-skew-403",
        cause="auth_failure",
        evidence="Signature expired",
        build=_clock_skew,
        story="the host's clock falls five minutes behind the venue's; every signed request is refused with 403 "
        "'Signature expired' and the hedger's health turns 503",
    ),
    Scenario(
        name="blind-parquet-enospc-on-tmpfs",
        cause="disk_full",
        evidence="No space left on device",
        build=_lake_volume_full,
        story="a backfill fills the lake's 4 MB volume; every Parquet part then fails in pyarrow with Arrow's "
        "'Error writing bytes to file ... No space left on device' and no part is added",
        requires=("root",),
    ),
    Scenario(
        name="blind-two-locks-deadlock-silent",
        cause="hung",
        evidence=service_pid,
        build=_lock_order_deadlock,
        story="the journal rotation takes the cache lock while holding the journal lock, as the marks refresher "
        "takes them the other way round; both threads wait forever and the log goes quiet, saying nothing",
        evidence_with_py_spy="rotate_journal",
    ),
    Scenario(
        name="blind-node-eaddrinuse-forgotten-http-server",
        cause="address_in_use",
        evidence="EADDRINUSE",
        build=_port_taken_by_debug_server,
        story="a deploy restarts the Node quote API; in the gap someone's python3 -m http.server takes its port, "
        "so every start fails with listen EADDRINUSE and /healthz answers 404 from the wrong program",
        requires=("node",),
    ),
    Scenario(
        name="blind-node-heap-out-of-memory-restart-loop",
        cause="out_of_memory",
        evidence="JavaScript heap out of memory",
        build=_node_heap_limit,
        story="the month-end positions snapshot is far larger; the Node report API, capped at a 16 MB heap, "
        "aborts in JSON.parse with V8's 'Reached heap limit' at the reload and at every restart",
        requires=("node",),
    ),
    Scenario(
        name="blind-grpc-deadline-exceeded",
        cause="upstream_timeout",
        evidence="DeadlineExceeded",
        build=_rpc_deadline_exceeded,
        story="the quote service's handlers stall; it accepts and reads every call but answers none, so each "
        "GetQuotes outlives its 500 ms deadline (a few deadlines were routine before) and no quote is written",
    ),
    Scenario(
        name="blind-key-rotated-unreadable-to-nobody",
        cause="permission_denied",
        evidence="Permission denied",
        build=_key_made_unreadable,
        story="config management rotates the settlement agent's API key with mode 0600 root; the agent, running "
        "as nobody, rereads it, dies on PermissionError (logged through syslog) and is gone",
        requires=("root",),
    ),
    Scenario(
        name="blind-sync-requests-call-blocks-event-loop",
        cause="hung",
        evidence=service_pid,
        build=_sync_call_blocks_loop,
        story="a market maker calls requests.get without a timeout inside a coroutine; the venue's endpoint "
        "stops answering and the event loop waits in the read: no heartbeat, no line in the log",
        cause_with_py_spy="event_loop_blocked",
        evidence_with_py_spy="refresh_book",
    ),
    Scenario(
        name="blind-pydantic-settings-invalid-env-file",
        cause="import_or_config_error",
        evidence="validation error for Settings",
        build=_settings_do_not_parse,
        story="an operator raises the position limit to '250k' in the risk service's env file and restarts it; "
        "pydantic refuses the value at every start of its loop and no heartbeat is written",
    ),
    Scenario(
        name="blind-node-emfile-descriptor-leak",
        cause="too_many_open_files",
        evidence="EMFILE",
        build=_descriptor_leak,
        story="a Node report writer never closes the reports it keeps for the uploader; under ulimit -n 100 the "
        "next open fails with EMFILE, report after report, and no report is written",
        requires=("node",),
    ),
]
