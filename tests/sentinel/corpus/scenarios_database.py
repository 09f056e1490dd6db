"""Databases that lock, drop connections, refuse them, or reject a rotated password, through sqlite3,
SQLAlchemy, psycopg2, asyncpg, redis-py and pymongo."""

from __future__ import annotations

import sys

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Helper, Plan, Run, Scenario


def start_db(run: Run) -> Helper:
    return run.helper("db_server.py", str(run.path("db.mode")), ready="db.port")


def set_db_mode(run: Run, mode: str) -> None:
    run.mark_failing()
    run.path("db.mode").write_text(mode)


def kill_db(run: Run, db: Helper) -> None:
    run.mark_failing()
    db.kill()


def locked_by_backup_job(run: Run) -> Plan:
    run.install("db_writer.py")
    database = run.out / "fills.db"
    log = run.log("writer.log")

    def backup_takes_the_lock() -> None:
        run.mark_failing()
        run.helper("lock_holder.py", str(database), ready="locked")

    return Plan(
        service="db_writer.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="fills",
            log=log,
            noise=("zero_stats", "retry_ok"),
            loud_after=["ws_late"],
            driver="sqlite3",
            database=str(database),
            output="status_file",
            status_file=str(run.out / "status.json"),
        ),
        # Not a query on the same database: while the lock is held, the check could not read it either.
        monitor=blocks.monitor(
            blocks.fresh_file(run.out / "status.json"), logs=[log], process=run.pattern("db_writer.py")
        ),
        output=run.log("writer.stderr"),
        trigger=backup_takes_the_lock,
    )


def locked_sqlalchemy(run: Run) -> Plan:
    run.install("db_writer.py", "healthcheck.py")
    run.vendor("sqlalchemy")
    database = run.out / "ledger.db"
    status = run.out / "status.json"
    log = run.log("ledger.log")

    def migration_takes_the_lock() -> None:
        run.mark_failing()
        run.helper("lock_holder.py", str(database), ready="locked")

    return Plan(
        service="db_writer.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="ledger",
            log=log,
            noise=("deprecation", "zero_stats"),
            driver="sqlalchemy",
            database=str(database),
            output="status_file",
            status_file=str(status),
        ),
        monitor=blocks.monitor(
            blocks.command([sys.executable, str(run.app / "healthcheck.py"), str(status), "1.5"]),
            logs=[log],
            process=run.pattern("db_writer.py"),
        ),
        output=run.log("ledger.stderr"),
        trigger=migration_takes_the_lock,
    )


def postgres_refused_in_loop(run: Run) -> Plan:
    run.install("db_writer.py")
    run.vendor("psycopg2")
    db = start_db(run)
    loop_log = run.log("writer.log")
    status = run.out / "status.json"
    return Plan(
        service="db_writer.py",
        params=blocks.service_params(
            run,
            "basic",
            logger="fills",
            noise=("retry_ok", "statsd"),
            driver="psycopg2",
            db_port=db.port,
            output="status_file",
            status_file=str(status),
            exit_on_error=True,
        ),
        monitor=blocks.monitor(
            blocks.fresh_file(status), logs=[loop_log], process=run.pattern("db_writer.py"), depends_on=["postgres"]
        ),
        others=[blocks.upstream("postgres", blocks.port_open(db.port))],
        upstreams=["postgres"],
        output=loop_log,
        loop_message="fills writer exited ($?), restarting",
        steady_restarts=2,
        trigger=lambda: kill_db(run, db),
    )


def postgres_closed_connection(run: Run) -> Plan:
    run.install("db_writer.py")
    run.vendor("psycopg2")
    db = start_db(run)
    log = run.log("settle.log")
    port = run.free_port()
    return Plan(
        service="db_writer.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="settle",
            log=log,
            noise=("retry_ok", "memory_usage", "oom_in_path"),
            driver="psycopg2",
            db_port=db.port,
            output="health",
            health_port=port,
            stale_after=1.0,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"),
            logs=[log],
            process=run.pattern("db_writer.py"),
            depends_on=["postgres"],
        ),
        others=[blocks.upstream("postgres", blocks.port_open(db.port))],
        upstreams=["postgres"],
        output=run.log("settle.stderr"),
        trigger=lambda: set_db_mode(run, "close"),
    )


def asyncpg_password_rotated(run: Run) -> Plan:
    run.install("orders_api.py")
    run.vendor("asyncpg")
    db = start_db(run)
    log = run.log("orders.log")
    port = run.free_port()
    return Plan(
        service="orders_api.py",
        params=blocks.service_params(
            run,
            "uvicorn",
            logger="uvicorn.error",
            log=log,
            noise=("deprecation", "auth_refresh"),
            db_port=db.port,
            port=port,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"), logs=[log], process=run.pattern("orders_api.py")
        ),
        output=run.log("orders.stderr"),
        trigger=lambda: set_db_mode(run, "reject-auth"),
    )


def asyncpg_connection_lost(run: Run) -> Plan:
    run.install("orders_api.py")
    run.vendor("asyncpg")
    db = start_db(run)
    log = run.log("orders.log")
    port = run.free_port()
    return Plan(
        service="orders_api.py",
        params=blocks.service_params(
            run, "uvicorn", logger="uvicorn.error", log=log, noise=("slow_request",), db_port=db.port, port=port
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"),
            logs=[log],
            process=run.pattern("orders_api.py"),
            depends_on=["postgres"],
        ),
        others=[blocks.upstream("postgres", blocks.port_open(db.port))],
        upstreams=["postgres"],
        output=run.log("orders.stderr"),
        trigger=lambda: set_db_mode(run, "close"),
    )


def redis_refused(run: Run) -> Plan:
    run.install("db_writer.py", "healthcheck.py")
    run.vendor("redis")
    db = start_db(run)
    log = run.log("counters.log")
    status = run.out / "status.json"
    return Plan(
        service="db_writer.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="counters",
            log=log,
            noise=("retry_ok", "zero_stats"),
            driver="redis",
            db_port=db.port,
            output="status_file",
            status_file=str(status),
        ),
        monitor=blocks.monitor(
            blocks.command([sys.executable, str(run.app / "healthcheck.py"), str(status), "1.5"]),
            logs=[log],
            process=run.pattern("db_writer.py"),
            depends_on=["redis"],
        ),
        others=[blocks.upstream("redis", blocks.port_open(db.port))],
        upstreams=["redis"],
        output=run.log("counters.stderr"),
        trigger=lambda: kill_db(run, db),
    )


def mongo_refused(run: Run) -> Plan:
    run.install("db_writer.py")
    run.vendor("pymongo")
    db = start_db(run)
    log = run.log("journal.log")
    return Plan(
        service="db_writer.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="journal",
            log=log,
            noise=("statsd", "deprecation"),
            loud_after=["sentry", "queue_depth"],
            driver="pymongo",
            db_port=db.port,
            output="artifacts",
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "fill-*.json"), logs=[log], process=run.pattern("db_writer.py")
        ),
        output=run.log("journal.stderr"),
        trigger=lambda: kill_db(run, db),
    )


SCENARIOS = [
    Scenario(
        "sqlite-locked-by-backup",
        "database_error",
        "database is locked",
        locked_by_backup_job,
        "A backup job holds SQLite's write lock; every insert fails with 'database is locked'.",
    ),
    Scenario(
        "sqlalchemy-locked",
        "database_error",
        "database is locked",
        locked_sqlalchemy,
        "A migration holds the lock; SQLAlchemy's OperationalError wraps sqlite3's, in structlog JSON.",
    ),
    Scenario(
        "postgres-refused-in-loop",
        "dependency_refused",
        "connection to server at",
        postgres_refused_in_loop,
        "Postgres is down; psycopg2's two-line OperationalError at every restart of the writer's loop.",
    ),
    Scenario(
        "postgres-closed-connection",
        "database_error",
        "server closed the connection unexpectedly",
        postgres_closed_connection,
        "Postgres accepts connections but drops them; psycopg2 says the server closed the connection, while "
        "the postgres monitor (a port check) stays healthy.",
    ),
    Scenario(
        "asyncpg-password-rotated",
        "auth_failure",
        "password authentication failed",
        asyncpg_password_rotated,
        "The database password is rotated; asyncpg's InvalidPasswordError in uvicorn's 'Exception in ASGI "
        "application' blocks, beside 500 access lines.",
    ),
    Scenario(
        "asyncpg-connection-lost",
        "database_error",
        "connection was closed in the middle of operation",
        asyncpg_connection_lost,
        "The database drops every connection; asyncpg's ConnectionDoesNotExistError in uvicorn's format.",
    ),
    Scenario(
        "redis-refused",
        "dependency_refused",
        "Error 111 connecting to",
        redis_refused,
        "Redis is down; redis-py's ConnectionError in structlog JSON, and the redis monitor fails.",
    ),
    Scenario(
        "mongo-refused",
        "dependency_refused",
        "ServerSelectionTimeoutError",
        mongo_refused,
        "MongoDB is down; pymongo's ServerSelectionTimeoutError, whose refusal is deep in a long line.",
    ),
]
