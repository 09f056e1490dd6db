"""The notifier is the door every event leaves by: whatever the daemon hands it (a reason, a crash summary,
a config error), a title, message and details reach the outbox and the channels with secrets masked."""

from __future__ import annotations

import json
import sys

from horus.notify.config import CommandChannelConfig, NotifySettings
from horus.notify.events import Event, EventKind, Severity
from horus.notify.notifier import Notifier
from horus.testing import ShiftedClock
from tests.support import wait_until_sync

SECRETS = (b"hunter2", b"abc.def", b"s3cr3t")

RECEIVER = """
import sys
with open(sys.argv[1], "ab") as out:
    out.write(sys.stdin.buffer.read() + b"\\n")
"""


def test_every_event_reaches_the_outbox_and_the_channel_with_its_secrets_masked(tmp_path):
    received = tmp_path / "received.jsonl"
    receiver = tmp_path / "receiver.py"
    receiver.write_text(RECEIVER)
    pager = CommandChannelConfig(name="pager", command=[sys.executable, str(receiver), str(received)])
    clock = ShiftedClock()
    notifier = Notifier(
        tmp_path / "state", [pager], NotifySettings(group_seconds=0, remind_every_seconds=1), clock=clock
    )
    (tmp_path / "state").mkdir()
    notifier.start()
    try:
        notifier.problem(
            EventKind.HEAL_FAILED,
            "api",
            "api: heal failed (password=hunter2)",
            "Why: exit 1: password=hunter2. Tried run_script: Authorization: Bearer abc.def.",
            reason="exit 1: password=hunter2",
            summary="script exited 3: Authorization: Bearer abc.def",
            crash_summary="stalled; token=s3cr3t",
        )
        clock.jump(5)  # a reminder is due, carrying the last reason it was told
        notifier.still_failing("api", "exit 1: password=hunter2")
        notifier.healthy("api", "exit 0: token=s3cr3t")
        notifier.emit(
            Event(EventKind.CONFIG_REJECTED, Severity.WARNING, "config rejected", "headers: api_key=s3cr3t"),
            immediately=True,
        )
        wait_until_sync(lambda: received.exists() and received.read_bytes().count(b'"kind"') >= 4, timeout=20)
    finally:
        notifier.stop()

    delivered = [event for line in received.read_text().splitlines() for event in json.loads(line)]
    assert sorted(e["kind"] for e in delivered) == ["config_rejected", "heal_failed", "recovered", "reminder"]
    [failed] = [e for e in delivered if e["kind"] == "heal_failed"]
    assert failed["title"] == "api: heal failed (password=***)"
    assert failed["message"] == "Why: exit 1: password=***. Tried run_script: Authorization: Bearer ***."
    assert failed["details"] == {
        "reason": "exit 1: password=***",
        "summary": "script exited 3: Authorization: Bearer ***",
        "crash_summary": "stalled; token=***",
    }
    assert [secret for secret in SECRETS if secret in received.read_bytes()] == []
    for path in (tmp_path / "state").iterdir():
        assert [secret for secret in SECRETS if secret in path.read_bytes()] == [], path
