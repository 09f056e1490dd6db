"""Channels: how events become one message, and how Apprise and command channels deliver it or say why not."""

from __future__ import annotations

import json
import sys

import pytest

from horus.errors import NotifyError
from horus.notify.channels import AppriseChannel, CommandChannel, build_channel, render
from horus.notify.config import AppriseChannelConfig, CommandChannelConfig
from horus.notify.events import Event, EventKind, Severity
from tests.notify.receivers import WebhookReceiver
from tests.support import free_port


def healed(monitor: str = "bot") -> Event:
    return Event(EventKind.HEALED, Severity.WARNING, f"{monitor} healed", "killed pid 41; it came back", monitor)


def test_one_event_is_its_own_message_and_several_make_one_summary_with_the_highest_severity():
    assert render([healed()]) == ("bot healed", "killed pid 41; it came back", Severity.WARNING)
    failed = Event(EventKind.HEAL_FAILED, Severity.CRITICAL, "api heal failed", "docker: not found", "api")
    title, body, severity = render([healed("bot"), failed, healed("web")])
    assert title == "Horus: 3 events (2 healed, 1 heal failed)"
    assert severity == Severity.CRITICAL
    lines = body.splitlines()
    assert lines[0].startswith("1. ") and lines[0].endswith("[bot] bot healed")
    assert lines[1] == "   killed pid 41; it came back"
    assert body.index("[api] api heal failed") < body.index("docker: not found") < body.index("[web] web healed")


def test_an_apprise_json_channel_posts_title_message_and_type():
    with WebhookReceiver() as receiver:
        channel = build_channel(AppriseChannelConfig(name="hook", url=receiver.json_url("/hook")))
        assert isinstance(channel, AppriseChannel)
        failed = Event(EventKind.HEAL_FAILED, Severity.CRITICAL, "api heal failed", "docker: not found", "api")
        channel.send([failed], timeout=5)
    [message] = receiver.messages
    assert (message["title"], message["message"], message["type"]) == (
        "api heal failed",
        "docker: not found",
        "failure",
    )
    assert receiver.paths == ["/hook"]


def test_an_unreachable_apprise_channel_raises_a_retryable_error_without_its_url():
    channel = AppriseChannel(AppriseChannelConfig(url=f"json://127.0.0.1:{free_port()}/hook/SECRET123"))
    assert channel.name == "json"
    with pytest.raises(NotifyError) as caught:
        channel.send([healed()], timeout=5)
    assert not caught.value.permanent
    assert "json:// delivery failed" in str(caught.value)
    assert "SECRET123" not in str(caught.value) and caught.value.__cause__ is None


def test_a_command_channel_gets_the_events_as_a_json_array_on_stdin(tmp_path):
    out = tmp_path / "got.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    channel = build_channel(CommandChannelConfig(name="pager", command=[sys.executable, "-c", script]))
    assert isinstance(channel, CommandChannel)
    first, second = healed(), Event(EventKind.STARTED, Severity.INFO, "Horus started", "on host")
    channel.send([first, second], timeout=10)
    got = json.loads(out.read_text())
    assert [(e["id"], e["kind"], e["monitor"]) for e in got] == [
        (first.id, "healed", "bot"),
        (second.id, "started", None),
    ]
    assert got[0] == first.as_dict()


def test_a_failing_command_reports_its_exit_code_and_last_line_and_a_missing_one_is_permanent(tmp_path):
    script = "import sys; print('connecting'); print('pager API said 503', file=sys.stderr); sys.exit(3)"
    failing = CommandChannel(CommandChannelConfig(name="pager", command=[sys.executable, "-c", script]))
    with pytest.raises(NotifyError, match=r"^pager exited 3: pager API said 503$") as caught:
        failing.send([healed()], timeout=10)
    assert not caught.value.permanent

    missing = CommandChannel(CommandChannelConfig(command=[str(tmp_path / "no-such-pager")]))
    with pytest.raises(NotifyError, match="not found") as caught:
        missing.send([healed()], timeout=10)
    assert caught.value.permanent


def test_a_command_that_hangs_is_killed_at_the_callers_timeout():
    hangs = CommandChannel(
        CommandChannelConfig(command=[sys.executable, "-c", "import time; time.sleep(60)"], timeout_seconds=30)
    )
    with pytest.raises(NotifyError, match=r"did not finish within 0\.3 s") as caught:
        hangs.send([healed()], timeout=0.3)
    assert not caught.value.permanent
