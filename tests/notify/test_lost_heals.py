"""Heals whose event never reached the outbox are found again from the heal log, and only those."""

from __future__ import annotations

import time

from horus.notify.events import Event, EventKind, Severity
from horus.notify.outbox import Outbox, lost_heal_notices
from horus.store.state import Instant, StateStore, StoredMonitorState


def begin(store: StateStore, monitor: str, at: float) -> int:
    state = StoredMonitorState(monitor, 1, "unhealthy", "down", at, at, Instant(wall=at, mono=0.0, boot=None))
    return store.begin_heal(state, action="run_script", reason="down")


def test_only_heals_without_their_event_are_told_and_an_unfinished_one_as_interrupted(tmp_path):
    store = StateStore.open(tmp_path)
    now = time.time()
    told = begin(store, "told", now - 60)
    store.finish_heal(told, ok=True, summary="restarted", details={}, finished_at=now - 59)
    silent = begin(store, "silent", now - 50)
    store.finish_heal(silent, ok=True, summary="restarted", details={}, finished_at=now - 49)
    settled = begin(store, "settled", now - 40)
    store.finish_heal(settled, ok=True, summary="restarted", details={}, finished_at=now - 39)
    store.mark_announced(settled, "held back as a repeat")
    cut_short = begin(store, "cut-short", now - 30)
    outbox = Outbox.open(tmp_path)
    event = Event(EventKind.HEALED, Severity.WARNING, "told healed", "", "told", {"heal_id": told}, created_at=now - 58)
    outbox.enqueue(event, ["rec"], not_before=now)
    outbox.close()

    heals = store.heals_to_announce(since=now - 3600)
    notices = {notice.monitor: notice for notice in lost_heal_notices(tmp_path, heals)}
    store.close()
    assert set(notices) == {"silent", "cut-short"}
    assert notices["silent"].kind is EventKind.HEALED and notices["silent"].details["heal_id"] == silent
    assert "found in its heal log" in notices["silent"].message
    assert notices["cut-short"].kind is EventKind.HEAL_FAILED and notices["cut-short"].heal_id == cut_short
    assert "interrupted" in notices["cut-short"].title and "not known" in notices["cut-short"].message


def test_an_event_older_than_the_heal_is_not_its_event(tmp_path):
    # A state database started afresh numbers its heals from 1 again: an old event naming heal 1 is
    # about another heal.
    store = StateStore.open(tmp_path)
    now = time.time()
    heal = begin(store, "bot", now - 10)
    store.finish_heal(heal, ok=False, summary="exit 1", details={"refused": True}, finished_at=now - 9)
    outbox = Outbox.open(tmp_path)
    old = Event(EventKind.HEALED, Severity.WARNING, "bot healed", "", "bot", {"heal_id": heal}, created_at=now - 86000)
    outbox.enqueue(old, ["rec"], not_before=now)
    outbox.close()
    [notice] = lost_heal_notices(tmp_path, store.heals_to_announce(since=now - 3600))
    store.close()
    assert notice.kind is EventKind.HEAL_REFUSED
