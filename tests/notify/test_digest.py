"""The daily digest: when it is due, and what it says."""

from __future__ import annotations

import datetime as dt
import time

from horus.notify.digest import digest_due, mark_digest_sent, render_digest
from horus.store.state import HealRecord


def at(hour: int, minute: int, day: int = 21) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute)


def test_the_digest_is_due_once_a_day_after_its_time_and_a_restart_does_not_send_it_twice(tmp_path):
    assert not digest_due(tmp_path, "07:00", at(6, 59))
    assert digest_due(tmp_path, "07:00", at(7, 0))
    assert digest_due(tmp_path, "07:00", at(9, 30)), "Horus was down at 07:00: sent when it is back that day"
    mark_digest_sent(tmp_path, at(7, 0))
    assert not digest_due(tmp_path, "07:00", at(7, 1)), "the state dir remembers it went out today"
    assert not digest_due(tmp_path, "07:00", at(6, 0, day=22))
    assert digest_due(tmp_path, "07:00", at(7, 0, day=22))


def test_the_digest_lists_open_problems_heals_and_channels_in_trouble():
    now = time.time()
    snapshot = {
        "monitors": [
            {
                "name": "bot",
                "status": "unhealthy",
                "reason": "heartbeat 95 s old, limit 60 s",
                "failing_since": now - 600,
            },
            {"name": "api", "status": "healthy", "reason": "HTTP 200"},
            {"name": "db", "status": "error", "reason": "permission denied", "failing_since": None},
        ]
    }
    heals = [
        HealRecord(1, "bot", "kill_process", "log 95 s old", now - 3000, now - 2990, True, "sent SIGTERM to pid 7", {}),
        HealRecord(2, "bot", "kill_process", "log 95 s old", now - 700, now - 690, False, "no process matched", {}),
    ]
    channels = [
        {"channel": "ntfy", "pending": 0, "dead_in_last_day": 0, "given_up": False, "last_error": None},
        {"channel": "slack", "pending": 2, "dead_in_last_day": 3, "given_up": True, "last_error": "HTTP 404"},
    ]
    title, body = render_digest(now=now, host="box", snapshot=snapshot, heals=heals, channels=channels)
    assert title == "Horus digest for box: 2 open problem(s), 2 heal(s)"
    assert "Monitors: 3 watched, 1 healthy, 2 with a problem." in body
    assert "- bot: unhealthy for 10 min: heartbeat 95 s old, limit 60 s" in body
    assert "- db: error: permission denied" in body
    assert "## Heals (2: 1 ok, 1 failed)" in body
    assert "bot: kill_process ok: sent SIGTERM to pid 7 (why: log 95 s old)" in body
    assert "bot: kill_process failed: no process matched" in body
    assert "- slack: 2 waiting, 3 given up; last error: HTTP 404" in body
    assert "ntfy" not in body, "a channel that delivered everything is not news"


def test_a_quiet_day_says_so():
    title, body = render_digest(now=time.time(), host="box", snapshot={"monitors": []}, heals=[], channels=[])
    assert title == "Horus digest for box: all quiet"
    assert "## Open problems (0)\n- none" in body
