"""`make demo` is a newcomer's first command: it must show a heal and a recovery and stop by itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support import wait_until_sync

DEMO = Path(__file__).parents[1] / "examples" / "demo" / "run_demo.py"


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    out: str
    err: str
    took: float


@pytest.fixture(scope="module")
def demo_run() -> DemoRun:
    """One whole run of the demo, which the tests below read: it takes half a minute."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    return DemoRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@pytest.mark.slow
def test_the_demo_heals_the_hung_bot_confirms_recovery_and_stops_by_itself_within_two_minutes(demo_run):
    out = demo_run.out
    assert demo_run.returncode == 0, out + demo_run.err
    assert demo_run.took < 120
    order = [
        out.index("check.failed monitor=trading-bot"),
        out.index("heal.started monitor=trading-bot action=kill_process"),
        out.index("kill_process.signal_sent"),
        out.index("monitor.recovered monitor=trading-bot"),
        out.index("[demo] done"),
    ]
    assert order == sorted(order), "detection, heal, signal, recovery, then the end, in that order"
    assert out.count("heal.started monitor=trading-bot") == 1, "each hung bot is healed once"
    assert out.count("heal.started monitor=sdk-bot") == 1
    assert "heal.started monitor=exchange-api" not in out, "the hung API has no heal"
    assert "received SIGTERM, exiting" in out
    assert out.count("bot started pid=") == 2
    # The horus-sdk bot: its watchdog's crash record reaches Horus's heal, naming the stuck call.
    sdk_heal = next(line for line in out.splitlines() if "heal.started monitor=sdk-bot" in line)
    assert "stuck in place_maker_order at bot.py:" in sdk_heal
    assert out.index("monitor.recovered monitor=sdk-bot") > out.index("heal.started monitor=sdk-bot")
    assert "place_maker_order at bot.py:" in out[out.index("[demo] done") :]
    assert not _workdir(out).exists(), "the demo removes its temporary directory when it is done"


@pytest.mark.slow
def test_the_demo_trading_bot_halts_itself_on_rejects_and_sends_nothing_until_horus_control_resumes_it(demo_run):
    out = demo_run.out
    assert demo_run.returncode == 0, out + demo_run.err
    order = [
        out.index("[demo] trading desk: the bot has had"),  # the exchange starts rejecting
        out.index("[demo] trading desk: the bot tripped by itself, REDUCING -> FLATTENING -> HALTED"),
        out.index("heal.finished monitor=trading-desk action=halt outcome=ok"),
        out.index("$ horus control trading-desk resume --reason 'demo: the rejects were injected'"),
        out.index("trading-desk acknowledged resume"),
        out.index("[demo] trading desk: the bot trades again"),
        out.index("monitor.recovered monitor=trading-desk"),
        out.index("0 orders while halted"),
        out.index("[demo] done"),
    ]
    assert order == sorted(order), "rejects, the bot's own halt, Horus's heal, the resume, trading, then proof"
    reported = [
        out.index("check.failed monitor=trading-desk reason='trip "),
        out.index("monitor.alert monitor=trading-desk alert=trip"),
        out.index("heal.started monitor=trading-desk action=halt"),
    ]
    assert order[0] < min(reported) and max(reported) < order[2], "Horus reports the trip, then heals"
    assert out.count("heal.started monitor=trading-desk") == 1
    # The bot's own log of it: rejected, tripped, the flatten's order, then only denials until the resume.
    episode = out[out.index("[demo] trading desk: the bot's own log of it") : out.index("0 orders while halted")]
    steps = [
        episode.index("trading_bot ORDER rejected"),
        episode.index("control.trip name=failures_reduce"),
        episode.index("control.trip name=failures_halt"),
        episode.index("trading_bot FLATTEN sent sell"),
        episode.index("control.mode from=flattening to=halted"),
        episode.index("trading_bot ORDER denied"),
        episode.index("command=resume"),
        episode.index("trading_bot ORDER sent"),
    ]
    assert steps == sorted(steps), episode
    halted = episode[episode.index("to=halted") : episode.index("command=resume")]
    assert "ORDER sent" not in halted and "FLATTEN sent" not in halted, halted
    assert "Its position on the exchange: 0 BTC-USD (flat)" in out
    counts = re.search(
        r"(\d+) orders before the halt, 0 orders while halted \(\S+ s, in which the bot's gate refused (\d+) "
        r"orders\), (\d+) after the resume",
        out,
    )
    assert counts, out
    before, refused, after = (int(n) for n in counts.groups())
    assert before > 0 and refused > 0 and after > 0, "it traded, tried while halted, and traded again"


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
