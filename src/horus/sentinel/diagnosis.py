"""From a failing monitor to its probable causes: the one path the daemon and the scenario corpus share.

:func:`explain` takes a snapshot (already taken, before any heal) and adds what changed: the commits in
the monitor's ``work_tree`` and whether the config file changed, within the change window, then ranks the
causes (:func:`horus.sentinel.rootcause.analyse`). :func:`diagnose` is the same with the snapshot taken
here, synchronously: for tests, the accuracy benchmark and anyone who wants the answer without a daemon.

The change window: a deploy is committed, then goes live when the service restarts, then fails; so the
commits that may have caused a failure began before the last healthy look, not after it. The window
opens ``change_window_seconds`` before the last healthy look (or the first failed one when the service
was never seen healthy); the ranking weighs each change by how close it came to the failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horus.config.models import MonitorSettings
from horus.sentinel.changes import Commit, config_changed_since, recent_commits
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.rootcause import analyse
from horus.sentinel.snapshot import take_snapshot
from horus_sdk.formats import FORMAT_CRASH, read_json

__all__ = ["CHANGE_WINDOW_SECONDS", "Diagnosis", "change_window_start", "diagnose", "explain"]

CHANGE_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class Diagnosis:
    hypotheses: list[Hypothesis]
    snapshot: dict[str, Any]
    commits: list[Commit] = field(default_factory=list)
    config_changed: bool = False

    @property
    def top(self) -> Hypothesis:
        return self.hypotheses[0]


def change_window_start(
    *, failing_since: float | None, last_healthy_at: float | None, now: float, window: float = CHANGE_WINDOW_SECONDS
) -> float:
    """When the change window opens: ``window`` seconds before the service was last seen healthy."""
    anchor = last_healthy_at if last_healthy_at is not None else (failing_since if failing_since is not None else now)
    return anchor - window


async def explain(
    settings: MonitorSettings,
    snapshot: Mapping[str, Any],
    *,
    reason: str,
    evidence: Mapping[str, Any] | None = None,
    upstreams: Mapping[str, str] | None = None,
    failing_since: float | None = None,
    last_healthy_at: float | None = None,
    config_path: Path | None = None,
    change_window_seconds: float = CHANGE_WINDOW_SECONDS,
    now: float | None = None,
) -> Diagnosis:
    """The ranked causes of ``settings``'s failure from ``snapshot`` and what changed (never raises on
    a missing git or config file: they only bring less evidence)."""
    now = time.time() if now is None else now
    since = change_window_start(
        failing_since=failing_since, last_healthy_at=last_healthy_at, now=now, window=change_window_seconds
    )
    commits: list[Commit] = (
        list(await recent_commits(settings.work_tree, since)) if settings.work_tree is not None else []
    )
    config_changed = config_path is not None and await asyncio.to_thread(config_changed_since, config_path, since)

    def ranked() -> list[Hypothesis]:
        return analyse(
            snapshot=snapshot,
            crash_record=crash_record_of(evidence or {}),
            log_tail=(),  # read from the snapshot, each log on its own
            reason=reason,
            check_type=settings.check.type,
            upstreams=upstreams or {},
            commits=commits,
            config_changed=config_changed,
            last_healthy_at=last_healthy_at,
            failing_since=failing_since,
        )

    # Off the event loop: the crash record is a file, and a long tail read against every rule takes a while.
    hypotheses = await asyncio.to_thread(ranked)
    return Diagnosis(hypotheses, dict(snapshot), commits, config_changed)


def diagnose(
    settings: MonitorSettings,
    *,
    reason: str,
    failing_since: float | None = None,
    last_healthy_at: float | None = None,
    evidence: Mapping[str, Any] | None = None,
    upstreams: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    py_spy: bool = True,
    log_lines: int = 40,
    change_window_seconds: float = CHANGE_WINDOW_SECONDS,
) -> Diagnosis:
    """Take the snapshot now and explain the failure: what the daemon does at detection, in one call."""
    snapshot = take_snapshot(
        settings,
        crash_evidence=dict(evidence) if evidence else None,
        py_spy=py_spy,
        log_lines=log_lines,
        healthy_until=last_healthy_at,
    )
    return asyncio.run(
        explain(
            settings,
            snapshot,
            reason=reason,
            evidence=evidence,
            upstreams=upstreams,
            failing_since=failing_since,
            last_healthy_at=last_healthy_at,
            config_path=config_path,
            change_window_seconds=change_window_seconds,
        )
    )


def crash_record_of(evidence: Mapping[str, Any]) -> dict[str, Any] | None:
    """The SDK crash record a check's evidence points at, read again (it may have been replaced), or None."""
    path = evidence.get("crash_record")
    if not path:
        return None
    try:
        record = read_json(Path(str(path)), FORMAT_CRASH)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
