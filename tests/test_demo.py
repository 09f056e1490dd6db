"""`make demo` is a newcomer's first command: it must show a heal and a recovery and stop by itself."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[1] / "examples" / "demo" / "run_demo.py"


@pytest.mark.slow
def test_the_demo_heals_the_hung_bot_confirms_recovery_and_stops_by_itself_within_two_minutes():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert took < 120
    order = [
        out.index("check.failed monitor=trading-bot"),
        out.index("heal.started monitor=trading-bot action=kill_process"),
        out.index("kill_process.signal_sent"),
        out.index("monitor.recovered monitor=trading-bot"),
        out.index("[demo] done"),
    ]
    assert order == sorted(order), "detection, heal, signal, recovery, then the end, in that order"
    assert out.count("heal.started") == 2, "each hung bot is healed once; the hung API has no heal"
    assert "received SIGTERM, exiting" in out
    assert out.count("bot started pid=") == 2
    # The horus-sdk bot: its watchdog's crash record reaches Horus's heal, naming the stuck call.
    sdk_heal = next(line for line in out.splitlines() if "heal.started monitor=sdk-bot" in line)
    assert "stuck in place_maker_order at bot.py:" in sdk_heal
    assert out.index("monitor.recovered monitor=sdk-bot") > out.index("heal.started monitor=sdk-bot")
    assert "place_maker_order at bot.py:" in out[out.index("[demo] done") :]
