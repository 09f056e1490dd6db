from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from horus.checks.heartbeat import HeartbeatCheck, HeartbeatOptions
from horus.config.models import HorusConfig, MonitorSettings
from horus.sentinel.changes import Commit, config_changed_since, recent_commits
from horus.sentinel.rootcause import RULES, UNKNOWN_TITLE, disk_full, summarise
from horus.sentinel.snapshot import take_snapshot
from horus_sdk import deadline
from tests.process_support import ProcessSpawner
from tests.sentinel.support import STALE, analyse_with
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def monitor(check: dict[str, Any], heal: dict[str, Any] | None = None) -> MonitorSettings:
    raw: dict[str, Any] = {"name": "bot", "check": check}
    if heal is not None:
        raw["heal"] = heal
    [settings] = HorusConfig.model_validate({"monitors": [raw]}).monitor_settings()
    return settings


def snapshot_of_log(tmp_path: Path, lines: list[str]) -> dict[str, Any]:
    """A real log file, snapshotted as the engine would at detection."""
    log = tmp_path / "bot.log"
    log.write_text("".join(line + "\n" for line in lines))
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 300})
    return take_snapshot(settings, crash_evidence=None)


def git(repo: Path, *args: str, at: float | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Knox", "GIT_AUTHOR_EMAIL": "knox@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Knox", "GIT_COMMITTER_EMAIL": "knox@example.com"}
    if at is not None:
        env |= {"GIT_AUTHOR_DATE": f"@{int(at)} +0000", "GIT_COMMITTER_DATE": f"@{int(at)} +0000"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def log_line(text: str) -> str:
    return f"2026-11-21 02:23:01,874 bot ERROR {text}"


# --- one test per rule, from real files and real failures -----------------------------------------------


def test_a_log_ending_in_http_429_is_probably_rate_limiting_with_the_429_line_quoted(tmp_path):
    lines = [log_line(f"price {3000 + n}.5, order placed") for n in range(20)]
    lines += [
        log_line("GET https://clob.example.com/book -> HTTP 429 Too Many Requests, retrying"),
        log_line("POST /order Authorization: Bearer abcdef0123456789 -> HTTP 429 Too Many Requests"),
    ]

    [first, *_] = analyse_with(snapshot=snapshot_of_log(tmp_path, lines))

    assert first.title == "probable: rate limited by an upstream (HTTP 429, throttling)"
    assert first.confidence == 0.8
    assert first.evidence[0] == "log: " + log_line(
        "POST /order Authorization: Bearer *** -> HTTP 429 Too Many Requests"
    )
    assert first.evidence[1] == "log: 2 of the last 22 lines say so"
    assert "exponential backoff with jitter" in (first.recommendation or "")


def test_a_real_sdk_crash_record_names_the_await_that_never_returned(tmp_path):
    state = tmp_path / "state"
    bot = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples/sdk/bot.py"),
            "--state",
            str(state),
            "--hang-orders",
            "--kill-after",
            "1",
        ],
        capture_output=True,
        timeout=30,
    )
    assert bot.returncode != 0  # its watchdog ended it
    options = HeartbeatOptions(type="heartbeat", path=state / "heartbeat.json", max_age_seconds=2, crash_dir=state)
    crash_evidence = HeartbeatCheck(options).evidence(None)
    settings = monitor(options.model_dump(exclude_none=True, mode="json"))

    snapshot = take_snapshot(settings, crash_evidence=crash_evidence)
    [first, *_] = analyse_with(
        snapshot=snapshot, reason="heartbeat 3.5 s old, limit 2 s", check_type="heartbeat", crash_record=None
    )

    assert snapshot["crash"]["stuck"]["function"] == "place_maker_order"
    assert snapshot["heartbeats"][0]["pid"] == snapshot["crash"]["pid"]
    assert first.title.startswith("probable: stuck in place_maker_order at bot.py:")
    assert first.confidence == 0.9
    assert any(e.startswith("crash record: stuck in place_maker_order at bot.py:") for e in first.evidence)
    assert any(e.endswith("await asyncio.Event().wait()") for e in first.evidence)
    assert "deadline" in (first.recommendation or "")


def test_an_event_loop_blocked_crash_record_says_blocked_at_its_frame():
    record = {
        "kind": "loop_blocked",
        "reason": "event loop blocked for 12.0 s",
        "stuck": {"file": "/srv/bot/bot.py", "line": 42, "function": "fetch_prices", "code": "requests.get(url)"},
        "operations": [{"name": "fetch_prices", "age_seconds": 12.4}],
    }

    [first] = analyse_with(crash_record=record, reason="heartbeat 13 s old", check_type="heartbeat")

    assert first.title == "probable: event loop blocked in fetch_prices at bot.py:42"
    assert first.evidence == [
        "crash record: event loop blocked for 12.0 s",
        "crash record: stuck in fetch_prices at bot.py:42: requests.get(url)",
        "crash record: in flight: fetch_prices (12 s)",
    ]
    assert "asyncio.to_thread" in (first.recommendation or "")


async def test_an_import_error_just_after_a_commit_cites_the_commit(tmp_path):
    repo = tmp_path / "bot"
    repo.mkdir()
    now = int(time.time())
    git(repo, "init", "-q")
    (repo / "main.py").write_text("import exchange\n")
    git(repo, "add", "main.py")
    git(repo, "commit", "-q", "-m", "first version", at=now - 3600)
    last_healthy = now - 600
    (repo / "main.py").write_text("import exchange_v2\n")
    git(repo, "commit", "-q", "-am", "switch to the v2 exchange client", at=now - 60)
    traceback = subprocess.run(
        [sys.executable, "-c", "import exchange_v2_that_does_not_exist"], capture_output=True, text=True
    ).stderr.splitlines()

    commits = await recent_commits(repo, since=last_healthy)
    [first, *rest] = analyse_with(
        log_tail=[log_line("starting"), *traceback], commits=commits, last_healthy_at=last_healthy
    )

    [commit] = commits
    assert commit.subject == "switch to the v2 exchange client" and commit.files == ("main.py",)
    assert commit.author == "Knox" and commit.at == now - 60
    assert first.cause == "import_or_config_error" and first.confidence >= 0.85
    subject = '"switch to the v2 exchange client"'
    assert first.title == f"probable: ModuleNotFoundError in <string>:1 after commit {commit.short_sha} {subject}"
    assert first.evidence == [
        "log: ModuleNotFoundError: No module named 'exchange_v2_that_does_not_exist'",
        'log: File "<string>", line 1, in <module>',
        f'commit {commit.short_sha} "switch to the v2 exchange client" by Knox, 9 min after it was last seen healthy',
    ]
    # The traceback is this very error: it is not reported a second time, nor is the commit.
    assert rest == []


def test_a_connection_refused_while_a_declared_upstream_is_down_blames_the_upstream():
    try:
        socket.create_connection(("127.0.0.1", free_port()), timeout=2).close()
    except OSError as exc:
        refused = log_line(f"order failed: {exc!r}")
    else:
        pytest.fail("nothing should listen on a free port")

    [first, *_] = analyse_with(
        log_tail=[refused],
        upstreams={"exchange-api": "unhealthy: connection refused", "price-feed": "healthy"},
    )

    assert first.title == "probable: connection refused by declared dependency exchange-api"
    assert first.evidence == [f"log: {refused}", "upstream exchange-api: unhealthy: connection refused"]
    assert first.confidence == 0.9 and "Heal exchange-api first" in (first.recommendation or "")


def test_a_refused_connection_without_a_failing_upstream_names_the_address(tmp_path):
    port = free_port()
    line = log_line(f"Cannot connect to host 127.0.0.1:{port} ssl:default [Connect call failed ('127.0.0.1', {port})]")

    [first] = analyse_with(log_tail=[line], upstreams={"price-feed": "healthy"})

    assert first.title == f"probable: connection refused by 127.0.0.1:{port}"
    assert first.confidence == 0.7


def test_a_failing_upstream_alone_is_cited():
    [first] = analyse_with(upstreams={"exchange-api": "unhealthy: HTTP 503 in 12 ms"})

    assert first.title == "probable: declared dependency exchange-api failing"
    assert first.evidence == ["upstream exchange-api: unhealthy: HTTP 503 in 12 ms"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full is Linux's always-full device")
def test_a_full_disk_is_recognised_from_the_real_enospc_error(tmp_path):
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError, match="No space left on device") as raised:
            os.write(fd, b"trade\n")
    finally:
        os.close(fd)
    assert raised.value.errno == errno.ENOSPC
    line = log_line(f"cannot write trades.csv: {raised.value}")

    [first] = analyse_with(snapshot=snapshot_of_log(tmp_path, ["ok", line]))

    assert first.title == "probable: disk full (no space left on device)"
    assert first.evidence == [f"log: {line}"] and first.confidence == 0.9


def test_an_address_in_use_is_recognised_from_the_real_eaddrinuse_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with socket.socket() as second, pytest.raises(OSError, match="in use") as raised:
            second.bind(("127.0.0.1", port))
    line = log_line(f"cannot listen on port {port}: {raised.value}")

    [first] = analyse_with(log_tail=[line], reason="nothing accepts a TCP connection", check_type="port_open")

    assert first.title == f"probable: address in use: another process holds port {port}"
    assert f"port {port}" in (first.recommendation or "")


def test_an_unhandled_traceback_is_reported_by_its_final_line_and_frame(tmp_path):
    crashed = subprocess.run(
        [sys.executable, "-c", "def settle(book):\n    return book['bids'][0]\nsettle({})"],
        capture_output=True,
        text=True,
    )
    lines = ["first traceback, handled", "Traceback (most recent call last):", "  x", "ValueError: old"]
    lines += crashed.stderr.splitlines()

    [first] = analyse_with(snapshot=snapshot_of_log(tmp_path, lines))

    assert first.title == "probable: unhandled KeyError at <string>:2 in settle"
    assert first.evidence == ["log: KeyError: 'bids'", 'log: File "<string>", line 2, in settle']
    assert first.confidence == 0.5


async def test_a_deadline_exceeded_is_an_upstream_timeout_naming_the_operation():
    async def hangs() -> None:
        async with deadline("place_maker_order", 0.01):
            await asyncio.Event().wait()

    try:
        await hangs()
    except TimeoutError as exc:
        line = log_line(f"{type(exc).__name__}: {exc}")

    [first] = analyse_with(log_tail=[line])

    assert first.title == "probable: upstream timeout: place_maker_order timed out after 0.01 s"
    assert first.evidence == [f"log: {line}"] and first.confidence == 0.7


@pytest.mark.parametrize(
    ("given", "title"),
    [
        ({"log_tail": ["Killed"]}, "probable: killed by SIGKILL (often the kernel's OOM killer)"),
        ({"log_tail": ["Traceback (most recent call last):", "  File ...", "MemoryError"]}, "probable: out of memory"),
        ({"reason": "command exited with code 137"}, "probable: killed by SIGKILL (often the kernel's OOM killer)"),
    ],
)
def test_out_of_memory_and_sigkill_are_recognised(given, title):
    [first] = analyse_with(**given)

    assert first.title.startswith(title)


def test_a_commit_since_last_healthy_with_no_other_signal_is_a_low_confidence_possibility():
    commit = Commit(sha="a" * 40, at=1000.0, author="Knox", subject="tune the spread", files=("strategy.py",))

    [first] = analyse_with(commits=[commit], last_healthy_at=900.0, log_tail=["all quiet"])

    assert first.title == 'possible: a recent change (commit aaaaaaaaaa "tune the spread")'
    assert first.confidence == 0.3
    assert first.evidence == ['commit aaaaaaaaaa "tune the spread" by Knox, 100 s after it was last seen healthy']


def test_a_hung_process_seen_idle_by_py_spy_is_an_await_that_never_returns(spawner, stubs, tmp_path):
    stubs.install(
        "py-spy",
        stdout='Thread 1 (idle): "MainThread"\n    EpollSelector.select (selectors.py:468)\n'
        "    BaseEventLoop._run_once (asyncio/base_events.py:1884)\n",
    )
    marker = spawner.marker()
    spawner.detached(marker)
    log = tmp_path / "bot.log"
    log.write_text(log_line("price 3000.5, placing maker order") + "\n")
    settings = monitor(
        {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 300},
        {"action": "kill_process", "process_pattern": marker},
    )

    [first] = analyse_with(snapshot=take_snapshot(settings, crash_evidence=None))

    assert first.title.startswith("probable: an await that never returns")
    assert first.evidence[0].startswith("snapshot: Running (pid ")
    assert first.evidence[2:] == [
        "log (last line): " + log_line("price 3000.5, placing maker order"),
        "py-spy: main thread (idle) in EpollSelector.select at selectors.py:468",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "settings: rate_limit_per_second=10 timeout_seconds=30",
        "config loaded, error count 0",
        "price 3429.5 at 02:23:01",
        "order 429 filled",
    ],
)
def test_ordinary_lines_are_no_failure_signature_even_after_a_change(line):
    commit = Commit(sha="c" * 40, at=10.0, author="Knox", subject="tune")

    [first] = analyse_with(log_tail=[line], commits=[commit])

    assert first.title.startswith("possible: a recent change")


def test_nothing_recognisable_is_unknown_and_says_what_was_looked_at(tmp_path):
    [only] = analyse_with(snapshot=snapshot_of_log(tmp_path, ["price 3000.5", "price 3001.0"]))

    assert only.title == UNKNOWN_TITLE and only.confidence == 0.1
    assert only.evidence[:2] == [
        f"check: {STALE}",
        "looked at: 2 log lines; no crash record; 0 declared upstreams (0 failing); 0 commits in the change window; "
        "config unchanged; snapshot: logs, disk",
    ]
    assert only.evidence[2].startswith("snapshot: Log bot.log last written")
    # An honest unknown says what would have told more: this monitor named no process.
    assert only.recommendation is not None and "process_pattern" in only.recommendation


# --- the whole -----------------------------------------------------------------------------------------


def test_hypotheses_are_ranked_by_confidence_and_the_same_evidence_gives_the_same_answer():
    tail = [
        log_line("HTTP 429 Too Many Requests"),
        log_line("OSError: [Errno 28] No space left on device"),
        log_line("ReadTimeout: timed out"),
    ]

    first = analyse_with(log_tail=tail)

    assert [h.title.split(" (")[0] for h in first] == [
        "probable: disk full",
        "probable: rate limited by an upstream",
        "probable: upstream timeout: an upstream call timed out",
    ]
    assert analyse_with(log_tail=tail) == first
    # A commit beside other signals is listed too, below them.
    commit = Commit(sha="b" * 40, at=10.0, author="Knox", subject="bump deps")
    assert analyse_with(log_tail=tail, commits=[commit])[-1].confidence == 0.2


def test_a_broken_rule_is_skipped_and_the_others_still_answer():
    def broken(evidence, found):
        raise KeyError("oops")

    [only] = analyse_with(log_tail=["No space left on device"], rules=[broken, disk_full])

    assert only.title.startswith("probable: disk full")
    assert broken not in RULES


def test_secrets_in_quoted_lines_are_redacted():
    [first] = analyse_with(log_tail=["ReadTimeout calling https://u:pw@api.example.com/x?api_key=abc"])

    assert first.evidence == ["log: ReadTimeout calling https://***@api.example.com/x?api_key=***"]


def test_the_summariser_is_off_by_default_and_only_ever_sees_the_cited_evidence():
    tail = ["noise that no rule cites", log_line("HTTP 429 Too Many Requests")]
    hypotheses = analyse_with(log_tail=tail)
    seen: list[str] = []

    def model(prompt: str) -> str:
        seen.append(prompt)
        return "  The exchange rate-limited the bot.  "

    def failing(prompt: str) -> str:
        raise RuntimeError("model unavailable")

    assert summarise(hypotheses, None) is None
    assert summarise(hypotheses, model) == "The exchange rate-limited the bot."
    assert summarise(hypotheses, failing) is None
    [prompt] = seen
    assert "noise that no rule cites" not in prompt
    assert "evidence: log: " + log_line("HTTP 429 Too Many Requests") in prompt
    assert "Use only the evidence quoted below" in prompt


# --- changes -------------------------------------------------------------------------------------------


async def test_commits_outside_a_git_work_tree_or_without_git_are_empty_with_a_reason(tmp_path, monkeypatch):
    not_a_repo = await recent_commits(tmp_path, since=0)
    assert not_a_repo == [] and "not a git repository" in (not_a_repo.reason or "")
    missing = await recent_commits(tmp_path / "missing", since=0)
    assert missing == [] and missing.reason == f"{tmp_path / 'missing'} is not a directory"
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    no_git = await recent_commits(tmp_path, since=0)
    assert no_git == [] and no_git.reason == "git is not installed"


async def test_only_commits_since_the_time_given_are_listed_newest_first_up_to_the_limit(tmp_path):
    now = time.time()
    git(tmp_path, "init", "-q")
    for n in range(4):
        (tmp_path / f"f{n}.py").write_text(str(n))
        git(tmp_path, "add", f"f{n}.py")
        git(tmp_path, "commit", "-q", "-m", f"change {n}", at=now - 1000 + n * 100)

    commits = await recent_commits(tmp_path, since=now - 850, limit=2)

    assert [c.subject for c in commits] == ["change 3", "change 2"]
    assert commits[0].files == ("f3.py",) and len(commits[0].sha) == 40 and commits.reason is None


def test_a_config_file_changed_since_is_told_by_its_modification_time(tmp_path):
    config = tmp_path / "horus.yaml"
    config.write_text("monitors: []")
    os.utime(config, (1000.0, 1000.0))

    assert config_changed_since(config, 999.0) is True
    assert config_changed_since(config, 1000.0) is False
    assert config_changed_since(tmp_path / "missing.yaml", 0) is False
