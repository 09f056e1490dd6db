"""The seed story at small scale: a bot hangs with its process alive; Horus notices and heals it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import EventLog, SilentServer, spawn_daemon, stop_daemon, wait_until_sync

DEMO = Path(__file__).parents[1] / "examples" / "demo"
MAX_AGE = 2.0


@pytest.fixture
def hung_servers():
    servers = [SilentServer() for _ in range(20)]
    yield servers
    for server in servers:
        server.close()


@pytest.mark.slow
def test_a_hung_bot_gets_sigterm_within_max_age_plus_one_second_even_beside_twenty_hung_probes(tmp_path, hung_servers):
    log = tmp_path / "bot.log"
    monitors = [
        {
            "name": "polymarket-bot",
            "interval_seconds": 0.25,
            "min_failures_to_heal": 2,
            "heal_cooldown_seconds": 180,
            "startup_grace_seconds": 5,
            "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": MAX_AGE},
            "heal": {
                "action": "kill_process",
                # The log path makes the pattern this test's own, whatever else runs on the machine.
                "process_pattern": f"demo_bot.py --mode conservative --log {log}",
                "signal": "SIGTERM",
                "grace_seconds": 5,
                "max_matches": 1,
            },
        },
        *[
            {
                "name": f"hung-api-{i}",
                "interval_seconds": 1,
                "check_timeout_seconds": 3,
                "check": {"type": "http_health", "url": server.url()},
            }
            for i, server in enumerate(hung_servers)
        ],
    ]
    config = tmp_path / "horus.json"
    config.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0.5}, "monitors": monitors}))

    keepalive = subprocess.Popen(
        ["/bin/sh", str(DEMO / "keepalive.sh"), sys.executable, str(DEMO / "demo_bot.py"), str(log)],
        start_new_session=True,
    )
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", events.path)
    try:
        # Watch the log as the bot writes it: its last write before the hang, then the SIGTERM line.
        last_write_before_signal = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if "received SIGTERM" in text:
                signalled_at = log.stat().st_mtime
                break
            if log.exists():
                last_write_before_signal = log.stat().st_mtime
            time.sleep(0.01)
        else:
            pytest.fail("the hung bot was never signalled")
        assert last_write_before_signal is not None
        delay = signalled_at - last_write_before_signal
        assert MAX_AGE <= delay <= MAX_AGE + 1.0, f"SIGTERM came {delay:.2f} s after the last log line"

        # The restart loop brings it back, and Horus sees it working again.
        wait_until_sync(lambda: log.read_text().count("bot started") == 2, timeout=15)
        wait_until_sync(
            lambda: any(e["monitor"] == "polymarket-bot" for e in events.named("monitor.recovered")),
            timeout=15,
        )
        restarted = [
            p
            for p in psutil.process_iter(["cmdline"])
            if f"demo_bot.py --mode conservative --log {log}" in " ".join(p.info["cmdline"] or [])
        ]
        assert len(restarted) == 1

        # Horus leaves the healthy bot alone: well past max_age, the same process still runs, no second heal.
        time.sleep(MAX_AGE * 2)
        assert restarted[0].is_running()
        heals = events.named("heal.started")
        assert [h["monitor"] for h in heals] == ["polymarket-bot"]
        assert any(e["monitor"].startswith("hung-api") for e in events.named("check.failed"))
    finally:
        stop_daemon(daemon, timeout=15)
        os.killpg(keepalive.pid, signal.SIGKILL)
        keepalive.wait(timeout=10)
