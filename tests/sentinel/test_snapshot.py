from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import resource
import shutil
import socket
import string
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from horus.config.models import HorusConfig, MonitorSettings
from horus.sentinel.fingerprint import normalise
from horus.sentinel.snapshot import describe_process_state, redact_line, take_snapshot
from horus_sdk.formats import FORMAT_CRASH, FORMAT_HEARTBEAT, boot_id, write_json_atomic
from tests.process_support import ProcessSpawner
from tests.support import Route, free_port, wait_until_sync

LISTENER = """
import socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
time.sleep(60)
"""


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def monitor(check: dict[str, Any], heal: dict[str, Any] | None = None, **extra: Any) -> MonitorSettings:
    raw: dict[str, Any] = {"name": "svc", "check": check, **extra}
    if heal is not None:
        raw["heal"] = heal
    [settings] = HorusConfig.model_validate({"monitors": [raw]}).monitor_settings()
    return settings


def fits(snapshot: dict[str, Any], max_bytes: int) -> bool:
    return len(json.dumps(snapshot).encode()) <= max_bytes


# --- processes -----------------------------------------------------------------------------------------


def test_a_matched_process_is_described_with_its_pid_memory_threads_and_masked_command_line(spawner, tmp_path):
    marker = spawner.marker()
    target = spawner.detached(f"{marker} --token hunter2 API_KEY=s3cr3t-value")
    settings = monitor(
        {"type": "process_alive", "process_pattern": marker},
        {"action": "kill_process", "process_pattern": marker},
    )

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)

    [section] = snapshot["processes"]  # the check's and the heal's identical patterns are probed once
    assert section["running"] is True and section["count"] == 1
    [match] = section["matches"]
    assert match["pid"] == target.pid
    assert match["rss_bytes"] > 0 and match["threads"] >= 1
    assert match["cpu_percent"] is not None and match["age_seconds"] >= 0
    assert match["status"] in ("sleeping", "running")
    assert "hunter2" not in match["cmdline"] and "s3cr3t" not in match["cmdline"]
    # The marker's 32 hex digits look like a secret too, and are masked like one.
    assert match["cmdline"].endswith("time.sleep(60) horus-test-*** --token *** API_KEY=***")
    assert snapshot["py_spy"] == {"skipped": "disabled in the config (sentinel.py_spy: false)"}
    assert describe_process_state(snapshot).startswith(f"Running (pid {target.pid}, ")


def test_horus_own_descendants_are_never_in_a_snapshot_just_as_the_heal_never_kills_them(spawner):
    marker = spawner.marker()
    spawner.child(marker)  # a direct child of the test process, which plays Horus
    settings = monitor({"type": "process_alive", "process_pattern": marker})

    snapshot = take_snapshot(settings, crash_evidence=None)

    assert snapshot["processes"] == [{"pattern": marker, "regex": False, "running": False, "count": 0, "matches": []}]
    assert snapshot["py_spy"] == {"skipped": "no running Python process matched"}
    assert describe_process_state(snapshot) == "Not running"


def test_a_bound_port_is_accepting_and_owned_by_the_process_while_a_free_port_is_refused(spawner):
    marker = spawner.marker()
    target = spawner.detached(marker, LISTENER)
    wait_until_sync(lambda: target.output.read_text().strip() != "")
    port = int(target.output.read_text().split()[0])
    bound = monitor({"type": "port_open", "port": port}, {"action": "kill_process", "process_pattern": marker})
    free = monitor({"type": "port_open", "port": free_port()})

    snapshot = take_snapshot(bound, crash_evidence=None, py_spy=False)
    refused = take_snapshot(free, crash_evidence=None)

    assert snapshot["processes"][0]["matches"][0]["listening_ports"] == [port]
    assert snapshot["ports"][0]["accepting"] is True
    assert describe_process_state(snapshot).endswith(f"MB), port {port} bound")
    assert refused["ports"][0] == {
        "host": "127.0.0.1",
        "port": free.check.port,  # type: ignore[attr-defined]
        "accepting": False,
        "detail": "connection refused",
        "holder": None,  # nothing listens there
    }
    assert describe_process_state(refused) == f"Port {free.check.port} connection refused"  # type: ignore[attr-defined]


# --- HTTP ----------------------------------------------------------------------------------------------


def test_an_http_endpoint_is_probed_for_status_and_latency_with_its_credentials_masked(http_server):
    http_server.routes["/health"] = Route(503, b"db down")
    url = http_server.url("/health?token=abc123").replace("http://", "http://bot:pw@")
    settings = monitor({"type": "http_health", "url": url})

    snapshot = take_snapshot(settings, crash_evidence=None)

    [answer] = snapshot["http"]
    assert answer["status"] == 503 and answer["latency_ms"] > 0 and answer["body_head"] == "db down"
    assert answer["url"] == f"http://***@127.0.0.1:{http_server.port}/health?token=***"
    # The credentials in the URL are still sent, as the check sends them.
    [(_, _, headers)] = http_server.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"bot:pw").decode()
    assert describe_process_state(snapshot).startswith("HTTP 503 in ")


def test_an_http_endpoint_that_refuses_is_recorded_as_no_answer():
    settings = monitor({"type": "http_health", "url": f"http://127.0.0.1:{free_port()}/health"})

    snapshot = take_snapshot(settings, crash_evidence=None)

    assert snapshot["http"][0]["error"] == "connection refused"
    assert describe_process_state(snapshot) == "HTTP no answer (connection refused)"


# --- logs and redaction --------------------------------------------------------------------------------


def test_a_log_tail_holds_its_last_lines_with_secrets_redacted(tmp_path):
    log = tmp_path / "bot.log"
    lines = [f"tick {n}" for n in range(100)] + [
        "POST https://api.example.com/order Authorization: Bearer sk-live-abcdefghijklmnop",
        "connecting to postgres://trader:hunter2@db:5432/orders",
        'config {"api_key": "AbC123xYz", "password": "p4ss word"}',
        "PRIVATE_KEY=0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
    ]
    log.write_text("\n".join(lines) + "\n")
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60})

    snapshot = take_snapshot(settings, crash_evidence=None, log_lines=5)

    [entry] = snapshot["logs"]
    assert entry["path"] == str(log) and entry["size_bytes"] == log.stat().st_size and entry["age_seconds"] < 60
    assert entry["tail"] == [
        "tick 99",
        "POST https://api.example.com/order Authorization: Bearer ***",
        "connecting to postgres://***@db:5432/orders",
        'config {"api_key": "***", "password": "***"}',
        "PRIVATE_KEY=***",
    ]
    assert describe_process_state(snapshot).startswith("Log bot.log last written ")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer ***"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic ***"),
        ("sent bearer abc.DEF-123_x", "sent bearer ***"),
        ("GET /v1?api_key=abc&limit=5", "GET /v1?api_key=***&limit=5"),
        ("api_key=abc123 user=bob", "api_key=*** user=bob"),
        ("token: 'xyz'", "token: '***'"),
        ("password=hunter2;next", "password=***;next"),
        ("X-Api-Key: 0123abcd", "X-Api-Key: ***"),
        ("export POLY_PRIVATE_KEY=deadbeef", "export POLY_PRIVATE_KEY=***"),
        ("aws AKIAIOSFODNN7EXAMPLE used", "aws *** used"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sflKxwRJSMeKKF2QT4fwpMeJf36", "jwt ***"),
        ("hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "hash ***"),
        ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end", "secret *** end"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789 pushed", "*** pushed"),
        ("https://user:pw@example.com/x", "https://***@example.com/x"),
        ("Cookie: session=abc; other=1", "Cookie: ***"),
    ],
)
def test_redact_line_masks_secrets(line, expected):
    assert redact_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "2026-11-21 02:23:01 bot price 3000.5, order placed",
        'File "/Users/Knox/Documents/Dev/polymarket-bot/strategies/engine.py", line 42, in place_maker_order',
        "request 8c2b7a4e-1f0b-4c55-9a57-0c6f7e2d1b3a done",
        "tokens_used=512 token_type=bearer max_age=30",
        "HTTP 429 Too Many Requests",
        "/home/runner/work/horus/horus/src/horus/sentinel/snapshot.py",
    ],
)
def test_redact_line_leaves_ordinary_lines_alone(line):
    assert redact_line(line) == line


def test_a_missing_or_unreadable_log_is_an_error_in_its_entry_not_an_exception(tmp_path):
    missing = monitor({"type": "log_staleness", "log_file": str(tmp_path / "nope.log"), "max_age_seconds": 5})
    directory = monitor({"type": "log_staleness", "log_file": str(tmp_path), "max_age_seconds": 5})

    assert take_snapshot(missing, crash_evidence=None)["logs"] == [
        {"path": str(tmp_path / "nope.log"), "error": "does not exist"}
    ]
    assert take_snapshot(directory, crash_evidence=None)["logs"][0]["error"].startswith("cannot read it")


def test_a_snapshot_never_exceeds_max_bytes_and_keeps_the_newest_lines(tmp_path):
    log = tmp_path / "chatty.log"
    log.write_text("".join(f"line {n} " + "x" * 200 + "\n" for n in range(3000)))
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60})

    snapshot = take_snapshot(settings, crash_evidence=None, log_lines=1000, max_bytes=8192)

    assert fits(snapshot, 8192)
    assert snapshot["truncated"] is True
    tail = snapshot["logs"][0]["tail"]
    assert 0 < len(tail) < 1000 and tail[-1].startswith("line 2999 ")
    assert not take_snapshot(settings, crash_evidence=None, log_lines=3)["truncated"]


def test_a_log_that_is_a_named_pipe_is_refused_at_once_never_waited_on(tmp_path):
    fifo = tmp_path / "bot.log"
    os.mkfifo(fifo)
    settings = monitor({"type": "log_staleness", "log_file": str(fifo), "max_age_seconds": 60})
    try:
        started = time.monotonic()
        snapshot = take_snapshot(settings, crash_evidence=None, timeout=3)
        assert time.monotonic() - started < 2
        assert snapshot["logs"] == [{"path": str(fifo), "error": "cannot read it: a named pipe, not a regular file"}]
    finally:
        # Had a reader blocked opening the pipe, opening it to write releases it, so the test never hangs.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def test_a_log_baseline_counts_the_lines_written_while_the_service_was_healthy(tmp_path):
    healthy_until = time.time() - 600
    lines = []
    for n in range(20):
        lines.append(f"{iso(healthy_until - 900 + n)} INFO fetched {n + 10} markets")
        if n % 4 == 0:
            lines.append(f"{iso(healthy_until - 900 + n)} WARN order book stale for market {n}, refreshing")
    failed = "ERROR write failed: [Errno 28] No space left on device"
    lines += [f"{iso(healthy_until + 60 + n)} {failed}" for n in range(8)]
    lines += [f"{iso(healthy_until + 120 + n)} ERROR giving up on order {n}" for n in range(5)]
    log = tmp_path / "bot.log"
    log.write_text("\n".join(lines) + "\n")
    settings = monitor({"type": "port_open", "port": free_port()}, evidence={"logs": [str(log)]})

    [entry] = take_snapshot(settings, crash_evidence=None, log_lines=5, healthy_until=healthy_until)["logs"]

    assert entry["tail"] == lines[-5:]  # raw lines, exactly as before
    assert entry["lines_before_tail"] == len(lines) - 5
    # The disk errors came within five minutes of the last healthy look: they are not part of its baseline.
    assert entry["baseline"] == [
        {"line": normalise(lines[0]), "count": 20},
        {"line": normalise(lines[1]), "count": 5},
    ]
    assert not any("space" in item["line"] for item in entry["baseline"])


def test_a_log_whose_lines_carry_no_time_has_no_baseline(tmp_path):
    # Nothing tells its healthy lines from the failure's: the disk errors may be all it ever said.
    lines = ["OSError: [Errno 28] No space left on device"] * 10 + ["giving up"] * 3
    log = tmp_path / "bot.log"
    log.write_text("\n".join(lines) + "\n")
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60})

    [entry] = take_snapshot(settings, crash_evidence=None, log_lines=3, healthy_until=time.time() - 60)["logs"]

    assert entry["tail"] == ["giving up"] * 3 and entry["lines_before_tail"] == 10
    assert entry["baseline"] == []


def test_without_a_healthy_moment_the_baseline_is_empty(tmp_path):
    log = tmp_path / "bot.log"
    log.write_text("".join(f"{iso(time.time() - 100 + n)} INFO tick\n" for n in range(10)))
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60})

    [entry] = take_snapshot(settings, crash_evidence=None, log_lines=4)["logs"]

    assert entry["baseline"] == [] and entry["lines_before_tail"] == 6 and len(entry["tail"]) == 4


def word(n: int) -> str:
    # Distinct after normalising, which masks digits.
    letters = string.ascii_lowercase
    return letters[n // 26 % 26] + letters[n % 26] + letters[n // 676 % 26]


def test_a_baseline_holds_at_most_100_lines_most_frequent_first_each_clipped_and_redacted(tmp_path):
    then = iso(time.time() - 1200)  # long before the service was last healthy
    lines = [f"{then} password=hunter2 accepted"] * 3 + [f"{then} " + "x" * 50 + " " + "long " * 200] * 2
    lines += [f"{then} event {word(n)}" for n in range(250)] + ["tail line"]
    log = tmp_path / "bot.log"
    log.write_text("\n".join(lines) + "\n")
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60})

    [entry] = take_snapshot(settings, crash_evidence=None, log_lines=1, healthy_until=time.time())["logs"]

    baseline = entry["baseline"]
    assert len(baseline) == 100
    assert baseline[0] == {"line": "<ts> password=*** accepted", "count": 3}
    assert baseline[1]["count"] == 2 and len(baseline[1]["line"]) == 300
    assert all(item["count"] == 1 for item in baseline[2:])


def test_a_snapshot_too_big_gives_up_its_baselines_before_its_tails(tmp_path):
    then = iso(time.time() - 1200)
    lines = [f"{then} event {word(n)} " + "y" * 280 for n in range(400)] + [f"tail {n}" for n in range(5)]
    log = tmp_path / "bot.log"
    log.write_text("\n".join(lines) + "\n")
    settings = monitor({"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60})

    snapshot = take_snapshot(settings, crash_evidence=None, log_lines=5, max_bytes=8192, healthy_until=time.time())

    assert fits(snapshot, 8192) and snapshot["truncated"] is True
    [entry] = snapshot["logs"]
    assert entry["tail"] == [f"tail {n}" for n in range(5)]
    assert len(entry["baseline"]) < 100


# --- evidence for every check type ----------------------------------------------------------------------


def write_crash_record(crash_dir, pid: int) -> None:
    record = {
        "format": FORMAT_CRASH,
        "pid": pid,
        "wall_time": time.time(),
        "reason": "event loop blocked for 12.0 s",
        "kind": "loop_blocked",
        "stuck": {"file": "/srv/bot.py", "line": 42, "function": "fetch_ohlcv", "code": "requests.get(url)"},
    }
    write_json_atomic(crash_dir / f"horus-crash-{pid}.json", record)


def test_an_evidence_block_brings_the_services_logs_process_and_crash_record_to_any_check(spawner, tmp_path):
    marker = spawner.marker()
    target = spawner.detached(marker)
    log, stderr_log = tmp_path / "bot.log", tmp_path / "bot.err"
    log.write_text("OSError: [Errno 28] No space left on device\n")
    stderr_log.write_text("Traceback (most recent call last):\n")
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    write_crash_record(crash_dir, 4121)
    settings = monitor(
        {"type": "port_open", "port": free_port()},
        verify={"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60},
        evidence={
            "logs": [str(log), str(stderr_log)],  # bot.log is the verify's log_file too: read once
            "process_pattern": marker,
            "crash_dir": str(crash_dir),
        },
    )

    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False)

    [section] = snapshot["processes"]
    assert section["pattern"] == marker and [m["pid"] for m in section["matches"]] == [target.pid]
    assert [entry["path"] for entry in snapshot["logs"]] == [str(log), str(stderr_log)]
    assert snapshot["logs"][0]["tail"] == ["OSError: [Errno 28] No space left on device"]
    assert snapshot["crash"]["source"] == "crash_dir" and snapshot["crash"]["pid"] == 4121


def test_a_crash_record_in_the_evidence_crash_dir_counts_only_when_the_evidence_user_wrote_it(tmp_path):
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    write_crash_record(crash_dir, 4121)  # written by this test's user
    someone_else = 65534 if os.geteuid() != 65534 else 0
    mine = monitor({"type": "port_open", "port": free_port()}, evidence={"crash_dir": str(crash_dir)})
    theirs = monitor(
        {"type": "port_open", "port": free_port()},
        evidence={"crash_dir": str(crash_dir), "process_pattern": "bot.py", "user": someone_else},
    )

    assert take_snapshot(mine, crash_evidence=None)["crash"]["pid"] == 4121
    assert "crash" not in take_snapshot(theirs, crash_evidence=None)


def test_an_evidence_pattern_of_another_user_finds_only_that_users_processes(spawner):
    marker = spawner.marker()
    spawner.detached(marker)  # ours; the evidence names another user's
    other = 65534 if os.geteuid() != 65534 else 0
    settings = monitor({"type": "port_open", "port": free_port()}, evidence={"process_pattern": marker, "user": other})

    [section] = take_snapshot(settings, crash_evidence=None, py_spy=False)["processes"]

    assert section["running"] is False and section["matches"] == []


# --- port holders ---------------------------------------------------------------------------------------


def test_the_process_listening_on_a_probed_port_is_named_with_its_masked_command_line(spawner):
    marker = spawner.marker()
    target = spawner.detached(f"{marker} --token hunter2", LISTENER)
    wait_until_sync(lambda: target.output.read_text().strip() != "")
    port = int(target.output.read_text().split()[0])

    [entry] = take_snapshot(monitor({"type": "port_open", "port": port}), crash_evidence=None)["ports"]

    holder = entry["holder"]
    assert holder["pid"] == target.pid and holder["name"] == psutil.Process(target.pid).name()
    assert holder["user"] == pwd.getpwuid(os.geteuid()).pw_name
    assert "hunter2" not in holder["cmdline"] and holder["cmdline"].endswith("horus-test-*** --token ***")


def test_a_local_http_endpoint_names_its_listener_and_a_refused_one_names_none(http_server):
    http_server.routes["/health"] = Route(200, b"ok")
    answering = monitor({"type": "http_health", "url": http_server.url("/health").replace("127.0.0.1", "localhost")})
    refusing = monitor({"type": "http_health", "url": f"http://127.0.0.1:{free_port()}/health"})

    [answer] = take_snapshot(answering, crash_evidence=None)["http"]
    [refusal] = take_snapshot(refusing, crash_evidence=None)["http"]

    assert answer["holder"]["pid"] == os.getpid()  # the loopback server runs in this test's process
    assert refusal["error"] == "connection refused" and refusal["holder"] is None


# --- disks ----------------------------------------------------------------------------------------------


def test_the_filesystems_the_service_writes_to_are_measured_once_each(tmp_path):
    (tmp_path / "bot.log").write_text("started\n")
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    settings = monitor(
        {"type": "file_exists", "path": str(tmp_path / "out" / "report.csv")},  # its directory is missing
        verify={"type": "log_staleness", "log_file": str(tmp_path / "bot.log"), "max_age_seconds": 60},
        evidence={"crash_dir": str(crash_dir)},
    )

    disk = take_snapshot(settings, crash_evidence=None)["disk"]

    usage = shutil.disk_usage(tmp_path)
    [entry] = disk  # all three are on one filesystem
    assert entry["path"] == str(tmp_path) and entry["total_bytes"] == usage.total
    assert abs(entry["free_bytes"] - usage.free) < 64 * 1024 * 1024
    assert 0 <= entry["used_percent"] <= 100


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm here")
def test_logs_on_two_filesystems_give_two_disk_entries(tmp_path):
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the test's directory")
    settings = monitor(
        {"type": "port_open", "port": free_port()},
        evidence={"logs": [str(tmp_path / "bot.log"), "/dev/shm/horus-test-missing.log"]},
    )

    disk = take_snapshot(settings, crash_evidence=None)["disk"]

    assert [entry["path"] for entry in disk] == [str(tmp_path), "/dev/shm"]


# --- file descriptors and limits ------------------------------------------------------------------------

LIMITED = """
import resource, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not hasattr(psutil.Process, "rlimit"), reason="psutil reads other processes' limits on Linux")
def test_a_matched_process_shows_its_open_descriptors_and_its_limits(spawner):
    marker = spawner.marker()
    target = spawner.detached(marker, LIMITED)
    wait_until_sync(lambda: target.said("ready"))

    snapshot = take_snapshot(monitor({"type": "process_alive", "process_pattern": marker}), crash_evidence=None)

    [match] = snapshot["processes"][0]["matches"]
    assert match["num_fds"] >= 3
    assert match["rlimits"] == {
        "nofile": [64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]],
        "as": list(resource.getrlimit(resource.RLIMIT_AS)),  # inherited from this test, unlimited (-1) as a rule
    }


# --- heartbeat and crash record ------------------------------------------------------------------------


def test_a_heartbeat_file_is_summarised_with_its_pid_age_and_channels(tmp_path):
    now_mono, now_wall = time.monotonic(), time.time()
    beat = {
        "format": FORMAT_HEARTBEAT,
        "pid": 4121,
        "sequence": 42,
        "boot_id": boot_id(),
        "wall_time": now_wall - 3,
        "monotonic": now_mono - 3,
        "interval": 1.0,
        "started_monotonic": now_mono - 100,
        "channels": {"scan": {"count": 17, "wall_time": now_wall - 30, "monotonic": now_mono - 30}},
    }
    write_json_atomic(tmp_path / "hb.json", beat)
    settings = monitor({"type": "heartbeat", "path": str(tmp_path / "hb.json"), "max_age_seconds": 2})

    [entry] = take_snapshot(settings, crash_evidence=None)["heartbeats"]

    assert entry["pid"] == 4121 and entry["sequence"] == 42
    assert 3 <= entry["age_seconds"] < 10
    assert entry["channels"]["scan"]["count"] == 17 and 30 <= entry["channels"]["scan"]["age_seconds"] < 40


def test_the_crash_record_the_engine_passes_is_read_for_its_stuck_frame_and_operations(tmp_path):
    record = {
        "format": FORMAT_CRASH,
        "pid": 4121,
        "wall_time": time.time(),
        "reason": "event loop blocked for 12.0 s",
        "kind": "loop_blocked",
        "stuck": {"file": "/srv/bot.py", "line": 42, "function": "place_maker_order", "code": 'auth(token="abc")'},
        "threads": [{"name": "MainThread", "stack": []}],
        "operations": [{"name": "place_maker_order", "age_seconds": 31.2}],
    }
    path = tmp_path / "horus-crash-4121.json"
    write_json_atomic(path, record)
    settings = monitor({"type": "heartbeat", "path": str(tmp_path / "hb.json"), "max_age_seconds": 2})

    crash = take_snapshot(settings, crash_evidence={"crash_record": str(path), "crash_summary": "blocked"})["crash"]

    assert crash["crash_record"] == str(path) and crash["crash_summary"] == "blocked"
    assert crash["kind"] == "loop_blocked" and crash["reason"] == "event loop blocked for 12.0 s"
    assert crash["stuck"] == {
        "file": "/srv/bot.py",
        "line": 42,
        "function": "place_maker_order",
        "code": 'auth(token="***")',
    }
    assert crash["operations"] == [{"name": "place_maker_order", "age_seconds": 31.2}]
    assert "threads" not in crash


# --- py-spy --------------------------------------------------------------------------------------------


def test_without_py_spy_installed_the_dump_is_skipped_and_says_why(spawner, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    marker = spawner.marker()
    spawner.detached(marker)

    snapshot = take_snapshot(monitor({"type": "process_alive", "process_pattern": marker}), crash_evidence=None)

    assert snapshot["py_spy"] == {"skipped": "py-spy is not installed"}


def test_py_spy_dumps_the_matched_python_process_before_the_heal_and_its_output_is_kept(spawner, stubs):
    dump = 'Thread 4121 (idle): "MainThread"\n    place_maker_order (bot.py:42)\n    trade (bot.py:55)\n'
    stubs.install("py-spy", stdout=dump)
    marker = spawner.marker()
    target = spawner.detached(marker)

    snapshot = take_snapshot(
        monitor(
            {"type": "log_staleness", "log_file": "/nonexistent.log", "max_age_seconds": 5},
            {"action": "kill_process", "process_pattern": marker},
        ),
        crash_evidence=None,
    )

    assert [["py-spy", *argv] for argv in stubs.calls("py-spy")] == [
        ["py-spy", "dump", "--full-filenames", "--pid", str(target.pid)]
    ]
    assert snapshot["py_spy"] == {"dumps": [{"pid": target.pid, "exit_code": 0, "output": dump.rstrip("\n")}]}


def test_a_py_spy_that_may_not_trace_the_process_records_why(spawner, stubs):
    stubs.install("py-spy", stderr="Error: Permission denied (os error 13)\n", exit_code=1)
    marker = spawner.marker()
    target = spawner.detached(marker)

    snapshot = take_snapshot(monitor({"type": "process_alive", "process_pattern": marker}), crash_evidence=None)

    [entry] = snapshot["py_spy"]["dumps"]
    assert entry["pid"] == target.pid and entry["exit_code"] == 1
    assert entry["error"].startswith("Error: Permission denied (os error 13) (py-spy needs to ptrace")


def test_py_spy_output_is_trimmed_to_fit_max_bytes(spawner, stubs):
    stubs.install("py-spy", stdout='Thread 1 (active): "MainThread"\n' + "    frame (x.py:1)\n" * 200)
    marker = spawner.marker()
    spawner.detached(marker)
    settings = monitor({"type": "process_alive", "process_pattern": marker})

    snapshot = take_snapshot(settings, crash_evidence=None, max_bytes=4096)

    assert fits(snapshot, 4096) and snapshot["truncated"] is True
    output = snapshot["py_spy"]["dumps"][0]["output"]
    assert output.startswith('Thread 1 (active): "MainThread"') and output.endswith("… (truncated)")


VENV_BIN = os.path.dirname(sys.executable)  # make install puts py-spy beside the venv's python


@pytest.mark.skipif(shutil.which("py-spy", path=VENV_BIN) is None, reason="py-spy is not installed")
def test_a_real_py_spy_dump_shows_where_a_python_process_waits(spawner, monkeypatch):
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    marker = spawner.marker()
    target = spawner.detached(marker)

    snapshot = take_snapshot(monitor({"type": "process_alive", "process_pattern": marker}), crash_evidence=None)

    [entry] = snapshot["py_spy"]["dumps"]
    if entry.get("error"):
        pytest.skip(f"py-spy may not trace here: {entry['error']}")
    assert entry["pid"] == target.pid and "<module>" in entry["output"]


# --- the whole -----------------------------------------------------------------------------------------


def test_a_monitor_with_every_probe_is_snapshotted_within_its_time_limit(spawner, http_server, tmp_path):
    http_server.routes["/health"] = Route(200, b"ok")
    marker = spawner.marker()
    target = spawner.detached(marker, LISTENER)
    wait_until_sync(lambda: target.output.read_text().strip() != "")
    port = int(target.output.read_text().split()[0])
    log = tmp_path / "svc.log"
    log.write_text("started\n")
    settings = monitor(
        {"type": "http_health", "url": http_server.url("/health")},
        {"action": "kill_process", "process_pattern": marker},
        verify={"type": "log_staleness", "log_file": str(log), "max_age_seconds": 60},
    )

    started = time.monotonic()
    snapshot = take_snapshot(settings, crash_evidence=None, py_spy=False, timeout=5)

    assert time.monotonic() - started < 3
    assert list(snapshot) == [
        "format",
        "monitor",
        "taken_at",
        "truncated",
        "processes",
        "py_spy",
        "http",
        "logs",
        "disk",
        "elapsed_ms",
    ]
    state = describe_process_state(snapshot)
    assert state.startswith(f"Running (pid {target.pid}, ") and ", HTTP 200 in " in state
    assert snapshot["processes"][0]["matches"][0]["listening_ports"] == [port]
    assert snapshot["logs"][0]["tail"] == ["started"]
    assert os.fspath(log) == snapshot["logs"][0]["path"]


def test_a_socket_the_test_holds_is_reported_bound():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        snapshot = take_snapshot(monitor({"type": "port_open", "port": port}), crash_evidence=None)
    assert snapshot["ports"][0]["accepting"] is True and snapshot["ports"][0]["connect_ms"] >= 0
    assert describe_process_state(snapshot) == f"Port {port} bound"


def test_describe_process_state_of_an_empty_snapshot_says_nothing_was_observed():
    assert describe_process_state({}) == "Not observed (no process, port or HTTP probe applies to this monitor)"
