"""The delivery worker against real receivers: down, hanging and working webhooks, and a failing program."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from horus.notify.channels import AppriseChannel, Channel, CommandChannel
from horus.notify.config import AppriseChannelConfig, CommandChannelConfig, NotifySettings
from horus.notify.events import Event, EventKind, Severity
from horus.notify.outbox import ChannelHealth, Outbox
from horus.notify.worker import DeliveryWorker
from tests.notify.receivers import WebhookReceiver
from tests.support import SilentServer, free_port, wait_until_sync

FAST = {"backoff_base": 0.05, "backoff_max": 0.2}


class Harness:
    """An outbox the test writes to, like the daemon's notifier does, and a worker that delivers from it."""

    def __init__(self, state_dir: Path, channels: list[Channel], settings: NotifySettings, **worker_options) -> None:
        self.outbox = Outbox.open(state_dir)
        self.settings = settings
        self.channels = [c.name for c in channels]
        self.worker = DeliveryWorker(state_dir, channels, settings, **{**FAST, **worker_options})

    def emit(self, kind: EventKind = EventKind.FAILING, *, to: list[str] | None = None, monitor: str = "bot") -> str:
        """Queue an event whose message holds a unique token; returns the token."""
        token = f"tok-{uuid.uuid4().hex[:12]}"
        event = Event(kind, Severity.WARNING, f"{monitor} {kind}", f"token={token}", monitor)
        self.outbox.enqueue(event, to or self.channels, not_before=event.created_at + self.settings.group_seconds)
        self.worker.wake()
        return token

    def health(self, channel: str) -> ChannelHealth:
        return {h.channel: h for h in self.outbox.health(time.time())}[channel]


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for harness in made:
        harness.worker.stop(timeout=1)
        harness.outbox.close()


def json_channel(name: str, url: str) -> AppriseChannel:
    return AppriseChannel(AppriseChannelConfig(name=name, url=url))


def test_a_webhook_that_is_down_then_hangs_then_works_gets_every_event_exactly_once(tmp_path, harnesses):
    port = free_port()
    with WebhookReceiver() as steady_receiver:
        flaky = json_channel("flaky", f"json://127.0.0.1:{port}/hook")
        steady = json_channel("steady", steady_receiver.json_url())
        settings = NotifySettings(group_seconds=0, send_timeout_seconds=0.5)
        h = Harness(tmp_path, [flaky, steady], settings)
        harnesses.append(h)
        h.worker.start()

        # Down: nothing listens, every attempt is refused and retried.
        tokens = [h.emit() for _ in range(3)]
        wait_until_sync(lambda: h.health("flaky").consecutive_failures >= 3)
        assert all(steady_receiver.count(t) == 1 for t in tokens), "the healthy channel is not held back"

        # Hangs: connections are accepted and never answered.
        silent = SilentServer(port)
        try:
            wait_until_sync(lambda: h.health("flaky").last_error == "no answer within 500 ms")
            assert silent.accepted, "the attempt really is stuck on an open connection"
            began = time.monotonic()
            during = [h.emit() for _ in range(3)]
            wait_until_sync(lambda: all(steady_receiver.count(t) == 1 for t in during), timeout=3)
            assert time.monotonic() - began < 2, "the healthy channel gets its events promptly while one hangs"
            assert h.health("flaky").pending == 6
        finally:
            silent.close()

        # Works: the same port now answers.
        with WebhookReceiver(port) as flaky_receiver:
            after = [h.emit() for _ in range(2)]
            everything = tokens + during + after
            wait_until_sync(lambda: all(flaky_receiver.count(t) for t in everything), timeout=15)
            wait_until_sync(lambda: h.health("flaky").pending == 0)
            assert [flaky_receiver.count(t) for t in everything] == [1] * 8, "nothing lost, nothing duplicated"
            received = "\n".join(m["message"] for m in flaky_receiver.messages)
            positions = [received.index(t) for t in everything]
            assert positions == sorted(positions), "in the order they happened, the retried ones first"
            assert [steady_receiver.count(t) for t in everything] == [1] * 8
            flaky_health = h.health("flaky")
            assert flaky_health.consecutive_failures == 0 and flaky_health.last_sent_at is not None


def test_events_within_the_grouping_window_arrive_as_one_message_listing_them_all(tmp_path, harnesses):
    with WebhookReceiver() as receiver:
        h = Harness(tmp_path, [json_channel("hook", receiver.json_url())], NotifySettings(group_seconds=0.5))
        harnesses.append(h)
        h.worker.start()
        kinds = [EventKind.HEALED, EventKind.HEALED, EventKind.HEAL_FAILED, EventKind.FAILING, EventKind.HEALED]
        tokens = [h.emit(kind, monitor=f"m{n}") for n, kind in enumerate(kinds)]
        wait_until_sync(lambda: receiver.messages and h.health("hook").pending == 0)
    [message] = receiver.messages
    assert message["title"] == "Horus: 5 events (3 healed, 1 heal failed, 1 failing)"
    positions = [message["message"].index(token) for token in tokens]
    assert positions == sorted(positions), "listed in the order they happened"
    assert all(f"[m{n}]" in message["message"] for n in range(5))


def test_a_channel_that_always_fails_is_given_up_on_reported_and_no_longer_retried(tmp_path, harnesses):
    calls = tmp_path / "calls"
    script = (
        f"import sys; open({str(calls)!r}, 'a').write('x\\n'); sys.stdin.read(); "
        "print('pager API: 401 unauthorized', file=sys.stderr); sys.exit(1)"
    )
    pager = CommandChannel(CommandChannelConfig(name="pager", command=[sys.executable, "-c", script]))
    settings = NotifySettings(group_seconds=0, give_up_after_seconds=0.6)
    h = Harness(tmp_path, [pager], settings)
    harnesses.append(h)
    with capture_logs() as logs:
        h.worker.start()
        h.emit(EventKind.HEAL_FAILED)
        wait_until_sync(lambda: h.health("pager").given_up)
        health = h.health("pager")
        assert (health.pending, health.dead_in_last_day) == (0, 1)
        assert health.last_error == "pager exited 1: pager API: 401 unauthorized"
        attempts = len(calls.read_text().splitlines())
        assert attempts >= 2, "it was retried before being given up on"
        time.sleep(0.5)  # over twice the longest retry interval: time enough for a retry that must not come
        assert len(calls.read_text().splitlines()) == attempts
    failed = [e for e in logs if e["event"] == "notify.failed"]
    [gave_up] = [e for e in logs if e["event"] == "notify.gave_up"]
    assert failed and all(e["channel"] == "pager" and e["log_level"] == "warning" for e in failed)
    assert gave_up["channel"] == "pager" and gave_up["log_level"] == "error" and gave_up["events"] == 1
    assert "401 unauthorized" in gave_up["error"]


def test_a_permanent_error_is_given_up_on_after_one_attempt(tmp_path, harnesses):
    missing = CommandChannel(CommandChannelConfig(name="pager", command=[str(tmp_path / "no-such-pager")]))
    h = Harness(tmp_path, [missing], NotifySettings(group_seconds=0))
    harnesses.append(h)
    h.worker.start()
    h.emit()
    wait_until_sync(lambda: h.health("pager").given_up)
    health = h.health("pager")
    assert health.consecutive_failures == 1 and "not found" in (health.last_error or "")


def test_stopping_sends_what_only_waits_for_its_grouping_window(tmp_path, harnesses):
    with WebhookReceiver() as receiver:
        h = Harness(tmp_path, [json_channel("hook", receiver.json_url())], NotifySettings(group_seconds=60))
        harnesses.append(h)
        h.worker.start()
        token = h.emit(EventKind.STOPPED, monitor="horus")
        h.worker.stop(timeout=3)
        assert receiver.count(token) == 1, "the last words of a stopping Horus are not held for a minute"
        assert h.health("hook").pending == 0


def test_stopping_does_not_wait_for_a_hung_channel_and_its_events_stay_queued(tmp_path, harnesses):
    silent = SilentServer(free_port())
    try:
        hung = json_channel("hung", f"json://127.0.0.1:{silent.port}/hook")
        h = Harness(tmp_path, [hung], NotifySettings(group_seconds=0, send_timeout_seconds=0.3))
        h.worker.start()
        h.emit()
        wait_until_sync(lambda: h.health("hung").consecutive_failures >= 1)
        began = time.monotonic()
        h.worker.stop(timeout=0.5)
        assert time.monotonic() - began < 2
        assert h.health("hung").pending == 1, "kept for the next start"
        h.outbox.close()
    finally:
        silent.close()


def test_webhook_tokens_in_urls_never_reach_logs_or_health(tmp_path, harnesses, caplog):
    caplog.set_level(logging.DEBUG)
    with WebhookReceiver() as receiver:
        down = json_channel("down", f"json://127.0.0.1:{free_port()}/hook/SECRET123")
        up = AppriseChannel(AppriseChannelConfig(url=receiver.json_url("/hook/SECRET123")))
        h = Harness(tmp_path, [down, up], NotifySettings(group_seconds=0, give_up_after_seconds=0.5))
        harnesses.append(h)
        with capture_logs() as logs:
            h.worker.start()
            token = h.emit()
            wait_until_sync(lambda: receiver.count(token) == 1 and h.health("down").given_up)
        assert receiver.paths == ["/hook/SECRET123"], "the token was used, just never shown"
    names = {e["event"] for e in logs}
    assert {"notify.delivered", "notify.failed", "notify.gave_up"} <= names
    assert "SECRET123" not in repr(logs)
    assert "SECRET123" not in caplog.text
    assert "SECRET123" not in repr(h.outbox.health(time.time()))
    assert {e["channel"] for e in logs if e["event"].startswith("notify.")} == {"down", "json"}


def test_a_channels_error_keeps_no_secret_in_the_outbox_or_its_health(tmp_path, harnesses):
    # A paging script that fails and prints its own credentials, as real ones do in their errors.
    leaky = "import sys; print('401 from https://pager.example/api?token=s3cr3tT0ken99; password=hunter2'); sys.exit(1)"
    pager = CommandChannel(CommandChannelConfig(name="pager", command=[sys.executable, "-c", leaky]))
    h = Harness(tmp_path, [pager], NotifySettings(group_seconds=0))
    harnesses.append(h)
    h.worker.start()
    h.emit()
    wait_until_sync(lambda: h.health("pager").last_error is not None)
    error = h.health("pager").last_error
    assert "hunter2" not in error and "s3cr3tT0ken99" not in error, error
    assert "password=***" in error
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"hunter2" not in raw and b"s3cr3tT0ken99" not in raw
