"""Config blocks and service parameters, written the way a user writes them in horus.yaml."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.sentinel.corpus.harness import Run

INTERVAL = 0.2
CHECK_TIMEOUT = 2.0


def monitor(
    check: dict[str, Any],
    *,
    logs: list[Path] | tuple[Path, ...] = (),
    process: str | None = None,
    user: str | None = None,
    crash_dir: Path | None = None,
    heal: dict[str, Any] | None = None,
    work_tree: Path | None = None,
    depends_on: list[str] | tuple[str, ...] = (),
    interval: float = INTERVAL,
    min_failures: int = 2,
) -> dict[str, Any]:
    """A monitor's block: its check, where its evidence is, how it heals, and what it depends on."""
    block: dict[str, Any] = {
        "interval_seconds": interval,
        "check_timeout_seconds": CHECK_TIMEOUT,
        "min_failures_to_heal": min_failures,
        "check": check,
    }
    evidence: dict[str, Any] = {}
    if logs:
        evidence["logs"] = [str(path) for path in logs]
    if process:
        evidence["process_pattern"] = process
    if user:
        evidence["user"] = user
    if crash_dir:
        evidence["crash_dir"] = str(crash_dir)
    if evidence:
        block["evidence"] = evidence
    if heal:
        block["heal"] = heal
    if work_tree:
        block["work_tree"] = str(work_tree)
    if depends_on:
        block["depends_on"] = list(depends_on)
    return block


def upstream(name: str, check: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "interval_seconds": 5, "check_timeout_seconds": CHECK_TIMEOUT, "check": check}


def artifacts(directory: Path, pattern: str = "*", window: float = 1.5) -> dict[str, Any]:
    return {
        "type": "artifact_growth",
        "glob": {"directory": str(directory), "pattern": pattern},
        "window_seconds": window,
    }


def sqlite_rows(database: Path, query: str, window: float = 1.5) -> dict[str, Any]:
    return {"type": "artifact_growth", "sqlite": {"database": str(database), "query": query}, "window_seconds": window}


def log_growth(path: Path, window: float = 1.5) -> dict[str, Any]:
    return {"type": "artifact_growth", "file_size": str(path), "window_seconds": window}


def stale_log(path: Path, max_age: float = 1.5) -> dict[str, Any]:
    return {"type": "log_staleness", "log_file": str(path), "max_age_seconds": max_age}


def http(url: str, timeout: float = 1.0) -> dict[str, Any]:
    return {"type": "http_health", "url": url, "timeout_seconds": timeout}


def port_open(port: int) -> dict[str, Any]:
    return {"type": "port_open", "host": "127.0.0.1", "port": port, "timeout_seconds": 1.0}


def alive(pattern: str) -> dict[str, Any]:
    return {"type": "process_alive", "process_pattern": pattern}


def heartbeat(
    path: Path, max_age: float = 1.5, channels: dict[str, float] | None = None, crash_dir: Path | None = None
) -> dict[str, Any]:
    check: dict[str, Any] = {"type": "heartbeat", "path": str(path), "max_age_seconds": max_age}
    if channels:
        check["channels"] = channels
    if crash_dir:
        check["crash_dir"] = str(crash_dir)
    return check


def fresh_file(path: Path, max_age: float = 1.5) -> dict[str, Any]:
    return {"type": "file_exists", "path": str(path), "max_age_seconds": max_age}


def command(argv: list[str], timeout: float = 2.0) -> dict[str, Any]:
    return {"type": "command", "command": argv, "timeout_seconds": timeout}


def kill(pattern: str) -> dict[str, Any]:
    return {"action": "kill_process", "process_pattern": pattern, "grace_seconds": 2}


def version(run: Run, commits: list[tuple[str, float]]) -> None:
    """Make the service's app/ a git work tree with ``commits`` (subject, seconds ago), oldest first; each
    one adds a line to CHANGELOG.md, as a docs-only change does."""
    (run.app / ".gitignore").write_text("__pycache__/\n")
    run.git("init", "-q", "-b", "main")
    now = time.time()
    for subject, age in commits:
        with (run.app / "CHANGELOG.md").open("a") as changelog:
            changelog.write(f"- {subject}\n")
        run.git("add", "-A")
        run.git("commit", "-q", "-m", subject, at=now - age)


def service_params(
    run: Run, log_format: str, *, logger: str, log: Path | None = None, noise: tuple[str, ...] = (), **more: Any
) -> dict[str, Any]:
    """The parameters every service reads: its log, its format, its routine noise, and the rest."""
    return {
        "logger": logger,
        "log_format": log_format,
        "log_file": str(log) if log else None,
        "noise": list(noise),
        "tick_seconds": 0.1,
        "out_dir": str(run.out),
        **more,
    }
