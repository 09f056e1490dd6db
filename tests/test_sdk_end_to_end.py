"""Seed 000 with all three layers: the SDK ends a bot stuck on an order call and says where; Horus's
heartbeat check sees the heartbeat stop, restarts the bot, and its heal names the stuck function."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

BOT = Path(__file__).parents[1] / "examples" / "sdk" / "bot.py"


@pytest.mark.slow
def test_horus_restarts_a_bot_its_sdk_watchdog_ended_and_the_heal_names_where_it_was_stuck(tmp_path):
    state = tmp_path / "bot"
    hung = subprocess.Popen([sys.executable, str(BOT), "--state", str(state), "--hang-orders", "--kill-after", "1.5"])
    restart = f"{sys.executable} {BOT} --state {state} --kill-after 1.5 >> {tmp_path / 'bot2.log'} 2>&1 &"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    {
                        "name": "bot",
                        "interval_seconds": 0.5,
                        "min_failures_to_heal": 2,
                        "startup_grace_seconds": 3,
                        "heal_cooldown_seconds": 60,
                        "check": {
                            "type": "heartbeat",
                            "path": str(state / "heartbeat.json"),
                            "max_age_seconds": 2,
                            "channels": {"orders": 5},
                            "crash_dir": str(state),
                        },
                        "heal": {"action": "run_script", "command": restart, "shell": True},
                    }
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "horus", log.path)

    try:
        # Layer 2: the SDK watchdog ends the hung bot (SIGTERM) and leaves a crash record behind.
        assert hung.wait(timeout=20) in (-signal.SIGTERM, 128 + signal.SIGTERM)
        [record_file] = list(state.glob("horus-crash-*.json"))
        record = json.loads(record_file.read_text())
        assert record["stuck"]["function"] == "place_maker_order"

        # Layer 3: Horus sees the heartbeat stop, restarts the bot, and says where it was stuck.
        wait_until_sync(lambda: log.named("heal.finished"), timeout=20)
        [started] = log.named("heal.started")
        assert "stuck in place_maker_order at bot.py:" in started["crash_summary"]
        assert started["reason"].startswith("heartbeat ")
        wait_until_sync(lambda: log.named("monitor.recovered"), timeout=20)
    finally:
        stop_daemon(daemon, timeout=15)
        subprocess.run(["pkill", "-f", f"{BOT} --state {state}"], check=False)


BEATER = """
import asyncio, sys
from horus_sdk import Heartbeat
async def main():
    hb = Heartbeat(unix_socket=sys.argv[1], interval=0.1)
    async with hb:
        for _ in range(int(float(sys.argv[2]) / 0.05)):
            hb.progress("work")
            await asyncio.sleep(0.05)
    # Gone silent, the way a hung process goes silent (a clean exit still sends a last beat).
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.mark.slow
def test_the_daemon_listens_for_datagram_heartbeats_heals_when_they_stop_and_closes_its_socket(tmp_path, short_dir):
    socket_path = short_dir / "hb.sock"
    marker = tmp_path / "healed"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    {
                        "name": "beater",
                        "interval_seconds": 0.5,
                        "min_failures_to_heal": 2,
                        "startup_grace_seconds": 0,
                        "check": {"type": "heartbeat", "listen": f"unix:{socket_path}", "max_age_seconds": 1},
                        "heal": {"action": "run_script", "command": ["touch", str(marker)]},
                    }
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "horus", log.path, "--log-level", "debug")
    beater = None
    try:
        wait_until_sync(socket_path.is_socket, timeout=15)
        beater = subprocess.Popen([sys.executable, "-c", BEATER, str(socket_path), "2"])
        wait_until_sync(lambda: log.named("check.ok"), timeout=15)
        wait_until_sync(marker.exists, timeout=20)
        [started] = log.named("heal.started")
        assert started["reason"].startswith("heartbeat ") and "old, limit 1 s" in started["reason"]
        assert beater.poll() is None, "the process is alive: only its heartbeat said it stopped working"
    finally:
        assert stop_daemon(daemon, timeout=15) == 0
        if beater is not None:
            beater.kill()
            beater.wait()
    assert not socket_path.exists(), "Horus removes its socket when it stops"
