"""`horus control NAME ...` as an operator runs it: a real horus process, a real bot using horus-sdk's Control."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from horus_sdk.control_files import control_path, read_commands, read_status, status_path
from horus_sdk.formats import write_json_atomic
from tests.support import wait_until_sync

# A bot with nothing but the control plane: it cycles every 0.1 s and counts the orders its gate allows.
BOT = textwrap.dedent(
    """
    import asyncio, sys
    from horus_sdk import Control, Order

    async def main(control_dir):
        async with Control(control_dir) as control:
            control.reconciled(positions={})
            while True:
                await control.cycle()
                control.permit(Order("BTC-USD", "buy", 0.01))
                await asyncio.sleep(0.1)

    asyncio.run(main(sys.argv[1]))
    """
)


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def desk(tmp_path: Path) -> tuple[Path, Path]:
    control_dir = tmp_path / "control"
    control_dir.mkdir()
    config = tmp_path / "horus.json"
    monitors = [
        {"name": "desk", "check": {"type": "trading", "control_dir": str(control_dir)}},
        {"name": "web", "check": {"type": "port_open", "port": 9}},
    ]
    config.write_text(json.dumps({"monitors": monitors}))
    return config, control_dir


def start_bot(control_dir: Path) -> subprocess.Popen[bytes]:
    bot = subprocess.Popen([sys.executable, "-c", BOT, str(control_dir)])
    wait_until_sync(lambda: _mode(control_dir) == "active", timeout=20)
    return bot


def _mode(control_dir: Path) -> str | None:
    try:
        return read_status(control_dir).get("mode")
    except (OSError, ValueError):
        return None


def test_halt_and_resume_a_running_bot_each_acknowledged_without_a_restart(desk):
    config, control_dir = desk
    bot = start_bot(control_dir)
    try:
        halted = horus("control", "desk", "halt", "--reason", "exchange maintenance", "-c", str(config))
        assert halted.returncode == 0, halted.stderr
        assert halted.stdout.startswith("desk acknowledged halt (seq 1) in ")
        assert "HALTED (operator" in halted.stdout and "exchange maintenance" in halted.stdout
        assert read_status(control_dir)["mode"] == "halted"

        resumed = horus("control", "desk", "resume", "--reason", "maintenance over", "-c", str(config))
        assert resumed.returncode == 0, resumed.stderr
        assert "acknowledged resume (seq 2)" in resumed.stdout and "ACTIVE" in resumed.stdout
        assert bot.poll() is None, "resuming needs no restart"
    finally:
        bot.kill()
        bot.wait()


def test_a_bot_that_never_acknowledges_is_a_clear_failure_and_the_halt_waits_for_it(desk):
    config, control_dir = desk
    # What a bot that died left behind: its last status, from a pid that is gone.
    write_json_atomic(
        status_path(control_dir),
        {
            "format": "horus-trading/1",
            "pid": 999_999_999,
            "mode": "active",
            "applied_seq": 0,
            "last_cycle_at": time.time() - 120,
        },
    )
    started = time.monotonic()
    proc = horus("control", "desk", "halt", "--reason", "went dark", "--timeout", "1", "-c", str(config))
    assert proc.returncode == 1
    assert time.monotonic() - started < 30
    assert "desk did not acknowledge halt (seq 1) within" in proc.stderr
    assert "pid 999999999, which is not running" in proc.stderr
    assert "The command stays in control.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The halt is not lost: the bot that comes back applies it before it trades.
    bot = start_bot_halted(control_dir)
    try:
        assert read_status(control_dir)["applied_seq"] == 1
    finally:
        bot.kill()
        bot.wait()


def start_bot_halted(control_dir: Path) -> subprocess.Popen[bytes]:
    bot = subprocess.Popen([sys.executable, "-c", BOT, str(control_dir)])
    wait_until_sync(lambda: _mode(control_dir) == "halted", timeout=20)
    return bot


def test_a_resume_that_expired_while_the_bot_was_down_is_refused_and_the_halt_before_it_holds(desk):
    config, control_dir = desk
    assert horus("control", "desk", "halt", "--reason", "r1", "--timeout", "0.2", "-c", str(config)).returncode == 1
    late = horus(
        "control", "desk", "resume", "--reason", "r2", "--timeout", "0.2", "--expires-in", "1", "-c", str(config)
    )
    assert late.returncode == 1
    assert [c.command for c in read_commands(control_dir)] == ["halt", "resume"]
    time.sleep(1.2)  # the resume's expiry passes while no bot runs: that is the point of the test
    bot = start_bot_halted(control_dir)
    try:
        wait_until_sync(lambda: (read_status(control_dir).get("control") or {}).get("seq") == 2, timeout=10)
        control = read_status(control_dir)["control"]
        assert control["outcome"] == "refused" and "expired" in control["reason"]
        assert read_status(control_dir)["mode"] == "halted"
    finally:
        bot.kill()
        bot.wait()


def test_a_control_dir_that_does_not_exist_is_a_clear_error(desk):
    config, control_dir = desk
    control_dir.rmdir()
    proc = horus("control", "desk", "halt", "--reason", "x", "-c", str(config))
    assert proc.returncode == 1
    assert f"the control dir {control_dir} does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "halt", "--reason", "x"], "no monitor named 'nobody'"),
        (["web", "halt", "--reason", "x"], "has no control dir"),
        (["desk", "halt"], "Missing option '--reason'"),
        (["desk", "buy", "--reason", "x"], "'buy' is not one of 'halt', 'reduce', 'flatten', 'resume'"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message_and_write_nothing(desk, args, message):
    config, control_dir = desk
    proc = horus("control", *args, "-c", str(config))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not control_path(control_dir).exists()


def test_a_command_another_user_wrote_is_not_believed_nor_carried_into_the_operators_next_one(tmp_path):
    from tests.other_user import other_user

    user = other_user()
    # A directory any user may write, as a shared /srv/bots/control might be (sticky, like /tmp); pytest's
    # own tmp_path is closed to other users, so it lives in a directory of its own.
    shared = Path(tempfile.mkdtemp(prefix="horus-shared-"))
    try:
        os.chmod(shared, 0o755)
        control_dir = shared / "control"
        control_dir.mkdir(mode=0o1777)
        os.chmod(control_dir, 0o1777)
        config = tmp_path / "horus.json"
        monitor = {"name": "desk", "check": {"type": "trading", "control_dir": str(control_dir)}}
        config.write_text(json.dumps({"monitors": [monitor]}))
        bot = start_bot(control_dir)
        try:
            forged = json.dumps(
                {
                    "format": "horus-control/1",
                    "seq": 50,
                    "command": "flatten",
                    "reason": "forged",
                    "issued_by": "root",
                    "issued_at": time.time(),
                }
            )
            as_other = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
            write = 'printf %s "$1" > "$2/control.json"'
            subprocess.run([*as_other, "sh", "-c", write, "sh", forged, str(control_dir)], check=True, timeout=10)
            wait_until_sync(lambda: read_status(control_dir).get("control_error"), timeout=10)
            status = read_status(control_dir)
            assert f"written by {user.name} (uid {user.uid}), who is not trusted" in status["control_error"]
            assert status["mode"] == "active" and status["applied_seq"] == 0

            halted = horus("control", "desk", "halt", "--reason", "mine", "-c", str(config))
            assert halted.returncode == 0, halted.stderr
            assert "(seq 1)" in halted.stdout, "the stranger's seq 50 is not taken for the file's"
            assert [c.command for c in read_commands(control_dir)] == ["halt"]
            assert read_status(control_dir)["mode"] == "halted"
        finally:
            bot.kill()
            bot.wait()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
