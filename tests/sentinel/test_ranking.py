"""The ranking, from the user's side: real log files and real processes, the causes an operator would name.

Each test is one way the old fixed confidences got the cause wrong: noise that repeated all through the
healthy period, a count of zero read as a mention, py-spy's frame pushing the logged cause down, a deploy
made before the last healthy look, a SyntaxError's location, a JSON log line holding a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from horus.config.models import HorusConfig, MonitorSettings
from horus.sentinel.diagnosis import explain
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.snapshot import take_snapshot
from tests.process_support import ProcessSpawner
from tests.sentinel.support import STALE, analyse_with

PY_SPY = shutil.which("py-spy", path=os.path.dirname(sys.executable))


def monitor(check: dict[str, Any], **extra: Any) -> MonitorSettings:
    [settings] = HorusConfig.model_validate({"monitors": [{"name": "bot", "check": check, **extra}]}).monitor_settings()
    return settings


def stamp(at: float) -> str:
    """Python logging's default asctime, in local time."""
    moment = datetime.fromtimestamp(at)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + f",{int(at * 1000) % 1000:03d}"


def write_log(path: Path, lines: list[tuple[float, str]]) -> Path:
    path.write_text("".join(f"{stamp(at)} {text}\n" for at, text in lines))
    return path


def snapshot_of(path: Path, **options: Any) -> dict[str, Any]:
    settings = monitor({"type": "log_staleness", "log_file": str(path), "max_age_seconds": 300}, **options)
    return take_snapshot(settings, crash_evidence=None, py_spy=False)


def causes(hypotheses: list[Hypothesis]) -> list[str]:
    return [h.cause for h in hypotheses]


# --- baseline and recency --------------------------------------------------------------------------------


def test_a_warning_repeated_all_through_the_healthy_period_loses_to_the_last_error_before_the_service_went_quiet(
    tmp_path,
):
    now = time.time()
    lines = []
    for minute in range(30, 5, -1):
        lines.append((now - minute * 60, "WARNING feed: rate limit exceeded on /ticker, retrying in 1 s"))
        lines.append((now - minute * 60 + 2, "INFO strategy: 3 fills, spread 0.4%"))
    last_error = (
        "ERROR feed: ReadTimeout: HTTPSConnectionPool(host='api.exchange.example', port=443): Read timed out. "
        "(read timeout=10)"
    )
    lines.append((now - 312, last_error))
    log = write_log(tmp_path / "bot.log", lines)

    ranked = analyse_with(snapshot=snapshot_of(log), last_healthy_at=now - 10)

    assert ranked[0].cause == "upstream_timeout" and ranked[0].confidence >= 0.5
    assert f"log: {stamp(now - 312)} {last_error}" in ranked[0].evidence
    noise = next(h for h in ranked if h.cause == "rate_limited")
    assert noise.confidence < 0.5 and noise.title.startswith("possible: ")


def test_lines_that_look_like_errors_but_were_there_all_along_make_no_probable_cause(tmp_path):
    now = time.time()
    routine = [
        (now - minute * 60, "WARNING db: connection refused by replica-2, using the primary")
        for minute in range(40, 5, -1)
    ]
    log = write_log(tmp_path / "bot.log", [*routine, (now - 305, "INFO strategy: 3 fills, spread 0.4%")])

    ranked = analyse_with(snapshot=snapshot_of(log), last_healthy_at=now - 5)

    assert all(h.confidence < 0.5 for h in ranked), [(h.title, h.confidence) for h in ranked]


def test_a_count_of_zero_is_no_mention_of_what_it_counts(tmp_path):
    now = time.time()
    stats = [(now - 60 * m, "INFO stats: 0 errors, 0 throttled requests, 12 orders, rate_limited=0") for m in range(9)]
    refused = "ERROR exchange: ConnectionRefusedError: [Errno 111] Connection refused"
    log = write_log(tmp_path / "bot.log", [*stats, (now - 20, refused)])

    ranked = analyse_with(snapshot=snapshot_of(log), last_healthy_at=now - 30)

    assert ranked[0].cause == "dependency_refused"
    assert "rate_limited" not in causes(ranked)


def test_a_match_far_along_a_long_line_is_quoted_with_the_match(tmp_path):
    context = " ".join(f"field{n}=value{n}" for n in range(60))
    line = f"ERROR writer: flush failed ({context}): OSError: [Errno 28] No space left on device"
    log = write_log(tmp_path / "bot.log", [(time.time() - 1, line)])

    [first, *_] = analyse_with(snapshot=snapshot_of(log))

    assert first.cause == "disk_full"
    assert "No space left on device" in first.evidence[0] and len(first.evidence[0]) <= 310


# --- the forms the same causes take ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        (
            "botocore.exceptions.ClientError: An error occurred (ThrottlingException) when calling the PutRecords "
            "operation (reached max retries: 4): Rate exceeded",
            "rate_limited",
        ),
        (
            "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for quota metric 'Read requests'",
            "rate_limited",
        ),
        ('psycopg2.OperationalError: FATAL:  password authentication failed for user "bot"', "auth_failure"),
        ("sqlite3.OperationalError: database is locked", "database_error"),
        ("ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "tls_failure"),
        ("socket.gaierror: [Errno -2] Name or service not known", "dns_failure"),
        ("OSError: [Errno 24] Too many open files: '/srv/bot/cache/42.json'", "too_many_open_files"),
    ],
)
def test_common_forms_of_a_cause_are_recognised(tmp_path, line, cause):
    log = write_log(tmp_path / "bot.log", [(time.time() - 1, f"ERROR bot: {line}")])

    [first, *_] = analyse_with(snapshot=snapshot_of(log))

    assert (first.cause, first.title.split(":")[0]) == (cause, "probable")


def test_oom_inside_a_path_is_not_out_of_memory(tmp_path):
    log = write_log(tmp_path / "bot.log", [(time.time() - 1, "INFO report: wrote /var/reports/OOM-audit/2026-11.txt")])

    assert "out_of_memory" not in causes(analyse_with(snapshot=snapshot_of(log)))


def test_the_message_a_shell_restart_loop_prints_when_its_child_is_killed_is_a_sigkill(tmp_path):
    log = tmp_path / "bot.log"
    loop = f"{sys.executable} -c 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'; echo \"bot exited ($?)\""
    with log.open("w") as out:
        subprocess.run(["bash", "-c", loop], stdout=out, stderr=subprocess.STDOUT, timeout=30, check=False)

    [first, *_] = analyse_with(snapshot=snapshot_of(log))

    assert first.cause == "killed", log.read_text()
    assert any("Killed" in line or "137" in line for line in first.evidence)


def test_a_json_log_line_holding_a_traceback_reads_as_the_traceback(tmp_path):
    error = subprocess.run(
        [sys.executable, "-c", "def settle(order):\n    return order['price']\nsettle({})"],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    record = {"timestamp": "2026-11-21T02:23:01Z", "level": "error", "event": "settle failed", "exception": error}
    log = tmp_path / "bot.log"
    log.write_text(
        json.dumps({"timestamp": "2026-11-21T02:23:00Z", "event": "tick"}) + "\n" + json.dumps(record) + "\n"
    )

    [first, *_] = analyse_with(snapshot=snapshot_of(log))

    assert first.title == "probable: unhandled KeyError at <string>:2 in settle"
    assert "log: KeyError: 'price'" in first.evidence


# --- deploys and their errors -----------------------------------------------------------------------------


def git(repo: Path, *args: str, at: float | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Knox", "GIT_AUTHOR_EMAIL": "knox@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Knox", "GIT_COMMITTER_EMAIL": "knox@example.com"}
    if at is not None:
        env |= {"GIT_AUTHOR_DATE": f"@{int(at)} +0000", "GIT_COMMITTER_DATE": f"@{int(at)} +0000"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def test_a_syntax_error_deployed_before_the_last_healthy_look_blames_the_broken_file_and_its_commit(tmp_path):
    repo = tmp_path / "bot"
    repo.mkdir()
    now = time.time()
    git(repo, "init", "-q")
    (repo / "main.py").write_text("import strategy\nstrategy.run()\n")
    (repo / "strategy.py").write_text("def run():\n    return 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first version", at=now - 86400)
    (repo / "strategy.py").write_text("def run():\n    return spread(\n\ndef spread():\n    return 0.4\n")
    git(repo, "commit", "-q", "-am", "wider spreads", at=now - 120)  # committed, then the service restarted
    log = tmp_path / "bot.log"
    with log.open("w") as out:
        subprocess.run([sys.executable, "main.py"], cwd=repo, stdout=out, stderr=subprocess.STDOUT, check=False)
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 300}, work_tree=str(repo))
    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)

    # The service was last seen healthy 30 s ago, after the deploy's commit: the old process was still running.
    diagnosis = asyncio.run(explain(settings, snapshot, reason=STALE, last_healthy_at=now - 30, failing_since=now))
    first = diagnosis.top

    assert first.cause == "import_or_config_error" and first.confidence >= 0.85
    assert first.title.startswith("probable: SyntaxError in strategy.py:2 after commit ")
    assert any(e.startswith('log: File "') and 'strategy.py", line 2' in e for e in first.evidence)
    assert any(
        '"wider spreads" by Knox, ' in e and "before the service was last seen healthy; it changed strategy.py" in e
        for e in first.evidence
    )
    assert first.recommendation is not None and first.recommendation.startswith("Fix or revert commit ")
    assert "strategy.py" in first.recommendation


# --- stacks say where, the log says why --------------------------------------------------------------------


class SilentUpstream:
    """A loopback server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def upstream() -> Iterator[SilentUpstream]:
    server = SilentUpstream()
    yield server
    server.close()


SERVICE = """
import logging, socket, sys, time
LOG, port, MODE = {log!r}, {port!r}, {mode!r}
logging.basicConfig(filename=LOG, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("feed")

def fetch_book():
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /book HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        return conn.makefile("rb").readline()

def retry_after_timeout():
    log.error("ReadTimeout: HTTPConnectionPool(host='127.0.0.1', port=%d): Read timed out. (read timeout=5)", port)
    log.info("retrying in 600 s")
    open(LOG + ".ready", "w").close()
    time.sleep(600)

log.info("started")
if MODE == "sleeps":
    retry_after_timeout()
else:
    open(LOG + ".ready", "w").close()
    fetch_book()
"""


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def start_service(spawner: ProcessSpawner, tmp_path: Path, port: int, mode: str) -> tuple[str, Path]:
    """The feed service, detached (no descendant of the test, which stands for Horus): its marker and log."""
    log = tmp_path / "feed.log"
    marker = spawner.marker()
    spawned = spawner.detached(marker, SERVICE.format(log=str(log), port=port, mode=mode))
    ready = Path(str(log) + ".ready")
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert spawned.is_running() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    time.sleep(0.3)  # into the blocking call (the ready file is written just before it)
    return marker, log


def diagnose_feed(
    spawner: ProcessSpawner, tmp_path: Path, port: int, mode: str, *, py_spy: bool
) -> tuple[dict[str, Any], list[Hypothesis]]:
    """The feed service in ``mode``, snapshotted and ranked as at detection, five seconds after healthy."""
    marker, log = start_service(spawner, tmp_path, port, mode)
    settings = monitor(
        {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 300},
        evidence={"process_pattern": marker},
    )
    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=py_spy)
    return snapshot, analyse_with(snapshot=snapshot, last_healthy_at=time.time() - 5)


@pytest.mark.skipif(PY_SPY is None, reason="py-spy is not installed in the test environment")
@pytest.mark.parametrize("with_py_spy", [False, True])
def test_a_service_sleeping_between_retries_is_explained_by_what_it_logged_with_py_spy_or_without(
    tmp_path, spawner, upstream, monkeypatch, with_py_spy
):
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    _, ranked = diagnose_feed(spawner, tmp_path, upstream.port, "sleeps", py_spy=with_py_spy)

    first = ranked[0]
    assert first.cause == "upstream_timeout" and first.confidence >= 0.5, [(h.title, h.confidence) for h in ranked]
    if with_py_spy:
        assert any(
            e.startswith("py-spy: main thread (idle) in retry_after_timeout at <string>:") for e in first.evidence
        )
    assert not any(h.title.startswith("probable: stuck in") or h.cause == "hung" for h in ranked)


@pytest.mark.skipif(PY_SPY is None, reason="py-spy is not installed in the test environment")
def test_a_read_that_never_returns_is_described_through_the_services_own_caller(
    tmp_path, spawner, upstream, monkeypatch
):
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    snapshot, ranked = diagnose_feed(spawner, tmp_path, upstream.port, "blocks", py_spy=True)

    first = ranked[0]
    dumps = snapshot.get("py_spy", {}).get("dumps") or [{}]
    assert first.cause == "await_never_returned", (dumps, [(h.title, h.confidence) for h in ranked])
    assert "fetch_book at <string>:" in first.title and "readinto" in first.title.lower()


# --- loud output after the failure -------------------------------------------------------------------------


def test_the_error_that_began_a_failure_is_found_after_loud_output_pushed_it_out_of_the_tail(tmp_path):
    now = time.time()
    routine = [(now - 3600 + 30 * n, "INFO feed: 12 quotes in 4 ms") for n in range(100)]
    began = "ERROR db: psycopg2.OperationalError: could not connect to server: Connection refused (port 5432)"
    # The service goes on talking, loudly and about other things, for minutes after it stopped working.
    loud = [(now - 170 + n * 0.5, f"WARNING queue: event queue depth {1000 + 37 * n} exceeds 1000") for n in range(300)]
    log = write_log(tmp_path / "bot.log", [*routine, (now - 180, began), *loud])
    settings = monitor({"type": "http_health", "url": "http://127.0.0.1:9/health"}, evidence={"logs": [str(log)]})

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False, healthy_until=now - 200)
    [first, *_] = analyse_with(snapshot=snapshot, reason="HTTP 503 in 3 ms, expected 2xx", check_type="http_health")

    [entry] = snapshot["logs"]
    assert not any("Connection refused" in line for line in entry["tail"]), "the tail alone would miss it"
    assert first.cause == "dependency_refused" and first.confidence >= 0.5
    assert any("could not connect to server: Connection refused" in line for line in first.evidence)
