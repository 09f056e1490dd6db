from __future__ import annotations

import json
import sqlite3

import pytest

from horus.errors import StoreError
from horus.sentinel.store import (
    DAY,
    DB_NAME,
    MAX_SNAPSHOT_BYTES,
    Incident,
    IncidentStateError,
    SqliteIncidentStore,
)
from tests.sentinel.support import open_incident

T0 = 1_771_990_000.0  # 2026-02-25, a few hours past midnight UTC


def open_one(store, monitor="bot", *, at=T0, fingerprint=None, reason="bot.log last written 312 s ago") -> Incident:
    # A real fingerprint covers the monitor's name, so each monitor has its own.
    return open_incident(
        store,
        monitor,
        at=at,
        fingerprint=fingerprint or f"{monitor}-stale",
        signature="asyncio.exceptions.timeouterror",
        reason=reason,
    )


def closed_one(store, monitor="bot", *, at=T0, fingerprint=None, reason="bot.log stale", note="recovered"):
    incident = open_one(store, monitor, at=at, fingerprint=fingerprint, reason=reason)
    return store.close_incident(incident.id, at=at + 300, recovered=True, note=note)


def test_an_incident_records_its_whole_life_in_its_timeline(store):
    incident = open_one(store)
    assert (incident.status, incident.recovered, incident.closed_at) == ("open", None, None)
    assert store.open_incident_for("bot") == incident
    store.add_snapshot(incident.id, {"processes": []}, at=T0 + 1)
    attempt = store.add_heal_attempt(incident.id, action="kill_process", step=0, at=T0 + 2)
    store.finish_heal_attempt(attempt.id, ok=True, summary="sent SIGTERM to pid 4121", at=T0 + 3)
    store.append(incident.id, "notified", "sent to ntfy", at=T0 + 4, channel="ntfy")
    store.mark_recovering(incident.id, at=T0 + 180, message="bot.log written 1 s ago")
    store.set_root_cause(incident.id, "order call without a deadline", ["stuck in place_maker_order"])
    closed = store.close_incident(
        incident.id,
        at=T0 + 600,
        recovered=True,
        note="stable for 7 min",
        detect_seconds=12.0,
        heal_seconds=1.5,
        recover_seconds=180.0,
    )

    assert (closed.status, closed.recovered, closed.closed_at, closed.recover_seconds) == (
        "closed",
        True,
        T0 + 600,
        180.0,
    )
    assert closed.root_cause_evidence == ("stuck in place_maker_order",)
    assert [entry.kind for entry in store.timeline(incident.id)] == [
        "detected",
        "snapshot_taken",
        "heal_started",
        "heal_finished",
        "notified",
        "recovery_confirmed",
        "closed",
    ]
    assert store.timeline(incident.id)[4].data == {"channel": "ntfy"}
    [finished] = store.heal_attempts(incident.id)
    assert (finished.action, finished.ok, finished.finished_at, finished.summary) == (
        "kill_process",
        True,
        T0 + 3,
        "sent SIGTERM to pid 4121",
    )
    assert store.open_incident_for("bot") is None


def test_a_closed_incident_never_absorbs_new_events(store):
    incident = closed_one(store)
    with pytest.raises(IncidentStateError, match="closed incident never absorbs new events"):
        store.append(incident.id, "notified", "late", at=T0 + 900)
    with pytest.raises(IncidentStateError):
        store.add_snapshot(incident.id, {}, at=T0 + 900)
    with pytest.raises(IncidentStateError):
        store.add_heal_attempt(incident.id, action="kill_process", step=0, at=T0 + 900)
    with pytest.raises(IncidentStateError):
        store.close_incident(incident.id, at=T0 + 900, recovered=True, note="again")
    assert [entry.kind for entry in store.timeline(incident.id)] == ["detected", "closed"]


def test_the_database_itself_keeps_the_timeline_append_only(store, tmp_path):
    incident = open_one(store)
    raw = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE timeline SET message = 'rewritten'")
    with pytest.raises(sqlite3.IntegrityError, match="in progress cannot be deleted"):
        raw.execute("DELETE FROM timeline")
    store.close_incident(incident.id, at=T0 + 1, recovered=True, note="ok")
    with pytest.raises(sqlite3.IntegrityError, match="never absorbs"):
        raw.execute(
            "INSERT INTO timeline (incident_id, at, kind, message) VALUES (?, ?, 'notified', 'x')", (incident.id, T0)
        )
    raw.close()


def test_reopening_is_only_allowed_while_recovering(store):
    incident = open_one(store)
    with pytest.raises(IncidentStateError, match="it is open, not recovering"):
        store.reopen(incident.id, at=T0 + 10, reason="failed again")
    store.mark_recovering(incident.id, at=T0 + 60, message="bot.log written 1 s ago")
    reopened = store.reopen(incident.id, at=T0 + 90, reason="bot.log last written 31 s ago")
    assert reopened.status == "open"
    assert store.timeline(incident.id)[-1].kind == "reopened"
    store.close_incident(incident.id, at=T0 + 100, recovered=False, note="quarantined")
    with pytest.raises(IncidentStateError, match="closed"):
        store.reopen(incident.id, at=T0 + 110, reason="too late")


def test_a_monitor_has_one_incident_in_progress_at_a_time(store):
    first = open_one(store)
    with pytest.raises(IncidentStateError, match="already has incident"):
        open_one(store, at=T0 + 5)
    open_one(store, "other-bot")  # other monitors are independent
    store.close_incident(first.id, at=T0 + 10, recovered=True, note="ok")
    assert open_one(store, at=T0 + 20).id != first.id


def test_prior_matching_counts_the_same_fingerprint_within_90_days(store):
    closed_one(store, at=T0 - 100 * DAY)  # too old
    closed_one(store, at=T0 - 60 * DAY)
    closed_one(store, at=T0 - 2 * DAY)
    closed_one(store, at=T0 - 1 * DAY, fingerprint="f-other")
    current = open_one(store, at=T0)
    assert store.prior_matching("bot-stale", before=current.opened_at, exclude_id=current.id) == 2
    assert store.prior_matching("bot-stale", before=current.opened_at, within_days=30, exclude_id=current.id) == 1
    assert store.prior_matching("bot-stale", before=T0 + 1) == 3  # the current one counts unless excluded


def test_patterns_count_occurrences_and_keep_their_recommendation(store):
    for days_ago in (30, 10, 1):
        closed_one(store, at=T0 - days_ago * DAY)
    store.set_recommendation("bot-stale", "log a heartbeat every 60 s")
    [pattern] = store.patterns("bot")
    assert (pattern.occurrences, pattern.first_seen, pattern.last_seen) == (3, T0 - 30 * DAY, T0 - 1 * DAY)
    assert pattern.recommendation == "log a heartbeat every 60 s"
    assert store.patterns("nobody") == []
    with pytest.raises(IncidentStateError):
        store.set_recommendation("no-such-fingerprint", "x")


def test_retention_prunes_only_old_closed_incidents(store):
    old = closed_one(store, "a", at=T0 - 40 * DAY)
    store.index_postmortem(old.id, "# old", path="/state/postmortems/old.md")
    stuck = open_one(store, "b", at=T0 - 50 * DAY)  # in progress for 50 days: never pruned
    store.add_snapshot(stuck.id, {"x": 1}, at=T0 - 50 * DAY)
    recent = [closed_one(store, "a", at=T0 - days * DAY) for days in (3, 2, 1)]

    result = store.prune(now=T0, keep_days=30, keep_max=2)

    assert result.deleted == 2  # the old one, and the oldest of the three recent ones beyond keep_max
    assert result.postmortem_paths == ("/state/postmortems/old.md",)
    remaining = {incident.id for incident in store.incidents()}
    assert remaining == {stuck.id, recent[1].id, recent[2].id}
    assert store.timeline(old.id) == []
    assert len(store.snapshots(stuck.id)) == 1
    assert store.search("old") == []
    [pattern] = store.patterns("a")  # recurrence survives pruning
    assert pattern.occurrences == 4


def test_search_ranks_the_incident_whose_postmortem_mentions_the_words_first(store):
    stale = closed_one(store, "pipeline", at=T0 - 3 * DAY, reason="out.log last written 2 h ago")
    limited = closed_one(store, "pipeline", at=T0 - 2 * DAY, reason="out.log last written 3 h ago")
    closed_one(store, "dashboard", at=T0 - 1 * DAY, reason="HTTP 500 in 3 ms, expected 2xx")
    store.index_postmortem(stale.id, "**Root cause (probable):** disk full; the writer blocked on fsync")
    store.index_postmortem(
        limited.id,
        "**Root cause (probable):** upstream API rate limit (HTTP 429) without backoff; "
        "the service retried in a loop and stopped logging",
    )

    hits = store.search("rate limit")
    assert [hit.incident_id for hit in hits] == [limited.id]
    assert "[rate] [limit]" in hits[0].snippet
    assert store.search("429")[0].incident_id == limited.id
    assert hits[0].monitor == "pipeline" and hits[0].opened_at == T0 - 2 * DAY
    # No incident has every word: those with any of them, best first.
    assert [hit.incident_id for hit in store.search("rate limit disk nonsenseword")][:2] == [limited.id, stale.id]


@pytest.mark.parametrize("query", ['"rate limit', "AND OR (", "NEAR(rate", "rate*", "col:rate", "^", "", '"', "-- ;"])
def test_search_takes_any_text_as_plain_words(store, query):
    incident = closed_one(store, reason="upstream rate limit hit")
    hits = store.search(query)
    assert all(hit.incident_id == incident.id for hit in hits)


def test_search_finds_timeline_messages_and_root_causes(store):
    incident = open_one(store)
    store.append(incident.id, "notified", "paged the operator over telegram", at=T0 + 1)
    store.set_root_cause(incident.id, "maker order call without a deadline", ["stuck in place_maker_order"])
    assert [hit.incident_id for hit in store.search("telegram")] == [incident.id]
    assert [hit.incident_id for hit in store.search("deadline")] == [incident.id]
    assert [hit.incident_id for hit in store.search("place_maker_order")] == [incident.id]


def test_everything_survives_closing_and_reopening_the_database(tmp_path):
    store = SqliteIncidentStore.open(tmp_path)
    incident = open_one(store)
    store.add_snapshot(incident.id, {"processes": [{"pid": 4121}]}, at=T0 + 1)
    attempt = store.add_heal_attempt(incident.id, action="kill_process", step=1, at=T0 + 2)
    store.index_postmortem(incident.id, "rate limit without backoff")
    store.close()

    reopened = SqliteIncidentStore.open(tmp_path)
    assert reopened.get(incident.id) == incident
    assert reopened.snapshots(incident.id)[0].data == {"processes": [{"pid": 4121}]}
    assert reopened.heal_attempts(incident.id)[0] == attempt
    assert [e.kind for e in reopened.timeline(incident.id)] == ["detected", "snapshot_taken", "heal_started"]
    assert reopened.search("backoff")[0].incident_id == incident.id
    # A restarted daemon finishes what it began before it stopped.
    reopened.finish_heal_attempt(attempt.id, ok=False, summary="exit 1", at=T0 + 3)
    assert reopened.timeline(incident.id)[-1].kind == "heal_failed"
    reopened.close()


def test_a_reader_is_never_blocked_by_the_writer(tmp_path, store):
    incident = open_one(store)
    reader = sqlite3.connect(tmp_path / DB_NAME, timeout=0)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.execute("BEGIN")
    (before,) = reader.execute("SELECT count(*) FROM timeline").fetchone()
    # The writer commits while the reader's transaction is open: neither waits for the other.
    store.append(incident.id, "notified", "sent", at=T0 + 1)
    assert reader.execute("SELECT count(*) FROM timeline").fetchone() == (before,)  # its consistent view
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM timeline").fetchone() == (before + 1,)
    # And a second store on the same file (horus kb search beside the daemon) reads while it writes.
    other = SqliteIncidentStore.open(tmp_path)
    assert other.get(incident.id).monitor == "bot"
    reader.close()
    other.close()


def test_an_oversized_snapshot_is_clipped_with_a_note(store):
    incident = open_one(store)
    log_tail = [f"line {n} " + "x" * 200 for n in range(5000)]
    snapshot = store.add_snapshot(incident.id, {"logs": [{"tail": log_tail}], "pid": 4121}, at=T0 + 1)
    assert snapshot.size <= MAX_SNAPSHOT_BYTES
    assert snapshot.note is not None and "truncated" in snapshot.note
    kept = snapshot.data["logs"][0]["tail"]
    assert kept[-1] == log_tail[-1]  # the newest lines are the ones kept
    assert snapshot.data["pid"] == 4121
    assert "truncated" in store.timeline(incident.id)[-1].message
    assert len(json.dumps(store.snapshots(incident.id)[0].data)) <= MAX_SNAPSHOT_BYTES


def test_a_snapshot_that_cannot_be_clipped_keeps_only_its_keys(store):
    incident = open_one(store)
    wide = {f"key{n}": n for n in range(40000)}
    snapshot = store.add_snapshot(incident.id, wide, at=T0 + 1)
    assert snapshot.size <= MAX_SNAPSHOT_BYTES
    assert snapshot.data["truncated"] is True
    assert snapshot.note is not None and "dropped" in snapshot.note


def test_unknown_incidents_and_timeline_kinds_are_refused(store):
    with pytest.raises(IncidentStateError, match="does not exist"):
        store.get(999)
    with pytest.raises(IncidentStateError, match="does not exist"):
        store.append(999, "notified", "x", at=T0)
    incident = open_one(store)
    with pytest.raises(ValueError, match="unknown timeline kind"):
        store.append(incident.id, "nonsense", "x", at=T0)


def test_incidents_lists_newest_first_with_filters(store):
    first = closed_one(store, "a", at=T0 - 2 * DAY)
    second = closed_one(store, "b", at=T0 - 1 * DAY, fingerprint="f-b")
    third = open_one(store, "a", at=T0)
    assert [i.id for i in store.incidents()] == [third.id, second.id, first.id]
    assert [i.id for i in store.incidents(monitor="a", status="closed")] == [first.id]
    assert [i.id for i in store.incidents(fingerprint="f-b")] == [second.id]
    assert [i.id for i in store.incidents(limit=1)] == [third.id]


def test_a_database_from_a_newer_horus_is_refused(tmp_path):
    SqliteIncidentStore.open(tmp_path).close()
    raw = sqlite3.connect(tmp_path / DB_NAME)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StoreError, match="newer than this Horus"):
        SqliteIncidentStore.open(tmp_path)


def test_errors_name_the_database_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StoreError, match="not-a-dir"):
        SqliteIncidentStore.open(blocker / "state")


def test_the_engine_may_word_the_detected_and_snapshot_entries(tmp_path):
    store = SqliteIncidentStore.open(tmp_path, max_snapshot_bytes=1024)
    incident = open_incident(
        store,
        "bot",
        at=T0,
        fingerprint="bot-stale",
        reason="bot.log last written 312 s ago",
        message="2 failed checks in a row: bot.log last written 312 s ago",
    )
    snapshot = store.add_snapshot(incident.id, {"tail": ["x" * 100] * 100}, at=T0 + 1, message="pid 4121 running")
    assert snapshot.size <= 1024
    detected, taken = store.timeline(incident.id)
    assert detected.message == "2 failed checks in a row: bot.log last written 312 s ago"
    assert taken.message.startswith("pid 4121 running; truncated from")
    assert store.get(incident.id).reason == "bot.log last written 312 s ago"
    store.close()
