"""`horus check` and `horus validate` as a user runs them beside real processes and a real daemon."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator

import pytest

from horus.engine.status import read_status
from tests.restart_loop import RestartLoop
from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync
from tests.test_cli import write_config

HORUS = HORUS_RUN[:-1]  # python -m horus


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HORUS, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def restart_loop() -> Iterator[RestartLoop]:
    loop = RestartLoop()
    yield loop
    loop.close()


def present(tmp_path) -> str:
    path = tmp_path / "present"
    path.write_text("x")
    return str(path)


def loop_config(tmp_path, loop: RestartLoop) -> str:
    return str(
        write_config(
            tmp_path,
            [
                {
                    "name": "bot",
                    "check": {"type": "file_exists", "path": present(tmp_path)},
                    "heal": {"action": "kill_process", "process_pattern": loop.pattern},
                },
                {"name": "bot-alive", "check": {"type": "process_alive", "process_pattern": loop.pattern}},
            ],
        )
    )


@pytest.mark.parametrize("command", ["validate", "check"])
def test_a_kill_pattern_that_matches_a_restart_loop_and_its_service_is_warned_about_at_start_up(
    tmp_path, restart_loop, command
):
    proc = horus(command, "-c", loop_config(tmp_path, restart_loop))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    heal, alive = warnings
    shell, service = restart_loop.shell.pid, restart_loop.first_service.pid
    assert heal.startswith("warning: monitors[0] (bot).heal: this heal would be refused now: 2 processes match")
    assert f"pid {shell} (/bin/sh -c while true; do " in heal
    assert f"is the parent of pid {service} (" in heal
    assert "process_pattern: '^" in heal and "ignore_wrappers: true" in heal
    assert alive.startswith(f"warning: monitors[1] (bot-alive).check: process_pattern '{restart_loop.pattern}'")
    assert "stays alive while the service it runs is down" in alive
    assert "Traceback" not in proc.stderr


def test_no_warning_when_the_pattern_names_the_service_alone(tmp_path, restart_loop):
    config = write_config(
        tmp_path,
        [
            {
                "name": "bot",
                "check": {"type": "file_exists", "path": present(tmp_path)},
                "heal": {"action": "kill_process", "process_pattern": restart_loop.pattern, "ignore_wrappers": True},
            }
        ],
    )
    proc = horus("validate", "-c", str(config))
    assert proc.returncode == 0
    assert proc.stderr == ""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listen_config(tmp_path) -> str:
    listen = f"udp://127.0.0.1:{free_udp_port()}"
    key = tmp_path / "hb.key"
    key.write_text("a-key-for-this-test-0123456789")
    key.chmod(0o600)
    beat = {"type": "heartbeat", "listen": listen, "key_file": str(key), "max_age_seconds": 60}
    return str(
        write_config(
            tmp_path,
            [
                {"name": "beat", "check": beat},
                {"name": "here", "check": {"type": "file_exists", "path": present(tmp_path)}},
            ],
        )
    )


def test_check_without_a_daemon_says_a_datagram_heartbeat_cannot_be_judged_at_one_look(tmp_path):
    config = listen_config(tmp_path)
    proc = horus("check", "-c", config, "--state-dir", str(tmp_path / "state"), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {row["monitor"]: row for row in json.loads(proc.stdout)}
    assert rows["beat"]["status"] == "skipped"
    assert "a one-shot check cannot judge a datagram heartbeat" in rows["beat"]["reason"]
    assert "no daemon is running" in rows["beat"]["reason"]
    assert rows["here"]["status"] == "healthy"


def test_check_beside_a_running_daemon_shows_its_verdict_for_a_listen_heartbeat_and_binds_nothing(tmp_path):
    config = listen_config(tmp_path)
    state = tmp_path / "state"
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, events.path)
    try:

        def judged() -> bool:
            snapshot = read_status(state) or {}
            return any(m["name"] == "beat" and m.get("status") for m in snapshot.get("monitors", []))

        wait_until_sync(judged, timeout=30)
        proc = horus("check", "-c", config, "--state-dir", str(state), "--json")
        assert "Address already in use" not in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        rows = {row["monitor"]: row for row in json.loads(proc.stdout)}
        snapshot = {m["name"]: m for m in (read_status(state) or {})["monitors"]}
        assert rows["beat"]["status"] == snapshot["beat"]["status"]
        assert rows["beat"]["reason"].startswith(f"as the running daemon (pid {daemon.pid}) saw it ")
        table = horus("check", "-c", config, "--state-dir", str(state))
        assert "as the running daemon" in table.stdout
    finally:
        stop_daemon(daemon)
