"""The brief: what is known about how one service fails, short enough to load into a session's context.

``horus kb brief NAME`` prints it for a developer, or for an assistant about to change the service: each
failure mode seen (how often, first and last seen, the usual root cause, the standing recommendation),
what is open now, and the last few incidents.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from horus import humanize
from horus.sentinel.postmortem import default_recommendation
from horus.sentinel.store import Incident, IncidentStore, Pattern

__all__ = ["render_brief"]

MAX_PATTERNS = 6
RECENT_INCIDENTS = 3
# Incidents read per pattern to find its usual root cause.
ROOT_CAUSE_SAMPLE = 50


def render_brief(store: IncidentStore, monitor: str, now: float) -> str:
    """A markdown summary (under 60 lines) of ``monitor``'s known failure modes as of ``now``."""
    patterns = store.patterns(monitor)
    current = store.open_incident_for(monitor)
    recent = store.incidents(monitor=monitor, limit=RECENT_INCIDENTS)
    total = sum(pattern.occurrences for pattern in patterns)

    lines = [f"# {monitor}: known failure modes", ""]
    if not patterns:
        lines.append(f"No incidents on record as of {_date(now)} {_hm(now)}.")
        return "\n".join(lines) + "\n"
    count = f"{total} incident{'s' if total != 1 else ''}"
    lines += [f"{count} in {len(patterns)} failure mode{'s' if len(patterns) != 1 else ''}, as of {_date(now)}.", ""]

    lines += ["## Open now", ""]
    if current is not None:
        since = humanize.duration(max(0.0, now - current.opened_at))
        lines.append(f"- #{current.id} {current.status} for {since}: {_clip(current.reason, 120)}")
    else:
        lines.append("- nothing")
    lines.append("")

    lines += ["## Failure modes", ""]
    for number, pattern in enumerate(patterns[:MAX_PATTERNS], start=1):
        lines += _pattern_lines(store, number, pattern)
    if len(patterns) > MAX_PATTERNS:
        rest = patterns[MAX_PATTERNS:]
        lines += [f"…and {len(rest)} rarer ones ({sum(p.occurrences for p in rest)} incidents).", ""]

    lines += ["## Last incidents", ""]
    lines += [_incident_line(incident) for incident in recent]
    return "\n".join(lines).rstrip() + "\n"


def _pattern_lines(store: IncidentStore, number: int, pattern: Pattern) -> list[str]:
    times = "once" if pattern.occurrences == 1 else f"{pattern.occurrences} times"
    seen = (
        f"on {_date(pattern.first_seen)}"
        if _date(pattern.first_seen) == _date(pattern.last_seen)
        else f"first {_date(pattern.first_seen)}, last {_date(pattern.last_seen)}"
    )
    lines = [f"{number}. **{pattern.failure_kind}**, {times} ({seen}); fingerprint `{pattern.fingerprint}`"]
    if pattern.signature:
        lines.append(f"   - Signature: {_code(_clip(pattern.signature, 160))}")
    causes = Counter(
        i.root_cause for i in store.incidents(fingerprint=pattern.fingerprint, limit=ROOT_CAUSE_SAMPLE) if i.root_cause
    )
    if causes:
        (cause, hits), *_ = causes.most_common(1)
        known = sum(causes.values())
        lines.append(f"   - Usual root cause: {_clip(cause, 160)} ({hits} of {known} with a known cause)")
    else:
        lines.append("   - Usual root cause: not determined")
    advice = pattern.recommendation or default_recommendation(pattern.failure_kind)
    lines += [f"   - Recommendation: {_clip(advice, 240)}", ""]
    return lines


def _incident_line(incident: Incident) -> str:
    outcome: str
    if incident.status != "closed":
        outcome = incident.status
    elif incident.recovered:
        outcome = "recovered" + (
            f" in {humanize.duration(incident.recover_seconds)}" if incident.recover_seconds is not None else ""
        )
    else:
        outcome = "not recovered"
    return (
        f"- {_date(incident.opened_at)} {_hm(incident.opened_at)} #{incident.id} {incident.failure_kind}, "
        f"{outcome}: {_clip(incident.reason, 100)}"
    )


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _date(at: float) -> str:
    return f"{datetime.fromtimestamp(at, tz=UTC):%Y-%m-%d}"


def _hm(at: float) -> str:
    return f"{datetime.fromtimestamp(at, tz=UTC):%H:%M} UTC"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
