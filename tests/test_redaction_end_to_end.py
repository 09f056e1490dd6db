"""Secrets a service prints never leave Horus: a command check's output with ``password=...`` and a
failing heal script's ``Authorization: Bearer ...`` are masked before the log, the notifications, the
three databases, the status files, the post-mortem and the command line ever see them."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = HORUS_RUN[:-1]  # python -m horus
SECRETS = (b"hunter2", b"abc.def")

RECEIVER = """
import sys
with open(sys.argv[1], "ab") as out:
    out.write(sys.stdin.buffer.read() + b"\\n")
"""


def horus(config: Path, state: Path, *args: str) -> str:
    done = subprocess.run(
        [*HORUS, *args, "-c", str(config), "--state-dir", str(state)], capture_output=True, text=True, timeout=60
    )
    return done.stdout + done.stderr


def leaks(data: bytes) -> list[str]:
    return [secret.decode() for secret in SECRETS if secret in data]


@pytest.mark.slow
def test_a_password_in_check_output_and_a_bearer_token_in_heal_output_reach_nothing_horus_keeps_or_sends(tmp_path):
    flag, received, state = tmp_path / "fixed", tmp_path / "received.jsonl", tmp_path / "state"
    receiver = tmp_path / "receiver.py"
    receiver.write_text(RECEIVER)
    check = f'[ -e {flag} ] && exit 0; echo "connecting to db with password=hunter2 failed"; exit 1'
    # The heal fixes the service but fails, and its last line holds a bearer token.
    heal = f'touch {flag}; echo "POST /restart"; echo "Authorization: Bearer abc.def"; exit 3'
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "sentinel": {"reopen_within_seconds": 0.5},
                "notify": [{"name": "pager", "command": [sys.executable, str(receiver), str(received)]}],
                "notify_settings": {"group_seconds": 0.2},
                "monitors": [
                    {
                        "name": "api",
                        "interval_seconds": 0.2,
                        "min_failures_to_heal": 2,
                        "startup_grace_seconds": 0,
                        "confirm_recovery_seconds": 0.5,
                        "check": {"type": "command", "command": ["/bin/sh", "-c", check]},
                        "heal": {"action": "run_script", "command": ["/bin/sh", "-c", heal]},
                    }
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("incident.closed"), timeout=40)
        wait_until_sync(lambda: received.exists() and b'"recovered"' in received.read_bytes(), timeout=20)
    finally:
        assert stop_daemon(daemon) == 0

    # The secrets' lines did go everywhere, masked: this test watches the paths it means to.
    [failed] = log.named("heal.failed")
    assert "Authorization: Bearer ***" in failed["summary"], failed
    assert "password=***" in log.named("check.failed")[0]["reason"]
    assert b"Bearer ***" in received.read_bytes() and b"password=***" in received.read_bytes()

    assert leaks(log.path.read_bytes()) == [], "the JSON log"
    assert leaks(received.read_bytes()) == [], "the events a command channel received"
    kept = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".db") for path in kept)
    for path in kept:  # every database (and its WAL), the status files, the post-mortems, raw bytes
        assert leaks(path.read_bytes()) == [], path

    listed = horus(config, state, "incidents", "--json")
    [incident] = json.loads(listed)
    commands = {
        "incident": ("incident", str(incident["id"])),
        "postmortem": ("postmortem", str(incident["id"])),
        "status": ("status",),
        "digest": ("digest",),
    }
    with ThreadPoolExecutor(len(commands)) as pool:  # each is a Python start-up: side by side, not in turn
        shown = dict(zip(commands, pool.map(lambda args: horus(config, state, *args), commands.values()), strict=True))
    shown["incidents --json"] = listed
    assert "Bearer ***" in shown["incident"], shown["incident"]
    assert "password=***" in shown["postmortem"], shown["postmortem"]
    for command, output in shown.items():
        assert leaks(output.encode()) == [], f"horus {command}:\n{output}"
