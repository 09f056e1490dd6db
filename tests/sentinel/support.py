"""Incidents and analyses for the Sentinel tests, with what a test does not care about filled in."""

from __future__ import annotations

from typing import Any

from horus.sentinel.fingerprint import FINGERPRINT_VERSION
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.rootcause import analyse
from horus.sentinel.store import Incident, SqliteIncidentStore

STALE = "bot.log last written 312 s ago, limit 300 s"


def open_incident(
    store: SqliteIncidentStore,
    monitor: str,
    *,
    at: float,
    fingerprint: str,
    reason: str,
    signature: str = "",
    check_type: str = "log_staleness",
    failure_kind: str = "stale",
    message: str | None = None,
) -> Incident:
    return store.open_incident(
        monitor,
        at=at,
        fingerprint=fingerprint,
        fingerprint_version=FINGERPRINT_VERSION,
        signature=signature,
        check_type=check_type,
        failure_kind=failure_kind,
        reason=reason,
        message=message,
    )


def analyse_with(**given: Any) -> list[Hypothesis]:
    """The ranked causes of a stale log_staleness monitor with no other evidence than ``given``."""
    evidence: dict[str, Any] = {
        "snapshot": {},
        "crash_record": None,
        "log_tail": [],
        "reason": STALE,
        "check_type": "log_staleness",
        "upstreams": {},
        "commits": [],
        "config_changed": False,
        "last_healthy_at": None,
        **given,
    }
    return analyse(**evidence)
