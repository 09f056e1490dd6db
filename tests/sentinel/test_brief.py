from __future__ import annotations

from datetime import UTC, datetime

from horus.sentinel.brief import render_brief
from horus.sentinel.postmortem import default_recommendation
from horus.sentinel.store import DAY
from tests.sentinel.support import open_incident

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


def incident(store, monitor, *, days_ago, fingerprint, kind, reason, root_cause=None, close=True):
    opened = open_incident(
        store,
        monitor,
        at=NOW - days_ago * DAY,
        fingerprint=fingerprint,
        signature="clob.ratelimitederror: http 429" if kind == "stale" else "",
        check_type="log_staleness" if kind == "stale" else "port_open",
        failure_kind=kind,
        reason=reason,
    )
    if root_cause:
        store.set_root_cause(opened.id, root_cause, [])
    if close:
        store.close_incident(
            opened.id, at=opened.opened_at + 240, recovered=True, note="bot.log moving again", recover_seconds=240
        )
    return opened


def test_a_brief_lists_each_failure_mode_with_its_recurrence_cause_and_recommendation(store):
    incident(
        store,
        "bot",
        days_ago=60,
        fingerprint="bot-stale",
        kind="stale",
        reason="bot.log stale",
        root_cause="rate limit",
    )
    incident(
        store,
        "bot",
        days_ago=20,
        fingerprint="bot-stale",
        kind="stale",
        reason="bot.log stale",
        root_cause="rate limit",
    )
    incident(
        store, "bot", days_ago=9, fingerprint="bot-stale", kind="stale", reason="bot.log stale", root_cause="disk full"
    )
    incident(store, "bot", days_ago=5, fingerprint="bot-refused", kind="refused", reason="127.0.0.1:8080 refused")
    incident(store, "other", days_ago=1, fingerprint="other-stale", kind="stale", reason="other.log stale")
    now_open = incident(
        store,
        "bot",
        days_ago=0.1,
        fingerprint="bot-stale",
        kind="stale",
        reason="bot.log last written 312 s ago",
        close=False,
    )
    store.set_recommendation("bot-stale", "Back off exponentially on HTTP 429")

    text = render_brief(store, "bot", NOW)
    lines = text.splitlines()

    assert lines[0] == "# bot: known failure modes"
    assert "5 incidents in 2 failure modes, as of 2026-03-01." in lines
    assert f"- #{now_open.id} open for 2 h 24 min: bot.log last written 312 s ago" in lines
    assert "1. **stale**, 4 times (first 2025-12-31, last 2026-03-01); fingerprint `bot-stale`" in lines
    assert "   - Usual root cause: rate limit (2 of 3 with a known cause)" in lines
    assert "   - Recommendation: Back off exponentially on HTTP 429" in lines
    assert "2. **refused**, once (on 2026-02-24); fingerprint `bot-refused`" in lines
    assert "   - Usual root cause: not determined" in lines
    assert f"   - Recommendation: {default_recommendation('refused')}" in lines
    last = lines[lines.index("## Last incidents") + 2 :]
    assert last == [
        f"- 2026-03-01 09:36 UTC #{now_open.id} stale, open: bot.log last written 312 s ago",
        "- 2026-02-24 12:00 UTC #4 refused, recovered in 4 min: 127.0.0.1:8080 refused",
        "- 2026-02-20 12:00 UTC #3 stale, recovered in 4 min: bot.log stale",
    ]
    assert "other" not in text
    assert len(lines) < 60


def test_a_brief_stays_short_however_many_failure_modes_there_are(store):
    for n in range(30):
        incident(store, "bot", days_ago=n + 1, fingerprint=f"bot-{n}", kind="stale", reason=f"failure {n}")
    lines = render_brief(store, "bot", NOW).splitlines()
    assert len(lines) < 60
    assert "…and 24 rarer ones (24 incidents)." in lines


def test_a_brief_of_a_service_that_never_failed_says_so(store):
    assert (
        render_brief(store, "calm", NOW)
        == "# calm: known failure modes\n\nNo incidents on record as of 2026-03-01 12:00 UTC.\n"
    )
