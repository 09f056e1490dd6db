"""The heal budget, quarantine and its retry, `horus resume`, and a symptom of a failing dependency,
with a real daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = HORUS_RUN[:-1]  # python -m horus


def heals_of(log: EventLog, name: str) -> list[dict]:
    return [e for e in log.named("heal.started") if e.get("monitor") == name]


def never_fixed(name: str, tmp_path, **extra) -> dict:
    """A monitor whose heal runs but never fixes anything: the restart loop Horus must not sustain."""
    return {
        "name": name,
        "interval_seconds": 0.1,
        "min_failures_to_heal": 1,
        "startup_grace_seconds": 0,
        "heal_cooldown_seconds": 0,
        "check": {"type": "file_exists", "path": str(tmp_path / f"{name}-never")},
        "heal": {"action": "run_script", "command": ["true"]},
        **extra,
    }


@pytest.mark.slow
def test_a_spent_budget_quarantines_retries_after_retry_in_and_resume_lifts_it_at_once(tmp_path):
    config = tmp_path / "horus.json"
    # Long enough that `horus resume` (a process start under a loaded machine) still finds the quarantine.
    budget = {"max_heals": 2, "retry_in_seconds": 6, "stable_after_seconds": 60}
    config.write_text(
        json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": [never_fixed("bot", tmp_path, budget=budget)]})
    )
    log = EventLog(tmp_path / "events.jsonl")
    state = tmp_path / "state"
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("monitor.quarantined"), timeout=15)
        assert len(heals_of(log, "bot")) == 2, "the budget is two heals"
        [quarantined] = log.named("monitor.quarantined")
        assert quarantined["heals"] == 2
        # No heal while quarantined, then one more try when retry_in has passed, then back in quarantine.
        wait_until_sync(lambda: log.named("monitor.quarantine_retry"), timeout=15)
        wait_until_sync(lambda: len(log.named("monitor.quarantined")) == 2, timeout=15)
        assert len(heals_of(log, "bot")) == 3

        resumed = subprocess.run(
            [*HORUS, "resume", "-c", str(config), "--state-dir", str(state), "bot"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith("resumed bot: quarantine lifted, heal budget reset")
        wait_until_sync(lambda: log.named("monitor.resumed"), timeout=10)
        wait_until_sync(lambda: len(heals_of(log, "bot")) >= 4, timeout=10)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0


@pytest.mark.slow
def test_a_quarantine_survives_a_restart_of_horus(tmp_path):
    config = tmp_path / "horus.json"
    budget = {"max_heals": 1, "retry_in_seconds": 3600}
    config.write_text(
        json.dumps({"defaults": {"start_jitter_seconds": 0}, "monitors": [never_fixed("bot", tmp_path, budget=budget)]})
    )
    log = EventLog(tmp_path / "events.jsonl")
    state = tmp_path / "state"
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("monitor.quarantined"), timeout=15)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
    second = EventLog(tmp_path / "events2.jsonl")
    daemon = spawn_daemon(config, state, second.path)
    try:
        wait_until_sync(lambda: len(second.named("check.failed")) >= 10, timeout=15)
        assert not second.named("heal.started"), "still quarantined after kill -9 and a restart"
    finally:
        assert stop_daemon(daemon, timeout=20) == 0


@pytest.mark.slow
def test_a_service_whose_upstream_fails_is_a_symptom_not_restarted_and_rechecked_when_it_recovers(tmp_path):
    upstream_file = tmp_path / "exchange-up"
    fixed_by_heal = tmp_path / "bot-fixed"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {
                    "start_jitter_seconds": 0,
                    "startup_grace_seconds": 0,
                    "min_failures_to_heal": 1,
                    "confirm_recovery_seconds": 0.5,
                },
                "monitors": [
                    {
                        "name": "exchange",
                        "interval_seconds": 0.1,
                        "check": {"type": "file_exists", "path": str(upstream_file)},
                    },
                    {
                        "name": "bot",
                        # A long interval: only the upstream's recovery can make it look again so soon.
                        "interval_seconds": 30,
                        "depends_on": ["exchange"],
                        "check": {"type": "file_exists", "path": str(fixed_by_heal)},
                        "heal": {"action": "run_script", "command": ["touch", str(fixed_by_heal)]},
                    },
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(
            lambda: any(e.get("why") == "upstream_failing" for e in log.named("heal.suppressed")), timeout=15
        )
        [suppressed] = [e for e in log.named("heal.suppressed") if e.get("why") == "upstream_failing"]
        assert suppressed["monitor"] == "bot" and suppressed["upstream"] == "exchange"
        assert not heals_of(log, "bot")
        upstream_file.touch()
        # The upstream recovers: the bot is checked at once (not in 30 s), and healed now that it can help.
        wait_until_sync(lambda: heals_of(log, "bot"), timeout=10)
        wait_until_sync(fixed_by_heal.exists, timeout=10)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
    listed = subprocess.run(
        [*HORUS, "incidents", "-c", str(config), "--state-dir", str(tmp_path / "state"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    incidents = {i["monitor"]: i for i in json.loads(listed.stdout)}
    assert incidents["bot"]["upstream_incident_id"] == incidents["exchange"]["id"], "the symptom points at its cause"
    shown = subprocess.run(
        [*HORUS, "incident", "-c", str(config), "--state-dir", str(tmp_path / "state"), str(incidents["bot"]["id"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "suppressed_as_symptom" in shown.stdout and "its dependency exchange is failing" in shown.stdout


def test_depends_on_must_name_real_monitors_without_cycles(tmp_path):
    config = tmp_path / "horus.json"
    monitors = [
        {"name": "a", "depends_on": ["b"], "check": {"type": "file_exists", "path": "/tmp"}},
        {"name": "b", "depends_on": ["a", "ghost"], "check": {"type": "file_exists", "path": "/tmp"}},
    ]
    config.write_text(json.dumps({"monitors": monitors}))
    result = subprocess.run(
        [sys.executable, "-m", "horus", "validate", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "b.depends_on names no such monitor: 'ghost'" in result.stderr
    assert "depends_on makes a cycle: a -> b -> a" in result.stderr


@pytest.mark.slow
def test_the_ladder_steps_up_and_the_next_incident_of_the_pattern_starts_at_the_step_that_worked(tmp_path):
    fixed = tmp_path / "fixed"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0, "confirm_recovery_seconds": 0.5},
                "sentinel": {"reopen_within_seconds": 0.5},
                "monitors": [
                    {
                        "name": "bot",
                        "interval_seconds": 0.1,
                        "min_failures_to_heal": 1,
                        "startup_grace_seconds": 0,
                        "heal_cooldown_seconds": 0,
                        "verify_within_seconds": 5,
                        "budget": {"max_heals": 5, "stable_after_seconds": 0.3},
                        "check": {"type": "file_exists", "path": str(fixed)},
                        "escalation": [
                            {"action": "run_script", "command": ["true"]},  # a gentle step that does not help
                            {"action": "run_script", "command": ["touch", str(fixed)]},
                        ],
                    }
                ],
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("incident.closed"), timeout=20)
        assert [e["step"] for e in heals_of(log, "bot")] == [1, 2]
        fixed.unlink()  # the same failure again
        wait_until_sync(lambda: len(log.named("incident.closed")) == 2, timeout=20)
        [adapted] = log.named("heal.adapted")
        assert adapted["step"] == 2 and adapted["learned_from_incident"] == 1
        assert [e["step"] for e in heals_of(log, "bot")] == [1, 2, 2], "the gentle step is skipped this time"
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
