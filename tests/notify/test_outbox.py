"""The durable outbox: what is queued survives, is delivered once per channel, and is forgotten in time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

from horus.notify.channels import AppriseChannel
from horus.notify.config import AppriseChannelConfig, NotifySettings
from horus.notify.events import Event, EventKind, Severity
from horus.notify.outbox import Outbox
from horus.notify.worker import DeliveryWorker
from tests.notify.receivers import WebhookReceiver
from tests.support import free_port, wait_until_sync


def event(kind: EventKind = EventKind.FAILING, monitor: str | None = "bot", at: float | None = None, **kw) -> Event:
    return Event(
        kind, kw.pop("severity", Severity.WARNING), f"{monitor} {kind}", "why", monitor, created_at=at or time.time()
    )


def test_enqueue_is_idempotent_on_the_event_id_and_due_returns_events_oldest_first(tmp_path):
    outbox = Outbox.open(tmp_path)
    first, second = event(at=100.0), event(EventKind.HEALED, at=101.0)
    assert outbox.enqueue(second, ["a", "b"], not_before=101.0) == ["a", "b"]
    assert outbox.enqueue(first, ["a"], not_before=100.0) == ["a"]
    assert outbox.enqueue(first, ["a"], not_before=100.0) == [], "the same event twice is stored once"
    assert outbox.due("a", 99.0) == []
    assert [(e.id, attempts) for e, attempts in outbox.due("a", 101.0)] == [(first.id, 0), (second.id, 0)]
    assert outbox.due("a", 101.0)[0][0] == first, "the event comes back whole"
    assert outbox.next_due_at() == 100.0
    assert outbox.next_due_at(["b"]) == 101.0
    outbox.close()


def test_when_anything_is_due_the_rest_of_its_grouping_window_rides_along(tmp_path):
    outbox = Outbox.open(tmp_path)
    for at in (100.0, 100.3, 100.6, 200.0):
        outbox.enqueue(event(at=at), ["a"], not_before=at + 10)
    assert outbox.due("a", 109.0, ride_along=10) == [], "nothing is due yet, so nothing leaves early"
    assert len(outbox.due("a", 110.0)) == 1
    assert len(outbox.due("a", 110.0, ride_along=10)) == 3, "events of the same window go together"
    outbox.close()


def test_failed_sent_and_dead_deliveries_show_in_each_channels_health(tmp_path):
    outbox = Outbox.open(tmp_path)
    now = time.time()
    ok, failing, doomed = event(at=now - 30), event(at=now - 20), event(at=now - 10)
    for e in (ok, failing, doomed):
        outbox.enqueue(e, ["slack", "pager"], not_before=e.created_at)
    outbox.mark_sent("slack", [ok.id, failing.id, doomed.id], now)
    outbox.mark_failed("pager", [ok.id, failing.id], "exited 1: boom", retry_at=now + 5)
    outbox.mark_failed("pager", [ok.id, failing.id], "exited 1: boom again", retry_at=now + 10)
    outbox.mark_dead("pager", [doomed.id], "not found", now)
    health = {h.channel: h for h in outbox.health(now, channels=["email"])}
    assert health["slack"].pending == 0 and health["slack"].last_sent_at == now
    assert health["slack"].consecutive_failures == 0 and not health["slack"].given_up
    pager = health["pager"]
    assert (pager.pending, pager.dead_in_last_day, pager.consecutive_failures) == (2, 1, 2)
    assert pager.given_up and pager.last_error == "not found"
    assert pager.oldest_pending_age is not None and 29 < pager.oldest_pending_age < 40
    assert [e for e, _ in outbox.due("pager", now + 10)] == [ok, failing]
    assert outbox.due("pager", now + 10)[0][1] == 2, "attempts are counted per delivery"
    assert health["email"].pending == 0, "a configured channel shows even before its first event"
    outbox.mark_sent("pager", [ok.id, failing.id], now + 11)
    pager = {h.channel: h for h in outbox.health(now + 11)}["pager"]
    assert not pager.given_up and pager.consecutive_failures == 0 and pager.pending == 0
    outbox.close()


def test_recovered_goes_only_to_channels_that_were_told_of_the_problem(tmp_path):
    outbox = Outbox.open(tmp_path)
    down = event(EventKind.HEAL_FAILED, at=100.0)
    outbox.enqueue(down, ["slack"], not_before=100.0)  # the pager filters out heal_failed
    outbox.enqueue(event(EventKind.FAILING, monitor="other", at=100.0), ["pager"], not_before=100.0)
    up = event(EventKind.RECOVERED, at=110.0, severity=Severity.INFO)
    assert outbox.enqueue(up, ["slack", "pager"], not_before=110.0, only_where_announced=True) == ["slack"]

    again = event(EventKind.RECOVERED, at=120.0, severity=Severity.INFO)
    assert outbox.enqueue(again, ["slack"], not_before=120.0, only_where_announced=True) == [], (
        "a second recovered, with no problem since the first, goes nowhere"
    )

    # A problem whose delivery was given up on was never announced there.
    lost = event(EventKind.FAILING, at=130.0)
    outbox.enqueue(lost, ["slack"], not_before=130.0)
    outbox.mark_dead("slack", [lost.id], "gave up", 131.0)
    late_up = event(EventKind.RECOVERED, at=140.0, severity=Severity.INFO)
    assert outbox.enqueue(late_up, ["slack"], not_before=140.0, only_where_announced=True) == []

    # Still going out counts: the problem is pending (the channel is down), so its recovery follows it.
    pending = event(EventKind.FAILING, at=150.0)
    outbox.enqueue(pending, ["slack"], not_before=150.0)
    outbox.mark_failed("slack", [pending.id], "refused", retry_at=160.0)
    up_again = event(EventKind.RECOVERED, at=155.0, severity=Severity.INFO)
    assert outbox.enqueue(up_again, ["slack"], not_before=155.0, only_where_announced=True) == ["slack"]
    outbox.close()


def test_channels_no_longer_configured_are_given_up_and_pruning_never_drops_pending(tmp_path):
    outbox = Outbox.open(tmp_path)
    old_sent, old_pending, recent = event(at=100.0), event(at=101.0), event(at=5000.0)
    outbox.enqueue(old_sent, ["slack"], not_before=100.0)
    outbox.enqueue(old_pending, ["slack", "removed"], not_before=101.0)
    outbox.enqueue(recent, ["slack"], not_before=5000.0)
    outbox.mark_sent("slack", [old_sent.id], 102.0)
    assert outbox.abandon_channels_not_in({"slack"}, now=200.0) == {"removed": 1}
    assert outbox.due("removed", 10_000.0) == []
    removed = {h.channel: h for h in outbox.health(200.0)}["removed"]
    assert removed.given_up and removed.last_error == "channel no longer configured"

    assert outbox.prune(older_than=1000.0) == 1, "only the old event with nothing pending goes"
    remaining = {e.id: statuses for e, statuses in outbox.recent_events(since=0.0)}
    assert set(remaining) == {old_pending.id, recent.id}
    assert remaining[old_pending.id] == {"slack": "pending"}, "pending deliveries are never pruned"
    outbox.close()


def test_recent_events_list_each_event_with_its_status_per_channel(tmp_path):
    outbox = Outbox.open(tmp_path)
    a, b, c = event(at=100.0), event(EventKind.HEALED, at=200.0), event(EventKind.STARTED, monitor=None, at=300.0)
    outbox.enqueue(a, ["slack"], not_before=100.0)
    outbox.enqueue(b, ["slack", "pager"], not_before=200.0)
    outbox.enqueue(c, [], not_before=300.0)
    outbox.mark_sent("slack", [b.id], 201.0)
    outbox.mark_dead("pager", [b.id], "refused", 202.0)
    assert outbox.recent_events(since=150.0) == [(b, {"pager": "dead", "slack": "sent"}), (c, {})]
    outbox.close()


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from horus.notify.channels import AppriseChannel
    from horus.notify.config import AppriseChannelConfig, NotifySettings
    from horus.notify.events import Event, EventKind, Severity
    from horus.notify.outbox import Outbox
    from horus.notify.worker import DeliveryWorker
    from horus.log import configure

    configure(stream=sys.stderr)
    state_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    outbox = Outbox.open(state_dir)
    tokens = []
    for n in range(5):
        token = f"tok-{n}-{time.time_ns()}"
        tokens.append(token)
        event = Event(EventKind.HEAL_FAILED, Severity.CRITICAL, "bot heal failed", f"token={token}", "bot")
        outbox.enqueue(event, ["hook"], not_before=event.created_at)
    channel = AppriseChannel(AppriseChannelConfig(name="hook", url=f"json://127.0.0.1:{port}/hook"))
    worker = DeliveryWorker(state_dir, [channel], NotifySettings(group_seconds=0), backoff_base=0.05, backoff_max=0.2)
    worker.start()
    while outbox.health(time.time())[0].consecutive_failures < 2:  # the receiver is down: retries fail
        time.sleep(0.01)
    print(json.dumps(tokens), flush=True)
    print("enqueued", flush=True)
    time.sleep(60)
    """
)


def test_events_queued_by_a_horus_killed_with_sigkill_are_delivered_after_it_comes_back(tmp_path):
    port = free_port()
    with (tmp_path / "child.log").open("w") as child_log:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(port)], stdout=subprocess.PIPE, stderr=child_log, text=True
        )
    try:
        assert child.stdout is not None
        tokens = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "enqueued"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    with WebhookReceiver(port) as receiver:
        channel = AppriseChannel(AppriseChannelConfig(name="hook", url=receiver.json_url()))
        worker = DeliveryWorker(tmp_path, [channel], NotifySettings(group_seconds=0), backoff_base=0.05)
        worker.start()
        try:
            wait_until_sync(lambda: all(receiver.count(token) for token in tokens))
            outbox = Outbox.open(tmp_path)
            wait_until_sync(lambda: outbox.health(time.time())[0].pending == 0)
            outbox.close()
        finally:
            worker.stop(timeout=2)
        assert [receiver.count(token) for token in tokens] == [1] * 5, "every event once, none lost"


def test_after_a_failed_attempt_the_channel_gets_nothing_until_its_retry_so_messages_stay_in_order(tmp_path):
    outbox = Outbox.open(tmp_path)
    down = event(at=100.0)
    outbox.enqueue(down, ["slack", "pager"], not_before=100.0)
    outbox.mark_failed("slack", [down.id], "refused", retry_at=130.0)
    up = event(EventKind.RECOVERED, at=110.0, severity=Severity.INFO)
    outbox.enqueue(up, ["slack", "pager"], not_before=110.0)
    assert outbox.due("slack", 120.0) == [], "recovered must not overtake the down that is waiting to retry"
    assert [e for e, _ in outbox.due("pager", 120.0)] == [down, up], "other channels are not held"
    assert outbox.next_due_at(["slack"]) == 130.0
    assert outbox.next_due_at() == 100.0
    assert [e for e, _ in outbox.due("slack", 130.0)] == [down, up]
    outbox.mark_sent("slack", [down.id, up.id], 131.0)
    late = event(at=140.0)
    outbox.enqueue(late, ["slack"], not_before=140.0)
    assert [e for e, _ in outbox.due("slack", 140.0)] == [late], "a success lifts the hold"
    outbox.close()
