"""Log rotation of every common kind is not a false alarm, and never hides a writer that stopped.

Each mode is run for real: logrotate itself (create, nocreate, copytruncate, dateext, compress with and
without delaycompress) on a log a live writer thread keeps writing, and Python's own rotating handlers.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.log_staleness import LogStalenessCheck, LogStalenessOptions
from horus.clock import SystemClock
from horus.engine.runner import run_inline
from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

MAX_AGE = 0.4
CTX = ProbeContext(clock=SystemClock(), http=None)  # type: ignore[arg-type]
LOGROTATE = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
needs_logrotate = pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed (apt-get install logrotate)")


def make_check(path: Path) -> LogStalenessCheck:
    options = LogStalenessOptions.model_validate(
        {"type": "log_staleness", "log_file": str(path), "max_age_seconds": MAX_AGE}
    )
    return LogStalenessCheck(options)


def look(check: LogStalenessCheck):
    return run_inline(check, CTX).result


class Writer:
    """A service that writes a line every 20 ms to the file it opened, and reopens its log only when told
    (as a postrotate script's SIGHUP would), like most daemons."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a")  # noqa: SIM115 - held open across rotations, as a service does
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with self._lock:
                self._file.write("tick\n")
                self._file.flush()

    def reopen(self) -> None:
        with self._lock:
            self._file.close()
            self._file = open(self.path, "a")  # noqa: SIM115

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._file.close()


def logrotate(tmp_path: Path, log: Path, *directives: str) -> None:
    config = tmp_path / "logrotate.conf"
    body = "\n".join(f"    {d}" for d in ("rotate 5", "missingok", *directives))
    config.write_text(f"{log} {{\n{body}\n}}\n")
    proc = subprocess.run(
        [LOGROTATE, "-f", "-s", str(tmp_path / "logrotate.state"), str(config)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def healthy_for(check: LogStalenessCheck, seconds: float) -> list[str]:
    """Look every 50 ms for ``seconds`` (several limits): every look must be healthy."""
    reasons = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = look(check)
        assert result.status is Status.HEALTHY, result.reason
        reasons.append(result.reason)
        time.sleep(0.05)
    return reasons


def goes_stale(check: LogStalenessCheck) -> str:
    """Once the writer stopped, the log is stale within its limit (and a little)."""
    deadline = time.monotonic() + MAX_AGE + 1.0
    while time.monotonic() < deadline:
        result = look(check)
        if result.status is Status.UNHEALTHY:
            return result.reason
        time.sleep(0.05)
    raise AssertionError(f"never stale: {look(check).reason}")


LOGROTATE_MODES = {
    "create": ("create",),
    "nocreate": ("nocreate",),
    "copytruncate": ("copytruncate",),
    "dateext": ("create", "dateext"),
    "dateext-dateformat": ("create", "dateext", "dateformat .%Y-%m-%d-%s"),
    "compress-delaycompress": ("create", "compress", "delaycompress"),
}


@needs_logrotate
@pytest.mark.parametrize("mode", list(LOGROTATE_MODES))
def test_a_writer_that_has_not_reopened_its_log_after_logrotate_is_not_stale(tmp_path, mode):
    log = tmp_path / "bot.log"
    writer = Writer(log)
    check = make_check(log)
    # Two rotations, as on two days, where older siblings pile up (and, with delaycompress, get compressed).
    cycles = 2 if mode in ("create", "compress-delaycompress") else 1
    try:
        healthy_for(check, 0.2)
        for _ in range(cycles):
            logrotate(tmp_path, log, *LOGROTATE_MODES[mode])
            healthy_for(check, 2.5 * MAX_AGE)  # still writing the rotated file all along
            writer.reopen()  # the postrotate signal arrives: from now on it writes bot.log again
            reasons = healthy_for(check, 0.2)
            assert "rotated" not in reasons[-1]
    finally:
        writer.stop()
    assert goes_stale(check).startswith("bot.log")


@needs_logrotate
def test_after_create_the_reason_names_the_rotated_file_the_writer_is_on(tmp_path):
    log = tmp_path / "bot.log"
    writer = Writer(log)
    check = make_check(log)
    try:
        look(check)
        logrotate(tmp_path, log, "create")
        time.sleep(MAX_AGE + 0.1)  # logrotate's new bot.log is now older than the limit
        result = look(check)
    finally:
        writer.stop()
    assert result.is_healthy
    assert "bot.log (rotated to bot.log.1) last written" in result.reason


@needs_logrotate
@pytest.mark.parametrize("mode", ["create", "nocreate", "dateext", "compress-nodelay"])
def test_a_writer_that_stopped_before_logrotate_is_stale_within_its_limit_of_the_rotation(tmp_path, mode):
    directives = {"compress-nodelay": ("create", "compress")}.get(mode, LOGROTATE_MODES.get(mode, ()))
    log = tmp_path / "bot.log"
    writer = Writer(log)
    check = make_check(log)
    look(check)
    writer.stop()
    logrotate(tmp_path, log, *directives)  # the new, empty bot.log (or the fresh .gz) is no sign of life
    assert goes_stale(check).startswith("bot.log")


def test_a_fresh_horus_finds_the_writer_on_its_rotated_file_when_the_log_is_missing(tmp_path):
    # Horus started after a rename without create: it never saw the writer's file under its own name.
    log = tmp_path / "bot.log"
    writer = Writer(log)
    try:
        time.sleep(0.05)
        os.rename(log, tmp_path / "bot.log.1")
        check = make_check(log)
        reasons = healthy_for(check, 2 * MAX_AGE)
        assert "rotated to bot.log.1" in reasons[-1]
    finally:
        writer.stop()


def test_a_writer_followed_under_a_name_that_is_not_a_rotation_suffix(tmp_path):
    log = tmp_path / "bot.log"
    writer = Writer(log)
    check = make_check(log)
    try:
        healthy_for(check, 0.1)
        os.rename(log, tmp_path / "old-bot.log")
        log.touch()
        reasons = healthy_for(check, 2.5 * MAX_AGE)
        assert "rotated to old-bot.log" in reasons[-1]
    finally:
        writer.stop()


def test_a_compressed_copy_or_another_file_never_passes_for_the_writer(tmp_path):
    log = tmp_path / "bot.log"
    log.write_text("old\n")
    old = time.time() - 60
    os.utime(log, (old, old))
    check = make_check(log)
    for name in ("bot.log.1.gz", "bot.log.2.xz", "bot.log.bak", "bot.logger", "other.log.1"):
        (tmp_path / name).write_text("written just now\n")
    assert look(check).status is Status.UNHEALTHY


def python_logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(f"horus-rotation-test.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def log_for(logger: logging.Logger, seconds: float, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            logger.info("tick %s", "x" * 100)
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["RotatingFileHandler", "TimedRotatingFileHandler", "WatchedFileHandler"])
def test_pythons_own_rotating_handlers_are_never_stale_while_logging(tmp_path, kind):
    log = tmp_path / "bot.log"
    if kind == "RotatingFileHandler":
        handler: logging.Handler = logging.handlers.RotatingFileHandler(log, maxBytes=2000, backupCount=3)
    elif kind == "TimedRotatingFileHandler":
        handler = logging.handlers.TimedRotatingFileHandler(log, when="S", interval=1, backupCount=3)
    else:
        handler = logging.handlers.WatchedFileHandler(log)
    logger = python_logger(handler, kind)
    stop = threading.Event()
    thread = log_for(logger, 30, stop)
    check = make_check(log)
    try:
        time.sleep(0.05)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if kind == "WatchedFileHandler" and log.exists() and log.stat().st_size > 500:
                os.rename(log, tmp_path / f"bot.log.{int(time.monotonic() * 1000)}")  # rotated from outside
            result = look(check)
            assert result.status is Status.HEALTHY, result.reason
            time.sleep(0.05)
        rotated = [p.name for p in tmp_path.iterdir() if p.name.startswith("bot.log.")]
        assert rotated, "the handler never rotated: the test proved nothing"
    finally:
        stop.set()
        thread.join(5)
        handler.close()
        logger.removeHandler(handler)
    assert goes_stale(check).startswith("bot.log")


WRITER = """
import signal, sys, time
path = sys.argv[1]
f = open(path, "a")
def reopen(*_):
    global f
    f.close()
    f = open(path, "a")
signal.signal(signal.SIGHUP, reopen)
while True:
    f.write("tick\\n"); f.flush(); time.sleep(0.02)
"""


@needs_logrotate
def test_the_daemon_never_heals_a_writer_still_on_its_rotated_log_and_heals_it_once_it_stops(tmp_path):
    log, marker = tmp_path / "bot.log", tmp_path / "healed"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log)])
    config = tmp_path / "horus.json"
    monitor = {
        "name": "bot",
        "interval_seconds": 30,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 1},
        "heal": {"action": "run_script", "command": ["touch", str(marker)]},
    }
    config.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": [monitor]}))
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(log.exists, timeout=15)
        wait_until_sync(lambda: bool(events.named("horus.started")), timeout=15)
        time.sleep(0.5)  # a first look or two, at the writer's file under its own name
        logrotate(tmp_path, log, "create")  # no postrotate: the writer stays on bot.log.1
        time.sleep(3.0)  # three limits
        assert not marker.exists(), "healed a writer that was writing its rotated log"
        writer.kill()
        writer.wait(5)
        wait_until_sync(marker.exists, timeout=10)
    finally:
        writer.kill()
        assert stop_daemon(daemon) == 0
