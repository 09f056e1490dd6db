"""Verdicts an operator can sleep on, each against a real daemon and real processes: "not known yet" is
never "healthy", a failed heal is never credited with a recovery, a refused heal is not a heal, and no
incident closes while its monitor fails or is quarantined."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import EventLog, free_port, spawn_daemon, stop_daemon, wait_until_sync

HORUS = [sys.executable, "-m", "horus"]


def notify_to(path: Path) -> list[dict]:
    """A command channel that appends every event it gets to ``path``, one JSON array per line."""
    script = f"import sys; open({str(path)!r}, 'a').write(sys.stdin.read().replace(chr(10), ' ') + chr(10))"
    return [{"name": "file", "command": [sys.executable, "-c", script]}]


def sent(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events: list[dict] = []
    for line in path.read_text().splitlines():
        try:
            events += json.loads(line)
        except json.JSONDecodeError:
            continue
    return events


def _row(config: Path, state: Path, name: str) -> dict:
    shown = subprocess.run(
        [*HORUS, "status", "-c", str(config), "--state-dir", str(state), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = json.loads(shown.stdout).get("monitors") or []
    return next((row for row in rows if row["name"] == name), {})


def write(config: Path, monitors: list[dict], **extra) -> None:
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": monitors,
                "notify_settings": {"group_seconds": 0.2},
                **extra,
            }
        )
    )


@pytest.mark.slow
def test_a_growth_window_not_yet_watched_after_a_reload_or_a_restart_is_never_a_recovery(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    monitor = {
        "name": "pipeline",
        "interval_seconds": 0.3,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "heal_cooldown_seconds": 0,
        "confirm_recovery_seconds": 0.5,
        "budget": {"max_heals": 1000},
        "check": {"type": "artifact_growth", "window_seconds": 1.5, "glob": {"directory": str(output)}},
        "heal": {"action": "run_script", "command": ["false"]},  # every heal fails; nothing is ever written
    }
    config = tmp_path / "horus.json"
    notes = tmp_path / "sent.jsonl"
    write(config, [monitor], notify=notify_to(notes))
    log = EventLog(tmp_path / "events.jsonl")
    state = tmp_path / "state"
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("heal.failed"), timeout=20)
        # A reload that changes the monitor but not its check: its window carries over.
        write(config, [{**monitor, "interval_seconds": 0.25}], notify=notify_to(notes))
        daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: log.named("config.reloaded"), timeout=10)
        failed = len(log.named("heal.failed"))
        wait_until_sync(lambda: len(log.named("heal.failed")) >= failed + 2, timeout=20)
    finally:
        assert stop_daemon(daemon) == 0
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: len(log.named("horus.started")) == 2, timeout=20)
        time.sleep(3)  # more than the window: the restarted Horus watches it whole, and it stays empty
        wait_until_sync(lambda: len(log.named("heal.failed")) >= failed + 3, timeout=20)
    finally:
        assert stop_daemon(daemon) == 0
    assert not log.named("monitor.recovered")
    assert not log.named("incident.recovery_confirmed")
    assert not log.named("incident.closed")
    assert not [e for e in sent(notes) if e["kind"] == "recovered"]


@pytest.mark.slow
def test_a_heal_that_exited_non_zero_is_never_credited_and_the_postmortem_says_so(tmp_path):
    ready = tmp_path / "ready"
    monitor = {
        "name": "svc",
        "interval_seconds": 0.2,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "confirm_recovery_seconds": 1,
        "check": {"type": "file_exists", "path": str(ready)},
        # The script brings the service back, then says it failed: only the service's word counts, and the
        # heal is not credited with what it denies having done.
        "heal": {"action": "run_script", "command": f"touch {ready}; exit 1", "shell": True},
    }
    config = tmp_path / "horus.json"
    write(config, [monitor], sentinel={"reopen_within_seconds": 0.5})
    log = EventLog(tmp_path / "events.jsonl")
    state = tmp_path / "state"
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("heal.failed"), timeout=20)
        wait_until_sync(lambda: log.named("incident.closed"), timeout=20)
    finally:
        assert stop_daemon(daemon) == 0
    [recovered] = log.named("monitor.recovered")
    assert recovered["outcome"] == "recovered without a working heal"
    confirming = log.named("monitor.confirming")[0]
    assert recovered["timestamp"] > confirming["timestamp"], "one fresh look never confirms"
    postmortem = subprocess.run(
        [*HORUS, "postmortem", "-c", str(config), "--state-dir", str(state), "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert postmortem.returncode == 0, postmortem.stderr
    assert "recovered without a working heal" in postmortem.stdout


@pytest.mark.slow
def test_seed_000s_restart_loop_setup_refuses_once_with_no_grace_cooldown_or_healed(tmp_path):
    marker = f"main.py --mode conservative --run {os.getpid()}"
    bot = tmp_path / "main.py"
    bot.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    log_file = tmp_path / "bot.log"
    log_file.write_text("started\n")
    # Seed 000's setup: the bot under a `while true` loop whose own command line holds the pattern.
    loop = subprocess.Popen(
        ["sh", "-c", f"while true; do {sys.executable} {bot} {marker.removeprefix('main.py ')} # {marker}\n done"],
        start_new_session=True,
    )
    monitor = {
        "name": "bot",
        "interval_seconds": 0.3,
        "min_failures_to_heal": 2,
        "startup_grace_seconds": 5,
        "heal_cooldown_seconds": 60,
        "check": {"type": "log_staleness", "log_file": str(log_file), "max_age_seconds": 0.5},
        "heal": {"action": "kill_process", "process_pattern": marker},
    }
    config = tmp_path / "horus.json"
    notes = tmp_path / "sent.jsonl"
    write(config, [monitor], notify=notify_to(notes))
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("heal.refused"), timeout=20)
        time.sleep(3)  # ten more looks at a failing service
        [refused] = log.named("heal.refused")
        assert refused["permanent"] is True
        assert "is the parent of" in refused["summary"], "the refusal says the loop is a wrapper of the bot"
        assert not log.named("heal.finished") and not log.named("heal.failed")
        assert not log.named("check.failed_in_grace"), "a refused heal starts no grace"
        wait_until_sync(lambda: any(e["kind"] == "heal_refused" for e in sent(notes)), timeout=10)
        messages = " ".join(e["message"] for e in sent(notes))
        assert "Healed recently" not in messages
        assert not [e for e in sent(notes) if e["kind"] == "healed"]
        assert loop.poll() is None, "nothing was signalled"

        # The operator fixes the cause (or accepts it) and asks for one more try.
        state = tmp_path / "state"
        wait_until_sync(lambda: _row(config, state, "bot").get("heal_blocked"), timeout=20)
        resumed = subprocess.run(
            [*HORUS, "resume", "-c", str(config), "--state-dir", str(state), "bot"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith("resumed bot: its refused heal will be tried again")
        wait_until_sync(lambda: len(log.named("heal.refused")) == 2, timeout=20)
    finally:
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(timeout=10)
        assert stop_daemon(daemon) == 0


@pytest.mark.slow
def test_a_quarantined_monitor_whose_port_opens_for_a_moment_keeps_its_incident_open(tmp_path):
    port = free_port()
    monitor = {
        "name": "gateway",
        "interval_seconds": 0.2,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "heal_cooldown_seconds": 0,
        "confirm_recovery_seconds": 3,
        "budget": {"max_heals": 1, "retry_in_seconds": 3600},
        "check": {"type": "port_open", "host": "127.0.0.1", "port": port},
        "heal": {"action": "run_script", "command": ["true"]},
    }
    config = tmp_path / "horus.json"
    write(config, [monitor], sentinel={"reopen_within_seconds": 0.5})
    log = EventLog(tmp_path / "events.jsonl")
    state = tmp_path / "state"
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("monitor.quarantined"), timeout=20)
        with socket.create_server(("127.0.0.1", port)):
            time.sleep(1.8)  # the port opens for a moment
        time.sleep(2)
        assert not log.named("incident.closed")
        assert not log.named("monitor.recovered")
        wait_until_sync(lambda: _row(config, state, "gateway").get("quarantined_until"), timeout=20)
        brief = subprocess.run(
            [*HORUS, "digest", "-c", str(config), "--state-dir", str(state)], capture_output=True, text=True, timeout=60
        )
        assert "gateway: quarantined" in brief.stdout
    finally:
        assert stop_daemon(daemon) == 0


@pytest.mark.slow
def test_a_crash_loop_writing_its_traceback_to_the_watched_log_is_never_recovered(tmp_path):
    log_file = tmp_path / "bot.log"
    log_file.write_text("started\n")
    crash = tmp_path / "crash.py"
    crash.write_text("import time\nprint('bot starting', flush=True)\ntime.sleep(0.2)\n1 / 0\n")
    loop = tmp_path / "loop.sh"
    loop.write_text(f"while true; do {sys.executable} {crash} >> {log_file} 2>&1; sleep 0.5; done\n")
    monitor = {
        "name": "bot",
        "interval_seconds": 0.3,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "heal_cooldown_seconds": 0,
        "confirm_recovery_seconds": 2,
        "budget": {"max_heals": 100},
        "check": {"type": "log_staleness", "log_file": str(log_file), "max_age_seconds": 1},
        # The heal starts the service under a restart loop; it crashes at once, every time, into its log.
        "heal": {
            "action": "run_script",
            "command": f"nohup sh {loop} >/dev/null 2>&1 & echo $! > {tmp_path}/loop.pid",
            "shell": True,
        },
    }
    config = tmp_path / "horus.json"
    write(config, [monitor])
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("heal.finished"), timeout=20)
        wait_until_sync(lambda: log.named("monitor.confirmation_broken"), timeout=20)
        time.sleep(4)  # twice the confirmation period, with the loop crashing all along
        assert not log.named("monitor.recovered")
        assert not log.named("incident.recovery_confirmed")
    finally:
        pid_file = tmp_path / "loop.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        assert stop_daemon(daemon) == 0


@pytest.mark.slow
def test_a_recovery_confirmed_before_a_horus_restart_is_not_announced_again_after_it(tmp_path):
    """Seen in a run by hand: a heal, its recovery confirmed, then Horus restarted while the incident waited out
    its reopen window. The new daemon took the open incident for a failure, "confirmed" the healthy service's
    recovery again and announced "recovered without a heal", unhealthy for the 3 s it had looked at it."""
    log_file = tmp_path / "bot.log"
    writer = f"import time\nwhile True:\n    open({str(log_file)!r}, 'a').write('beat\\n')\n    time.sleep(0.1)\n"
    loop = f'while true; do {sys.executable} -c "$BOT" verdict-restart-bot; sleep 0.2; done'
    service = subprocess.Popen(["/bin/sh", "-c", loop], env={**os.environ, "BOT": writer}, start_new_session=True)
    monitor = {
        "name": "bot",
        "interval_seconds": 0.2,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "confirm_recovery_seconds": 1,
        "check": {"type": "log_staleness", "log_file": str(log_file), "max_age_seconds": 1},
        "heal": {"action": "kill_process", "process_pattern": "verdict-restart-bot", "ignore_wrappers": True},
    }
    config = tmp_path / "horus.json"
    events = tmp_path / "sent.jsonl"
    write(config, [monitor], notify=notify_to(events), sentinel={"reopen_within_seconds": 3600})
    log = EventLog(tmp_path / "events.jsonl")
    state = tmp_path / "state"
    try:
        daemon = spawn_daemon(config, state, log.path)
        try:
            wait_until_sync(lambda: log.named("horus.started"), timeout=30)
            wait_until_sync(lambda: _row(config, state, "bot").get("status") == "healthy", timeout=30, interval=0.3)
            [bot] = [p for p in psutil.process_iter(["cmdline"]) if "verdict-restart-bot" in (p.info["cmdline"] or [])]
            bot.suspend()  # hung: its log goes stale, and the heal kills it for the loop to start again
            wait_until_sync(lambda: log.named("monitor.recovered"), timeout=30)
        finally:
            assert stop_daemon(daemon) == 0
        recovered = [e for e in sent(events) if e.get("kind") == "recovered"]
        daemon = spawn_daemon(config, state, log.path)
        try:
            wait_until_sync(lambda: len(log.named("horus.started")) == 2, timeout=30)
            # Healthy in `horus status` (written every few seconds): many confirmation periods of looks.
            wait_until_sync(lambda: _row(config, state, "bot").get("status") == "healthy", timeout=30, interval=0.3)
            assert len(log.named("monitor.recovered")) == 1, log.named("monitor.recovered")
            assert len(log.named("monitor.confirming")) == 1, log.named("monitor.confirming")
            assert [e for e in sent(events) if e.get("kind") == "recovered"] == recovered
        finally:
            assert stop_daemon(daemon) == 0
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
