"""`make demo` is a newcomer's first command: it must show a heal and a recovery and stop by itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import wait_until_sync

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
    assert not _workdir(out).exists(), "the demo removes its temporary directory when it is done"


def _workdir(out: str) -> Path:
    found = re.search(r"\[demo\] working in (\S+)", out)
    assert found, out
    return Path(found.group(1))


def _processes_using(directory: Path) -> list[str]:
    """Processes whose command line names the directory: the bots, their restart loop, Horus."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(directory) in cmdline:
            found.append(f"{proc.pid}: {cmdline}")
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_stops_everything_it_started_and_removes_its_directory(tmp_path, signum):
    output = tmp_path / "demo.out"
    with output.open("w") as sink:
        demo = subprocess.Popen([sys.executable, str(DEMO)], stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_sync(lambda: "starting `horus run`" in output.read_text(), timeout=30)
        workdir = _workdir(output.read_text())
        wait_until_sync(lambda: len(_processes_using(workdir)) >= 3, timeout=30)  # loop, bot, sdk bot, horus
        demo.send_signal(signum)
        assert demo.wait(timeout=60) == 130, output.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
    assert "interrupted: stopping everything" in output.read_text()
    assert not workdir.exists()
    assert _processes_using(workdir) == [], "nothing the demo started is left running"


def test_a_demo_that_fails_removes_its_directory_too(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HORUS_DEMO_DEADLINE_SECONDS": "0.5"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "did not see a heal and a recovery in time" in proc.stdout
    workdir = _workdir(proc.stdout)
    assert not workdir.exists()
    assert _processes_using(workdir) == []
