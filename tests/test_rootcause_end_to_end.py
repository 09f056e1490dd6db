"""The probable cause as the daemon names it, for check types that read no log and for a deploy.

An HTTP service whose writes fail with "No space left on device" answers 503 to its health check: the
monitor names the service's log in its ``evidence`` block, so the incident quotes the line instead of
saying "unknown". A deploy under a ``while true`` restart loop: the commit is made while the old process
still runs (the monitor is healthy after it), the new code cannot import, and the incident names the commit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from horus.engine.status import read_status
from tests.support import EventLog, free_port, spawn_daemon, stop_daemon, wait_until_sync

STORAGE_SERVICE = """
import http.server, logging, sys, threading, time
logging.basicConfig(filename=sys.argv[1], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("storage")
port, data = int(sys.argv[2]), sys.argv[3]
failing = threading.Event()

def writer():
    while True:
        try:
            with open(data, "a") as f:
                f.write("tick\\n")
                f.flush()
            log.info("wrote a batch")
        except OSError:
            log.exception("cannot write a batch")
            failing.set()
        time.sleep(0.2)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if failing.is_set() else 200)
        self.end_headers()
        self.wfile.write(b"storage unavailable" if failing.is_set() else b"ok")
    def log_message(self, *args):
        log.info("GET /health")

threading.Thread(target=writer, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def write_config(path: Path, monitor: dict) -> Path:
    path.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0, "startup_grace_seconds": 0},
                "sentinel": {"py_spy": False},
                "monitors": [{"interval_seconds": 0.3, "min_failures_to_heal": 2, **monitor}],
            }
        )
    )
    return path


@pytest.mark.slow
def test_an_http_monitor_that_names_its_services_log_gets_the_logged_cause(tmp_path):
    port = free_port()
    log, script = tmp_path / "storage.log", tmp_path / "storage.py"
    script.write_text(STORAGE_SERVICE)
    service = subprocess.Popen([sys.executable, str(script), str(log), str(port), "/dev/full"])
    config = write_config(
        tmp_path / "horus.json",
        {
            "name": "storage",
            "check": {"type": "http_health", "url": f"http://127.0.0.1:{port}/health"},
            "evidence": {"logs": [str(log)], "process_pattern": str(script)},
        },
    )
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: events.named("incident.opened"), timeout=30)
    finally:
        assert stop_daemon(daemon) == 0
        service.kill()
        service.wait()
    [opened] = events.named("incident.opened")
    assert opened["probable_cause"] == "probable: disk full (no space left on device)"


BOT_V1 = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("bot v1 listening", flush=True)
while True:
    server.accept()[0].close()
"""


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Knox", "GIT_AUTHOR_EMAIL": "knox@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Knox", "GIT_COMMITTER_EMAIL": "knox@example.com"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


@pytest.mark.slow
def test_a_deploy_made_while_the_service_was_healthy_is_named_as_the_cause(tmp_path):
    port = free_port()
    repo, log = tmp_path / "bot", tmp_path / "bot.log"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "bot.py").write_text(BOT_V1)
    git(repo, "add", "bot.py")
    git(repo, "commit", "-q", "-m", "first version")
    loop = f'while true; do {sys.executable} bot.py {port}; echo "bot exited with $?, restarting"; sleep 0.3; done'
    with log.open("ab") as out:
        supervisor = subprocess.Popen(
            ["sh", "-c", loop], cwd=repo, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    config = write_config(
        tmp_path / "horus.json",
        {
            "name": "bot",
            "check": {"type": "port_open", "host": "127.0.0.1", "port": port},
            "evidence": {"logs": [str(log)]},
            "work_tree": str(repo),
        },
    )
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        wait_until_sync(lambda: _accepts(port), timeout=20)
        wait_until_sync(lambda: _healthy(tmp_path / "state", "bot"), timeout=20)
        # The deploy: commit, then the old process goes and the loop starts the new code.
        (repo / "bot.py").write_text("import exchange_v2\n" + BOT_V1)
        git(repo, "commit", "-q", "-am", "switch to the v2 exchange client")
        for child in psutil.Process(supervisor.pid).children():
            child.kill()  # the loop's python, not the loop
        wait_until_sync(lambda: events.named("incident.opened"), timeout=30)
    finally:
        assert stop_daemon(daemon) == 0
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
    [opened] = events.named("incident.opened")
    cause = opened["probable_cause"]
    assert cause.startswith("probable: ModuleNotFoundError in bot.py:1 after commit "), (cause, log.read_text())
    assert cause.endswith('"switch to the v2 exchange client"')


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _healthy(state_dir: Path, name: str) -> bool:
    status = read_status(state_dir) or {}
    return any(row.get("name") == name and row.get("status") == "healthy" for row in status.get("monitors") or [])


FLAGGED_BOT = """
import os, socket, sys
if os.path.exists(sys.argv[2]):
    sys.exit("bad settings: " + sys.argv[2])
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    server.accept()[0].close()
"""


@pytest.mark.slow
def test_a_heal_that_worked_is_credited_even_when_horus_restarts_before_the_recovery_is_confirmed(tmp_path):
    port, flag, log = free_port(), tmp_path / "broken", tmp_path / "bot.log"
    (tmp_path / "bot.py").write_text(FLAGGED_BOT)
    loop = f'while true; do {sys.executable} bot.py {port} {flag}; echo "bot exited with $?"; sleep 0.3; done'
    with log.open("ab") as out:
        supervisor = subprocess.Popen(
            ["sh", "-c", loop], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    heal = f"rm -f {flag}; pkill -f '^{sys.executable} bot.py {port}' || true"  # the bot, not its loop
    config = write_config(
        tmp_path / "horus.json",
        {
            "name": "bot",
            "check": {"type": "port_open", "host": "127.0.0.1", "port": port},
            "heal": {"action": "run_script", "command": heal, "shell": True},
            "heal_cooldown_seconds": 0,
            "confirm_recovery_seconds": 3,
            "verify_within_seconds": 30,
            "evidence": {"logs": [str(log)]},
        },
    )
    state = tmp_path / "state"
    first, second = EventLog(tmp_path / "first.jsonl"), EventLog(tmp_path / "second.jsonl")
    daemon = spawn_daemon(config, state, first.path)
    try:
        wait_until_sync(lambda: _accepts(port), timeout=20)
        wait_until_sync(lambda: _healthy(state, "bot"), timeout=20)
        flag.write_text("x")
        for child in psutil.Process(supervisor.pid).children():
            child.kill()  # the loop restarts it, and it fails at every start now
        wait_until_sync(lambda: first.named("heal.finished"), timeout=30)
        assert stop_daemon(daemon) == 0  # before the recovery could be confirmed
        assert not first.named("monitor.recovered")
        daemon = spawn_daemon(config, state, second.path)
        wait_until_sync(lambda: second.named("incident.recovery_confirmed"), timeout=30)
    finally:
        assert stop_daemon(daemon) == 0
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
    [healed] = first.named("heal.finished")
    assert healed["outcome"] == "ok"
    [confirmed] = second.named("incident.recovery_confirmed")
    assert confirmed["note"].startswith("recovered after a working heal"), confirmed["note"]
