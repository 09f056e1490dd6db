"""The machine's limits, reached for real: a full tmpfs, RLIMIT_AS, RLIMIT_NOFILE, a dropped privilege."""

from __future__ import annotations

import os
import pwd
import sys

from tests.sentinel.corpus import blocks
from tests.sentinel.corpus.harness import Plan, Run, Scenario

TINY = "64k"


def disk_full_artifacts(run: Run) -> Plan:
    run.install("exporter.py")
    volume = run.path("data")
    run.mount_tmpfs(volume, TINY)
    log = run.log("exporter.log")
    params = blocks.service_params(
        run,
        "asctime",
        logger="exporter",
        log=log,
        noise=("disk_usage", "deprecation", "zero_stats"),
        mode="artifacts",
        loud_after=["queue_depth"],
    )
    params["out_dir"] = str(volume)
    return Plan(
        service="exporter.py",
        params=params,
        monitor=blocks.monitor(
            blocks.artifacts(volume, "snap-*.json"),
            logs=[log],
            process=run.pattern("exporter.py"),
            heal=blocks.kill(run.pattern("exporter.py")),
        ),
        output=run.log("exporter.stderr"),
    )


def disk_full_own_log(run: Run) -> Plan:
    run.install("exporter.py")
    volume = run.path("var-log")
    run.mount_tmpfs(volume, TINY)
    log = volume / "exporter.log"
    stderr = run.log("exporter.stderr")
    return Plan(
        service="exporter.py",
        params=blocks.service_params(
            run, "bracketed", logger="exporter", log=log, noise=("disk_usage", "retry_ok"), mode="log"
        ),
        # Not log_staleness: a write that fails for want of space still updates the file's mtime on Linux.
        monitor=blocks.monitor(blocks.log_growth(log), logs=[log, stderr], process=run.pattern("exporter.py")),
        output=stderr,
        loop_message="exporter exited with status $?; restarting in 1s",
    )


def disk_full_sqlite(run: Run) -> Plan:
    run.install("exporter.py")
    volume = run.path("db")
    run.mount_tmpfs(volume, "96k")
    log = run.log("fills-store.log")
    database = volume / "fills.db"
    return Plan(
        service="exporter.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="fills_store",
            log=log,
            noise=("disk_usage", "memory_usage"),
            mode="sqlite",
            database=str(database),
            big_bytes=16_000,
        ),
        monitor=blocks.monitor(
            blocks.sqlite_rows(database, "SELECT count(*) FROM fills"), logs=[log], process=run.pattern("exporter.py")
        ),
        output=run.log("fills-store.stderr"),
    )


def memory_error_under_ulimit(run: Run) -> Plan:
    run.install("candles.py")
    log = run.log("candles.log")
    status = run.out / "candles.status.json"
    return Plan(
        service="candles.py",
        params=blocks.service_params(
            run,
            "basic",
            logger="candles",
            log=log,
            noise=("memory_usage", "deprecation"),
            state_file=str(run.path("candles.state.json")),
            status_file=str(status),
            big_window=120_000_000,
        ),
        monitor=blocks.monitor(
            blocks.fresh_file(status), logs=[log, run.log("loop.log")], process=run.pattern("candles.py")
        ),
        output=run.log("loop.log"),
        loop_message="candles.py exited with code $?. Respawning..",
        steady_restarts=2,
        ulimit="-v 800000",
    )


def memory_error_worker_thread(run: Run) -> Plan:
    run.install("ingest_worker.py")
    log = run.log("ingest.log")
    port = run.free_port()
    return Plan(
        service="ingest_worker.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="ingest",
            log=log,
            noise=("memory_usage", "zero_stats"),
            health_port=port,
            memory_limit_mb=1024,
            big_batch_bytes=6 * 1024**3,
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"), logs=[log], process=run.pattern("ingest_worker.py")
        ),
        output=run.log("ingest.stderr"),
    )


def memory_error_json_logger(run: Run) -> Plan:
    run.install("snapshot_parser.py")
    log = run.log("parser.json.log")
    return Plan(
        service="snapshot_parser.py",
        params=blocks.service_params(
            run,
            "jsonlogger",
            logger="book.parser",
            log=log,
            noise=("memory_usage", "traceback_ok", "oom_in_path"),
            loud_after=["sentry"],
            memory_limit_mb=1024,
            big_snapshot_bytes=8 * 1024**3,
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "book-*.json"), logs=[log], process=run.pattern("snapshot_parser.py")
        ),
        output=run.log("parser.stderr"),
    )


def numpy_cannot_allocate(run: Run) -> Plan:
    run.install("features.py")
    run.vendor("numpy")
    log = run.log("features.log")
    return Plan(
        service="features.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="features",
            log=log,
            noise=("memory_usage", "oom_in_path"),
            loud_after=["gc_pause"],
            memory_limit_mb=1024,
            big_rows=20_000_000,
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "features-*.json"), logs=[log], process=run.pattern("features.py")
        ),
        output=run.log("features.stderr"),
    )


def descriptors_leaked(run: Run) -> Plan:
    run.install("exporter.py")
    log = run.log("exporter.log")
    return Plan(
        service="exporter.py",
        params=blocks.service_params(
            run,
            "asctime",
            logger="exporter",
            log=log,
            noise=("zero_stats", "retry_ok"),
            mode="descriptors",
            nofile=48,
            loud_after=["gc_pause", "ws_late"],
        ),
        monitor=blocks.monitor(
            blocks.artifacts(run.out, "snap-*.json"), logs=[log], process=run.pattern("exporter.py")
        ),
        output=run.log("exporter.stderr"),
    )


def descriptors_accept_loop(run: Run) -> Plan:
    run.install("accept_server.py")
    log = run.log("gateway.log")
    port = run.free_port()
    return Plan(
        service="accept_server.py",
        params=blocks.service_params(
            run,
            "bracketed",
            logger="gateway",
            log=log,
            noise=("slow_request", "zero_stats"),
            port=port,
            nofile=40,
            audit_file=str(run.log("audit.log")),
        ),
        monitor=blocks.monitor(
            blocks.http(f"http://127.0.0.1:{port}/health"), logs=[log], process=run.pattern("accept_server.py")
        ),
        output=run.log("gateway.stderr"),
    )


def _give_to(path: os.PathLike[str], user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def reports_taken_back(run: Run) -> Plan:
    run.install("reporter.py")
    log = run.log("reports.log")
    reports = run.path("reports")
    reports.mkdir()
    _give_to(reports, "nobody")

    def archive_job_takes_the_directory() -> None:
        run.mark_failing()
        os.chown(reports, 0, 0)
        reports.chmod(0o755)

    return Plan(
        service="reporter.py",
        params=blocks.service_params(
            run,
            "syslog",
            logger="reports",
            tag="fill-reports",
            log=log,
            noise=("deprecation", "disk_usage"),
            loud_after=["queue_depth"],
            mode="reports",
            run_as="nobody",
            reports_dir=str(reports),
        ),
        monitor=blocks.monitor(
            blocks.artifacts(reports, "fills-*.csv"), logs=[log], process=run.pattern("reporter.py"), user="nobody"
        ),
        output=run.log("reports.stderr"),
        trigger=archive_job_takes_the_directory,
    )


def key_rewritten_as_root(run: Run) -> Plan:
    run.install("reporter.py", "healthcheck.py")
    log = run.log("signer.log")
    secrets = run.path("secrets")
    secrets.mkdir()
    key = secrets / "api.key"
    key.write_text("k-7f3a9c0e2b\n")
    key.chmod(0o640)
    _give_to(key, "nobody")
    status = run.out / "signer.status.json"
    run.out.chmod(0o777)

    def deploy_rewrites_the_key() -> None:
        run.mark_failing()
        key.unlink()
        key.write_text("k-9d1e44a0c7\n")
        key.chmod(0o600)

    return Plan(
        service="reporter.py",
        params=blocks.service_params(
            run,
            "structlog",
            logger="signer",
            log=log,
            noise=("auth_refresh", "zero_stats"),
            mode="key",
            run_as="nobody",
            key_file=str(key),
            status_file=str(status),
        ),
        monitor=blocks.monitor(
            blocks.command([sys.executable, str(run.app / "healthcheck.py"), str(status), "1.5"]),
            logs=[log],
            process=run.pattern("reporter.py"),
            user="nobody",
        ),
        output=run.log("signer.stderr"),
        trigger=deploy_rewrites_the_key,
    )


SCENARIOS = [
    Scenario(
        "disk-full-artifacts",
        "disk_full",
        "No space left on device",
        disk_full_artifacts,
        "Snapshots grow until their tmpfs volume is full; each export's OSError is logged with its traceback.",
        requires=("root",),
    ),
    Scenario(
        "disk-full-own-log",
        "disk_full",
        "No space left on device",
        disk_full_own_log,
        "The log's own volume fills: only stderr says so, in logging's '--- Logging error ---' blocks.",
        requires=("root",),
    ),
    Scenario(
        "disk-full-sqlite",
        "disk_full",
        "database or disk is full",
        disk_full_sqlite,
        "The fills database's volume fills: sqlite3.OperationalError in structlog JSON.",
        requires=("root",),
    ),
    Scenario(
        "memory-error-under-ulimit",
        "out_of_memory",
        "MemoryError",
        memory_error_under_ulimit,
        "The candle window jumps past the shell loop's ulimit -v: MemoryError at every restart.",
    ),
    Scenario(
        "memory-error-worker-thread",
        "out_of_memory",
        "MemoryError",
        memory_error_worker_thread,
        "The ingest thread dies of MemoryError under RLIMIT_AS; /health turns 503 and keeps logging.",
    ),
    Scenario(
        "memory-error-json-logger",
        "out_of_memory",
        "MemoryError",
        memory_error_json_logger,
        "A snapshot buffer beyond RLIMIT_AS, logged by python-json-logger, beside a handled traceback "
        "repeated while healthy.",
    ),
    Scenario(
        "numpy-cannot-allocate",
        "out_of_memory",
        "Unable to allocate",
        numpy_cannot_allocate,
        "numpy's _ArrayMemoryError ('Unable to allocate 9.54 GiB for an array ...') under RLIMIT_AS: the word "
        "MemoryError is nowhere in the message.",
    ),
    Scenario(
        "descriptors-leaked",
        "too_many_open_files",
        "Too many open files",
        descriptors_leaked,
        "A reconnect path leaks a socket per call under RLIMIT_NOFILE; opening the next snapshot fails.",
    ),
    Scenario(
        "descriptors-accept-loop",
        "too_many_open_files",
        "Too many open files",
        descriptors_accept_loop,
        "An asyncio server leaks descriptors until it cannot accept; asyncio logs 'out of system resource'.",
    ),
    Scenario(
        "reports-taken-back",
        "permission_denied",
        "Permission denied",
        reports_taken_back,
        "The service dropped to nobody; a root job takes its reports directory back (syslog format).",
        requires=("root",),
    ),
    Scenario(
        "key-rewritten-as-root",
        "permission_denied",
        "Permission denied",
        key_rewritten_as_root,
        "A deploy rewrites the API key as root 0600; the service, running as nobody, cannot re-read it.",
        requires=("root",),
    ),
]
