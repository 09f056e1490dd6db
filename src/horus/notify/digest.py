"""The daily digest: what happened in the last day, waiting for the operator when they wake up.

Built from what Horus already keeps (the status snapshot, the heal log, the outbox's health), so
``horus digest`` prints the same text on demand that the daemon sends at ``notify_settings.digest_at``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from horus import humanize
from horus.store.state import HealRecord
from horus_sdk.formats import write_json_atomic

__all__ = ["DIGEST_WINDOW_SECONDS", "digest_due", "mark_digest_sent", "render_digest"]

DIGEST_WINDOW_SECONDS = 86400.0
_SENT_NAME = "digest.json"


def digest_due(state_dir: Path, digest_at: str, now: dt.datetime) -> bool:
    """Whether today's digest (local time ``now``) is due: past ``digest_at`` and not yet sent today.

    A Horus that was down at 07:00 sends it when it starts later that day; the day after, it waits
    for 07:00 again. The date sent is kept in the state dir, so a restart never sends it twice.
    """
    hour, minute = map(int, digest_at.split(":"))
    if (now.hour, now.minute) < (hour, minute):
        return False
    return _last_sent(state_dir) != now.date().isoformat()


def mark_digest_sent(state_dir: Path, now: dt.datetime) -> None:
    write_json_atomic(state_dir / _SENT_NAME, {"last_sent_date": now.date().isoformat(), "at": now.isoformat()})


def _last_sent(state_dir: Path) -> str | None:
    try:
        data = json.loads((state_dir / _SENT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("last_sent_date") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def render_digest(
    *,
    now: float,
    host: str,
    snapshot: dict[str, Any] | None,
    heals: Sequence[HealRecord],
    channels: Sequence[dict[str, Any]],
    window_seconds: float = DIGEST_WINDOW_SECONDS,
) -> tuple[str, str]:
    """The digest's title and markdown body: open problems first, then heals, then delivery trouble."""
    monitors = (snapshot or {}).get("monitors") or []
    # A quarantined monitor is a problem even when its last look passed: Horus has stopped healing it.
    problems = [
        m
        for m in monitors
        if m.get("status") in ("unhealthy", "error")
        or m.get("quarantined_until") is not None
        or m.get("phase") in ("failing", "symptom", "healing", "verifying", "confirming", "quarantined")
    ]
    healthy = sum(1 for m in monitors if m.get("status") == "healthy")
    ok = sum(1 for h in heals if h.ok)
    failed = sum(1 for h in heals if h.ok is False)
    day = dt.datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M")
    title = f"Horus digest for {host}: " + (
        f"{len(problems)} open problem(s), {len(heals)} heal(s)" if problems or heals else "all quiet"
    )
    lines = [f"# Horus digest, {host}, {day} (last {humanize.duration(window_seconds)})", ""]
    if snapshot is None:
        lines += ["No status snapshot: the daemon has not run with this state dir yet.", ""]
    else:
        lines += [f"Monitors: {len(monitors)} watched, {healthy} healthy, {len(problems)} with a problem.", ""]
    lines.append(f"## Open problems ({len(problems)})")
    for m in problems:
        since = m.get("failing_since") or m.get("announced_problem_since")
        lasting = f" for {humanize.duration(now - since)}" if isinstance(since, int | float) else ""
        if m.get("quarantined_until") is not None:
            state = "quarantined"
        elif m.get("status") in ("unhealthy", "error"):
            state = m["status"]
        else:
            state = f"{m.get('phase')}, not yet confirmed recovered"
        lines.append(f"- {m['name']}: {state}{lasting}: {m.get('reason') or 'no reason recorded'}")
    if not problems:
        lines.append("- none")
    lines += ["", f"## Heals ({len(heals)}: {ok} ok, {failed} failed)"]
    for heal in sorted(heals, key=lambda h: h.started_at):
        at = dt.datetime.fromtimestamp(heal.started_at).strftime("%H:%M")
        outcome = "ok" if heal.ok else ("failed" if heal.ok is False else "unfinished")
        lines.append(f"- {at} {heal.monitor}: {heal.action} {outcome}: {heal.summary or ''} (why: {heal.reason})")
    if not heals:
        lines.append("- none")
    trouble = [c for c in channels if c.get("given_up") or c.get("pending") or c.get("dead_in_last_day")]
    lines += ["", "## Notifications"]
    if not channels:
        lines.append("- no channels configured")
    for c in channels:
        if c in trouble:
            error = f"; last error: {c['last_error']}" if c.get("last_error") else ""
            lines.append(
                f"- {c['channel']}: {c.get('pending', 0)} waiting, {c.get('dead_in_last_day', 0)} given up{error}"
            )
    if channels and not trouble:
        lines.append("- every channel delivered everything")
    return title, "\n".join(lines) + "\n"
