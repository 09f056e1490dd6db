"""Incidents for the Sentinel tests, with what a test does not care about filled in."""

from __future__ import annotations

from horus.sentinel.fingerprint import FINGERPRINT_VERSION
from horus.sentinel.store import Incident, SqliteIncidentStore


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
