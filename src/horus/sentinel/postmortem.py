"""Post-mortems: what failed, why (probably), what was done, whether it worked and whether it recurs.

:func:`render_postmortem` turns an incident and its records into markdown, one ``**Field:** value``
line per fact, then the timeline and the timings. :func:`write_postmortem` writes it atomically to
``<state_dir>/postmortems/<YYYY-MM-DD>-<monitor>-<id>.md``. Sample (abridged)::

    # Post-mortem: content-pipeline incident #7 (2026-02-25)

    **Service:** content-pipeline

    **Failure detected:** 03:14 UTC — out.log last written 2 h 1 min ago, limit 7200 s

    **Process state at detection:** Running (pid 4121, 2 h old, 0.0% CPU, 85 MB), port 8080 bound, HTTP 200 in 12 ms

    **Root cause (probable):** Upstream API rate limit without backoff (confidence 80%)

    > 03:12:55 WARNING HTTP 429 Too Many Requests, retrying

    **Recovery action:** kill_process: sent SIGKILL to pid 4121 (ok)

    **Recovery confirmed:** 03:17 UTC — artifact count resumed growth (3 new files in 4 minutes)

    **Prior incidents matching this pattern:** 2 in last 90 days (same failure mode)

    **Recommendation:** Add explicit rate-limit detection and exponential backoff with jitter
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from horus import humanize
from horus.control_plane import describe_mode
from horus.errors import StoreError
from horus.files import write_file_atomically
from horus.sentinel.fingerprint import FAILURE_KINDS
from horus.sentinel.hypothesis import Hypothesis
from horus.sentinel.snapshot import describe_process_state
from horus.sentinel.store import HealAttempt, Incident, Snapshot, TimelineEntry

__all__ = [
    "default_recommendation",
    "describe_decision",
    "postmortem_path",
    "reconcile_differences",
    "render_postmortem",
    "write_postmortem",
]

POSTMORTEM_DIR = "postmortems"

# Standing advice per failure kind, for when no root-cause rule had a better one.
_RECOMMENDATIONS: dict[str, str] = {
    "stale": (
        "Log a heartbeat every 60 s regardless of work state, and put a deadline on every external call "
        "(asyncio.wait_for, or horus_sdk.deadline) so a call that never returns raises instead of hanging."
    ),
    "channel_stalled": (
        "Put a deadline on every await in the stalled channel's path (horus_sdk.deadline): the loop ran, "
        "but one operation never returned."
    ),
    "no_heartbeat": (
        "Start the heartbeat early in the service's startup, and check that its path or address is the one "
        "Horus watches."
    ),
    "no_output": (
        "Find what blocks the producer (a hung upstream call, a full queue, a lost lock) and bound it with a "
        "timeout; keep checking output growth, not liveness."
    ),
    "missing": (
        "Create the file at startup, and check that the path Horus watches is the one the service writes "
        "(launchd and systemd jobs do not inherit your shell's working directory or environment)."
    ),
    "too_small": "Find why the service writes an empty or short file (a failed export, a full disk) and fail loudly.",
    "process_missing": (
        "Find why the process exits (its exit code and last log lines), and run it under a supervisor "
        "(launchd KeepAlive, systemd Restart=) so it comes back without waiting for Horus."
    ),
    "service_down": (
        "Read the service manager's last exit status and the job's own log; after a migration, check that "
        "every environment variable and the PATH the service needs are in its unit or plist."
    ),
    "unhealthy": "Make the service's own health report name the dependency that fails, so the next incident says why.",
    "http_status": (
        "Make the endpoint's error name its cause; for upstream 429 and 5xx answers, back off exponentially "
        "with jitter instead of retrying at once."
    ),
    "bad_body": "Have the health endpoint report each dependency's state, so a wrong answer says which one failed.",
    "no_response": (
        "Put a timeout on every external call a request handler makes: a handler that waits forever holds "
        "the endpoint hostage while the process looks alive."
    ),
    "refused": "Nothing listened on the port: check that the service binds at startup and restarts when it exits.",
    "dropped": (
        "The service dropped connections: look for crashes in request handling and for exhausted limits "
        "(file descriptors, memory, worker pool)."
    ),
    "unreachable": "Check the network path to the host (interface, route, firewall) and the host itself.",
    "dns": "Check the host name and the resolver; keep the last good address or fail over when DNS fails.",
    "tls": "Fix or renew the certificate chain, and alert on certificate expiry weeks ahead.",
    "command_failed": "Read the check command's output tail for why it failed, and make that output name the cause.",
    "probe_error": "Horus could not observe the service: fix the probe (permissions, a missing binary) first.",
}
_GENERIC_RECOMMENDATION = "Make the service log why it stops working, and put a deadline on every external call."


def default_recommendation(failure_kind: str) -> str:
    """Generic advice for a failure kind (see ``horus.sentinel.fingerprint.FAILURE_KINDS``)."""
    return _RECOMMENDATIONS.get(failure_kind, _GENERIC_RECOMMENDATION)


def render_postmortem(
    incident: Incident,
    timeline: Sequence[TimelineEntry],
    snapshots: Sequence[Snapshot],
    heal_attempts: Sequence[HealAttempt],
    *,
    prior_matching: int,
    recommendation: str | None = None,
    hypotheses: Sequence[Hypothesis] = (),
    within_days: int = 90,
) -> str:
    """The incident's post-mortem as markdown.

    ``prior_matching`` is ``store.prior_matching(incident.fingerprint, before=incident.opened_at,
    exclude_id=incident.id)``. ``recommendation`` (typically the pattern's standing one) wins over the
    hypotheses' own; without either, :func:`default_recommendation` for the failure kind is used. The
    root cause is the incident's (``set_root_cause``) if set, else the most confident hypothesis.
    Renders incidents in progress too (recovery "Not yet").
    """
    ranked = sorted(hypotheses, key=lambda h: h.confidence, reverse=True)
    opened = _utc(incident.opened_at)
    lines = [f"# Post-mortem: {incident.monitor} incident #{incident.id} ({opened:%Y-%m-%d})", ""]

    def field(name: str, value: str) -> None:
        lines.extend([f"**{name}:** {value}", ""])

    field("Service", incident.monitor)
    field("Failure detected", f"{_hm(incident.opened_at)} — {_one_line(incident.reason)}")
    field("Process state at detection", _process_state(snapshots))
    trading = _trading_at_detection(snapshots)
    if trading is not None:
        field("Trading mode at detection", _trading_mode(trading))
        reconciled = trading.get("reconcile")
        if isinstance(reconciled, dict) and reconciled.get("summary"):
            field("Last reconcile with the broker", _one_line(str(reconciled["summary"])))
    cause, evidence, others = _root_cause(incident, ranked)
    field("Root cause (probable)", cause)
    if evidence:
        lines.extend([*_quoted(evidence), ""])
    field("Recovery action", _recovery_action(incident, heal_attempts))
    field("Recovery confirmed", _recovery_confirmed(incident, timeline))
    field("Prior incidents matching this pattern", _prior(prior_matching, within_days))
    field("Recommendation", _recommendation(incident, recommendation, ranked))
    kind = FAILURE_KINDS.get(incident.failure_kind)
    field(
        "Failure mode",
        incident.failure_kind + (f" — {kind}" if kind else "") + f"; fingerprint `{incident.fingerprint}`",
    )
    if incident.signature:
        field("Signature", "`" + incident.signature.replace("`", "'") + "`")
    if incident.upstream_incident_id is not None:
        field("Upstream incident", f"#{incident.upstream_incident_id} (this one was its symptom)")

    if others:
        lines.extend(["## Other hypotheses", ""])
        for hypothesis in others:
            lines.append(f"- {hypothesis.title} (confidence {hypothesis.confidence:.0%})")
            lines.extend(f"  {line}" for line in _quoted(hypothesis.evidence))
        lines.append("")

    differences = reconcile_differences(trading)
    if differences:
        lines.extend(["## Differences with the broker (the broker's figures win)", ""])
        lines.extend(f"- {line}" for line in differences)
        lines.append("")
    decisions = trading.get("decisions") if trading is not None else None
    if isinstance(decisions, list) and decisions:
        lines.extend(["## What the bot saw (its last decisions before the heal)", ""])
        lines.extend(f"- {describe_decision(record)}" for record in decisions if isinstance(record, dict))
        lines.append("")

    lines.extend(["## Timeline", ""])
    for entry in timeline:
        lines.append(f"- {_when(entry.at, opened)} — {entry.kind}: {_one_line(entry.message)}")
    if not timeline:
        lines.append("- (no entries)")
    lines.extend(["", "## Timings", ""])
    field("Time to detect", _span(incident.detect_seconds))
    field("Time to heal", _span(incident.heal_seconds) if heal_attempts else "no heal was run")
    recover = "did not recover" if incident.recovered is False else _span(incident.recover_seconds)
    field("Time to recover", recover)
    return "\n".join(lines).rstrip() + "\n"


def postmortem_path(state_dir: Path, incident: Incident) -> Path:
    """Where :func:`write_postmortem` puts the incident's post-mortem: dated by when it opened."""
    safe_monitor = re.sub(r"[^A-Za-z0-9._@-]", "_", incident.monitor)
    return state_dir / POSTMORTEM_DIR / f"{_utc(incident.opened_at):%Y-%m-%d}-{safe_monitor}-{incident.id}.md"


def write_postmortem(state_dir: Path, incident: Incident, markdown: str) -> Path:
    """Write ``markdown`` to :func:`postmortem_path` atomically (temp file, fsync, rename) and return it.

    A reader sees the old file or the new one, never half of one; an existing post-mortem is replaced.
    """
    path = postmortem_path(state_dir, incident)
    try:
        write_file_atomically(path, markdown.encode("utf-8"), mode=0o600)  # owner-only, like the state dir
    except OSError as exc:
        raise StoreError(f"cannot write post-mortem {path}: {exc}") from exc
    return path


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC)


def _hm(at: float) -> str:
    return f"{_utc(at):%H:%M} UTC"


def _when(at: float, opened: datetime) -> str:
    moment = _utc(at)
    return f"{moment:%H:%M:%S} UTC" if moment.date() == opened.date() else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quoted(evidence: Sequence[str]) -> list[str]:
    """Evidence as a blockquote, one line each: the bare ``>`` lines keep markdown from joining them."""
    lines: list[str] = []
    for line in evidence:
        lines.extend([">", f"> {_one_line(line)}"] if lines else [f"> {_one_line(line)}"])
    return lines


def _span(seconds: float | None) -> str:
    return "not measured" if seconds is None else humanize.duration(max(0.0, seconds))


def _trading_at_detection(snapshots: Sequence[Snapshot]) -> dict[str, Any] | None:
    """The first trading bot in the detection snapshot (taken before any heal): its mode and decisions."""
    if not snapshots:
        return None
    entries = snapshots[0].data.get("trading")
    first = entries[0] if isinstance(entries, list) and entries else None
    return first if isinstance(first, dict) else None


def reconcile_differences(trading: dict[str, Any] | None) -> list[str]:
    """What the bot's last reconcile found that did not match, each as a line (the reconcile's own words)."""
    reconciled = trading.get("reconcile") if trading is not None else None
    if not isinstance(reconciled, dict):
        return []
    lines = []
    for item in reconciled.get("differences") or []:
        if isinstance(item, dict):
            where = " ".join(str(item[key]) for key in ("symbol", "client_order_id") if item.get(key))
            lines.append(_one_line(f"{item.get('kind')} {where}: {item.get('detail')}"))
    left_off = reconciled.get("differences_left_off")
    if isinstance(left_off, int) and left_off > 0:
        lines.append(f"... and {left_off} more")
    return lines


def _trading_mode(entry: dict[str, Any]) -> str:
    if entry.get("error"):
        return _one_line(str(entry["error"]))
    said = describe_mode(entry)
    broker = entry.get("broker")
    if isinstance(broker, dict) and broker.get("connected") is False:
        said += "; broker disconnected" + (f" ({broker['reason']})" if broker.get("reason") else "")
    exposure = entry.get("exposure")
    if isinstance(exposure, dict) and exposure:
        said += "; exposure " + ", ".join(f"{key} {value}" for key, value in list(exposure.items())[:6])
    return _one_line(said)


def describe_decision(record: dict[str, Any]) -> str:
    """One decision-log record as a line: "14:03:07 UTC signal (ACTIVE): side=buy price=50012 permit=allowed"."""
    at = record.get("at")
    when = f"{_utc(float(at)):%H:%M:%S} UTC " if isinstance(at, int | float) else ""
    mode = f" ({str(record['mode']).upper()})" if record.get("mode") else ""
    facts = []
    for key, value in record.items():
        if key in ("at", "kind", "mode"):
            continue
        if isinstance(value, dict) and "allowed" in value:
            value = "allowed" if value.get("allowed") else f"denied: {value.get('reason')}"
        elif isinstance(value, dict) and "name" in value and "reason" in value:
            # A cause (a trip, a command) as a person reads it, not as a dict.
            value = f"{value.get('source', '')}/{value['name']} ({value.get('mode')}): {value['reason']}"
        facts.append(f"{key}={value}")
    return _one_line(f"{when}{record.get('kind', '?')}{mode}: {' '.join(facts)}")[:400]


def _process_state(snapshots: Sequence[Snapshot]) -> str:
    if not snapshots:
        return "Not observed (no snapshot was taken)"
    # The first snapshot is the one taken at detection, before any heal changed the picture.
    return _one_line(describe_process_state(dict(snapshots[0].data)))


def _root_cause(incident: Incident, ranked: list[Hypothesis]) -> tuple[str, list[str], list[Hypothesis]]:
    """The root cause line, its evidence lines, and the hypotheses not chosen."""
    if incident.root_cause:
        chosen = next((h for h in ranked if h.title == incident.root_cause), None)
        others = [h for h in ranked if h is not chosen]
        confidence = f" (confidence {chosen.confidence:.0%})" if chosen else ""
        evidence = list(incident.root_cause_evidence) or (chosen.evidence if chosen else [])
        return f"{_one_line(incident.root_cause)}{confidence}", evidence, others
    if ranked:
        top = ranked[0]
        return f"{_one_line(top.title)} (confidence {top.confidence:.0%})", list(top.evidence), ranked[1:]
    return "Unknown: no rule matched the evidence collected", [], []


def _recovery_action(incident: Incident, attempts: Sequence[HealAttempt]) -> str:
    if not attempts:
        if incident.upstream_incident_id is not None:
            return f"None: a symptom of incident #{incident.upstream_incident_id}, which was healed instead"
        return "None (no heal was run)"
    steps = []
    for attempt in attempts:
        outcome = "did not finish" if attempt.ok is None else ("ok" if attempt.ok else "failed")
        summary = f": {_one_line(attempt.summary)}" if attempt.summary else ""
        steps.append(f"{attempt.action}{summary} ({outcome})")
    return ", then ".join(steps)


def _recovery_confirmed(incident: Incident, timeline: Sequence[TimelineEntry]) -> str:
    confirmed = [entry for entry in timeline if entry.kind == "recovery_confirmed"]
    if incident.recovered is False:
        return f"No — {_one_line(incident.recovery_note or 'the service did not recover')}"
    if confirmed:
        last = confirmed[-1]
        held = "" if incident.status == "closed" else " (watching for a relapse)"
        return f"{_hm(last.at)} — {_one_line(last.message)}{held}"
    if incident.recovered and incident.closed_at is not None:
        return f"{_hm(incident.closed_at)} — {_one_line(incident.recovery_note or 'recovered')}"
    return "Not yet (the incident is still open)"


def _prior(count: int, within_days: int) -> str:
    if count == 0:
        return f"none in last {within_days} days"
    return f"{count} in last {within_days} days (same failure mode)"


def _recommendation(incident: Incident, given: str | None, ranked: list[Hypothesis]) -> str:
    if given:
        return _one_line(given)
    for hypothesis in ranked:
        if hypothesis.recommendation:
            return _one_line(hypothesis.recommendation)
    return default_recommendation(incident.failure_kind)
