"""Sentinel: incidents, fingerprints, post-mortems and the knowledge base built from them.

A synchronous library (SQLite underneath); the daemon calls it from one thread at a time:

- :mod:`~horus.sentinel.store`: :class:`SqliteIncidentStore`, incidents with append-only timelines,
  snapshots, heal attempts, recurring patterns and full-text search.
- :mod:`~horus.sentinel.fingerprint`: ``failure_kind``, ``signature`` and ``fingerprint``, so the same
  failure on another day is recognised as the same. Import ``fingerprint`` from that module: re-exported
  here, the function would shadow the module of the same name.
- :mod:`~horus.sentinel.postmortem`: :func:`render_postmortem` and :func:`write_postmortem`.
- :mod:`~horus.sentinel.brief`: :func:`render_brief`, a service's known failure modes in a page.
"""

from __future__ import annotations

from horus.sentinel.brief import render_brief
from horus.sentinel.fingerprint import FAILURE_KINDS, FINGERPRINT_VERSION, failure_kind, signature
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.postmortem import default_recommendation, postmortem_path, render_postmortem, write_postmortem
from horus.sentinel.store import (
    HealAttempt,
    Incident,
    IncidentStateError,
    IncidentStatus,
    IncidentStore,
    Pattern,
    PruneResult,
    SearchHit,
    Snapshot,
    SqliteIncidentStore,
    TimelineEntry,
)

__all__ = [
    "FAILURE_KINDS",
    "FINGERPRINT_VERSION",
    "HealAttempt",
    "Hypothesis",
    "Incident",
    "IncidentStateError",
    "IncidentStatus",
    "IncidentStore",
    "Pattern",
    "PruneResult",
    "SearchHit",
    "Snapshot",
    "SqliteIncidentStore",
    "TimelineEntry",
    "default_recommendation",
    "failure_kind",
    "postmortem_path",
    "render_brief",
    "render_postmortem",
    "signature",
    "write_postmortem",
]
