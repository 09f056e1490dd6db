from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from horus.config.models import HorusConfig, MonitorSettings
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

    assert [["py-spy", *argv] for argv in stubs.calls("py-spy")] == [["py-spy", "dump", "--pid", str(target.pid)]]
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


@pytest.mark.skipif(shutil.which("py-spy") is None, reason="py-spy is not installed")
def test_a_real_py_spy_dump_shows_where_a_python_process_waits(spawner):
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
