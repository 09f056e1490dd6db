from __future__ import annotations

import os
from datetime import UTC, datetime

from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.postmortem import default_recommendation, postmortem_path, render_postmortem, write_postmortem
from horus.sentinel.store import DAY
from tests.sentinel.support import open_incident

DETECTED = datetime(2026, 2, 25, 3, 14, 5, tzinfo=UTC).timestamp()

AT_DETECTION = {
    "format": "horus-snapshot/1",
    "processes": [
        {
            "pattern": "pipeline.py",
            "running": True,
            "count": 1,
            "matches": [{"pid": 4121, "age_seconds": 7200.0, "cpu_percent": 0.0, "rss_bytes": 89128960}],
        }
    ],
    "ports": [{"host": "127.0.0.1", "port": 8080, "accepting": True}],
    "http": [{"url": "http://127.0.0.1:8080/health", "status": 200, "latency_ms": 12.0}],
}
RATE_LIMIT = Hypothesis(
    title="Upstream API rate limit reached without graceful backoff",
    confidence=0.8,
    evidence=["03:12:55 WARNING HTTP 429 Too Many Requests, retrying", "03:12:56 WARNING HTTP 429 Too Many Requests"],
    recommendation="Add explicit rate-limit detection and exponential backoff with jitter",
)
DISK = Hypothesis(title="Disk full", confidence=0.2, evidence=["/ is 99% full"])


def pipeline_incident(store, *, recovered=True):
    """The content pipeline going stale as in the Sentinel write-up: killed, restarted, output resumed."""
    for days_ago in (40, 12):  # two earlier occurrences of the same failure mode
        earlier = open_incident(
            store, "content-pipeline", at=DETECTED - days_ago * DAY, fingerprint="cp-stale", reason="out.log stale"
        )
        store.close_incident(earlier.id, at=DETECTED - days_ago * DAY + 600, recovered=True, note="ok")
    incident = open_incident(
        store,
        "content-pipeline",
        at=DETECTED,
        fingerprint="cp-stale",
        signature="http 429 too many requests",
        reason="out.log last written 2 h 1 min ago, limit 7200 s",
    )
    store.add_snapshot(incident.id, AT_DETECTION, at=DETECTED + 1)
    kill = store.add_heal_attempt(incident.id, action="kill_process", step=0, at=DETECTED + 2)
    store.finish_heal_attempt(
        kill.id, ok=True, summary="sent SIGKILL to pid 4121; it exited after 11 ms", at=DETECTED + 3
    )
    if recovered:
        store.mark_recovering(
            incident.id, at=DETECTED + 175, message="artifact count resumed growth (3 new files in 4 minutes)"
        )
    store.close_incident(
        incident.id,
        at=DETECTED + 900,
        recovered=recovered,
        note="stable for 12 min" if recovered else "out.log still not written after 5 min; quarantined",
        detect_seconds=65.0,
        heal_seconds=1.4,
        recover_seconds=175.0 if recovered else None,
    )
    return store.get(incident.id)


def render(store, incident, **overrides):
    arguments = {
        "prior_matching": store.prior_matching(incident.fingerprint, before=incident.opened_at, exclude_id=incident.id),
        "recommendation": None,
        "hypotheses": [DISK, RATE_LIMIT],
    } | overrides
    return render_postmortem(
        incident,
        store.timeline(incident.id),
        store.snapshots(incident.id),
        store.heal_attempts(incident.id),
        **arguments,
    )


def test_a_postmortem_states_every_field_on_its_own_line(store):
    lines = render(store, pipeline_incident(store)).splitlines()
    for expected in [
        "**Service:** content-pipeline",
        "**Failure detected:** 03:14 UTC — out.log last written 2 h 1 min ago, limit 7200 s",
        "**Process state at detection:** Running (pid 4121, 2 h old, 0.0% CPU, 85 MB), port 8080 bound, "
        "HTTP 200 in 12 ms",
        "**Root cause (probable):** Upstream API rate limit reached without graceful backoff (confidence 80%)",
        "> 03:12:55 WARNING HTTP 429 Too Many Requests, retrying",
        "**Recovery action:** kill_process: sent SIGKILL to pid 4121; it exited after 11 ms (ok)",
        "**Recovery confirmed:** 03:17 UTC — artifact count resumed growth (3 new files in 4 minutes)",
        "**Prior incidents matching this pattern:** 2 in last 90 days (same failure mode)",
        "**Recommendation:** Add explicit rate-limit detection and exponential backoff with jitter",
        "**Time to detect:** 65 s",
        "**Time to heal:** 1.4 s",
        "**Time to recover:** 2 min",
    ]:
        assert expected in lines
    assert lines[0] == "# Post-mortem: content-pipeline incident #3 (2026-02-25)"
    assert lines.index("## Timeline") < lines.index("## Timings")
    assert "- 03:14:05 UTC — detected: out.log last written 2 h 1 min ago, limit 7200 s" in lines
    assert "- 03:29:05 UTC — closed: stable for 12 min" in lines
    assert "- Disk full (confidence 20%)" in lines  # the hypothesis not chosen


def test_a_postmortem_of_a_failed_recovery_says_no(store):
    text = render(store, pipeline_incident(store, recovered=False), hypotheses=[])
    lines = text.splitlines()
    assert "**Recovery confirmed:** No — out.log still not written after 5 min; quarantined" in lines
    assert "**Root cause (probable):** Unknown: no rule matched the evidence collected" in lines
    assert f"**Recommendation:** {default_recommendation('stale')}" in lines
    assert "**Time to recover:** did not recover" in lines


def test_the_root_cause_set_on_the_incident_and_the_patterns_recommendation_win(store):
    incident = pipeline_incident(store)
    store.set_root_cause(incident.id, "Disk full", ["df: / 99% used"])
    text = render(store, store.get(incident.id), recommendation="Rotate logs daily")
    assert "**Root cause (probable):** Disk full (confidence 20%)" in text.splitlines()
    assert "> df: / 99% used" in text.splitlines()
    assert "**Recommendation:** Rotate logs daily" in text.splitlines()


def test_a_first_occurrence_and_an_open_incident_render_too(store):
    incident = open_incident(
        store,
        "bot",
        at=DETECTED,
        fingerprint="bot-refused",
        check_type="port_open",
        failure_kind="refused",
        reason="127.0.0.1:8080 refused the connection",
    )
    lines = render(store, incident, hypotheses=[]).splitlines()
    assert "**Prior incidents matching this pattern:** none in last 90 days" in lines
    assert "**Process state at detection:** Not observed (no snapshot was taken)" in lines
    assert "**Recovery action:** None (no heal was run)" in lines
    assert "**Recovery confirmed:** Not yet (the incident is still open)" in lines
    assert "**Time to detect:** not measured" in lines


def test_a_postmortem_is_written_atomically_where_expected(store, tmp_path):
    incident = pipeline_incident(store)
    markdown = render(store, incident)
    path = write_postmortem(tmp_path, incident, markdown)
    assert path == tmp_path / "postmortems" / f"2026-02-25-content-pipeline-{incident.id}.md"
    assert path == postmortem_path(tmp_path, incident)
    assert path.read_text(encoding="utf-8") == markdown
    # Rewriting replaces it whole, and leaves no temporary file behind.
    before = os.stat(path).st_ino
    write_postmortem(tmp_path, incident, markdown + "\nAddendum.\n")
    assert path.read_text(encoding="utf-8").endswith("Addendum.\n")
    assert os.stat(path).st_ino != before  # a new file renamed into place, not rewritten in place
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_monitor_name_is_made_safe_for_a_file_name(store, tmp_path):
    incident = open_incident(
        store,
        "api:gateway@eu",
        at=DETECTED,
        fingerprint="x",
        check_type="port_open",
        failure_kind="refused",
        reason="refused",
    )
    assert postmortem_path(tmp_path, incident).name == f"2026-02-25-api_gateway@eu-{incident.id}.md"


def test_a_trading_bots_postmortem_says_its_mode_and_what_it_saw_before_the_heal(store):
    incident = open_incident(store, "desk", at=DETECTED, fingerprint="desk-trip", reason="trip failures_halt: ...")
    trip = {"source": "trip", "name": "failures_halt", "mode": "halted", "reason": "10 rejects or errors in 60 s"}
    trading = {
        "control_dir": "/srv/bot/control",
        "mode": "halted",
        "cause": trip,
        "broker": {"connected": False, "reason": "websocket closed"},
        "exposure": {"positions": {"BTC-USD": 0.5}},
        "decisions": [
            {"at": DETECTED - 3, "kind": "signal", "mode": "active", "side": "buy", "permit": {"allowed": True}},
            {"at": DETECTED - 2, "kind": "control.failure", "mode": "active", "failure": "reject", "text": "margin"},
            {"at": DETECTED - 1, "kind": "control.trip", "mode": "active", "trip": trip},
        ],
    }
    store.add_snapshot(incident.id, {"format": "horus-snapshot/1", "trading": [trading]}, at=DETECTED + 1)
    text = render(store, store.get(incident.id), hypotheses=[])
    assert (
        "**Trading mode at detection:** HALTED (trip failures_halt: 10 rejects or errors in 60 s); "
        "broker disconnected (websocket closed); exposure positions {'BTC-USD': 0.5}"
    ) in text
    saw = text.split("## What the bot saw (its last decisions before the heal)")[1].split("## Timeline")[0]
    assert [line for line in saw.splitlines() if line.startswith("- ")] == [
        "- 03:14:02 UTC signal (ACTIVE): permit=allowed side=buy",
        "- 03:14:03 UTC control.failure (ACTIVE): failure=reject text=margin",
        "- 03:14:04 UTC control.trip (ACTIVE): trip=trip/failures_halt (halted): 10 rejects or errors in 60 s",
    ]


def test_a_reconcile_that_was_not_clean_is_in_the_postmortem_with_its_differences(store):
    incident = open_incident(store, "desk", at=DETECTED, fingerprint="desk-reconcile", reason="trip reconcile_mismatch")
    reconciled = {
        "complete": True,
        "clean": False,
        "summary": "reconciled: 2 matched, 0 external kept, 1 mismatch",
        "differences": [
            {"kind": "mismatch", "symbol": "BTC-USD", "client_order_id": None, "detail": "we hold 0.5, the broker 0.7"}
        ],
        "differences_left_off": 3,
    }
    trading = {"mode": "reducing", "cause": {"source": "trip", "name": "reconcile_mismatch"}, "reconcile": reconciled}
    store.add_snapshot(incident.id, {"format": "horus-snapshot/1", "trading": [trading]}, at=DETECTED + 1)
    text = render(store, store.get(incident.id), hypotheses=[])
    assert f"**Last reconcile with the broker:** {reconciled['summary']}" in text
    differences = text.split("## Differences with the broker (the broker's figures win)")[1].split("##")[0]
    assert "- mismatch BTC-USD: we hold 0.5, the broker 0.7" in differences
    assert "- ... and 3 more" in differences
