"""A real bot process under the trading control: halted from outside while it runs, it sends nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from horus_sdk.control_files import issue_command, read_status
from tests.support import wait_until_sync

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "src"

# The bot asks the gate before every order and writes down each answer, in the order it got them, with
# the time it asked: what it "sent" is what the exchange would have received.
BOT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from horus_sdk import Control, Order

    control_dir, journal_path = sys.argv[1], sys.argv[2]
    journal = open(journal_path, "a", buffering=1)

    def note(event, **fields):
        journal.write(json.dumps({"event": event, **fields}) + "\\n")

    class Hooks:
        async def positions(self):
            return {}

        async def cancel_all(self):
            note("cancel_all")

        async def flatten(self, positions):
            note("flatten", positions=positions)

    async def main():
        async with Control(control_dir, hooks=Hooks(), poll_interval=0.05) as control:
            control.reconciled({})
            note("started", mode=str(control.mode))
            number = 0
            while True:
                await control.cycle()
                number += 1
                order = Order("BTC-USD", "buy", 0.01, client_order_id=f"o-{number}")
                asked = time.monotonic()
                permit = control.permit(order)
                if permit:
                    note("sent", id=order.client_order_id, asked=asked)
                else:
                    note("refused", id=order.client_order_id, asked=asked, reason=permit.reason)
                await asyncio.sleep(0.005)

    asyncio.run(main())
    """
)


class Bot:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.control_dir = workdir / "control"
        self.script = workdir / "bot.py"
        self.script.write_text(BOT)
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._stderr: IO[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        env = {**os.environ, "PYTHONPATH": str(SDK_SRC)}
        self._stderr = (self.workdir / f"stderr-{self.runs}.txt").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(self.script), str(self.control_dir), str(self.journal(self.runs))],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def journal(self, run: int) -> Path:
        return self.workdir / f"journal-{run}.jsonl"

    def events(self, run: int | None = None) -> list[dict[str, Any]]:
        path = self.journal(run or self.runs)
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def count(self, event: str, run: int | None = None) -> int:
        return sum(1 for e in self.events(run) if e["event"] == event)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr(self) -> str:
        return (self.workdir / f"stderr-{self.runs}.txt").read_text()


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    running = Bot(tmp_path)
    yield running
    running.kill()


def status(control_dir: Path) -> dict[str, Any]:
    return read_status(control_dir)


def acknowledged(control_dir: Path, seq: int) -> dict[str, Any]:
    """The first status that acknowledges ``seq`` (read as soon as it is there)."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        try:
            current = status(control_dir)
        except (OSError, ValueError):
            return False
        if current["applied_seq"] >= seq:
            found.append(current)
            return True
        return False

    wait_until_sync(seen, timeout=10, interval=0.002)
    return found[0]


def test_a_bot_halted_while_it_runs_sends_nothing_more(bot: Bot) -> None:
    bot.start()
    wait_until_sync(lambda: bot.count("sent") >= 20, timeout=30)

    halt = issue_command(bot.control_dir, "halt", "the operator hit the kill switch", "alice via test")
    ack = acknowledged(bot.control_dir, halt.seq)
    assert ack["mode"] == "halted"
    sent_at_ack = bot.count("sent")
    wait_until_sync(lambda: bot.count("refused") >= 50, timeout=30)  # it keeps trying, every cycle

    events = bot.events()
    sent = [e for e in events if e["event"] == "sent"]
    assert bot.count("sent") == sent_at_ack
    # Nothing asked after the status said "halted" got through, and after the first refusal nothing at all.
    assert all(e["asked"] < ack["monotonic"] for e in sent)
    first_refusal = next(i for i, e in enumerate(events) if e["event"] == "refused")
    assert not any(e["event"] == "sent" for e in events[first_refusal:])
    assert {e["reason"] for e in events if e["event"] == "refused"} == {"halted: the operator hit the kill switch"}
    assert bot.count("cancel_all") == 1
    assert bot.process is not None and bot.process.poll() is None, bot.stderr()


def test_a_halted_bot_killed_and_restarted_stays_halted_until_resumed(bot: Bot) -> None:
    bot.start()
    wait_until_sync(lambda: bot.count("sent") >= 5, timeout=30)
    halt = issue_command(bot.control_dir, "halt", "investigating fills", "alice via test")
    acknowledged(bot.control_dir, halt.seq)

    bot.kill()  # as a heal, a crash or a reboot would
    bot.start()
    wait_until_sync(lambda: bot.count("refused") >= 20, timeout=30)
    assert bot.count("sent") == 0
    assert status(bot.control_dir)["mode"] == "halted"

    resume = issue_command(bot.control_dir, "resume", "fills reconciled by hand", "alice via test")
    started = time.monotonic()
    acknowledged(bot.control_dir, resume.seq)
    wait_until_sync(lambda: bot.count("sent") >= 5, timeout=30)
    assert time.monotonic() - started < 30
    assert status(bot.control_dir)["mode"] == "active"
