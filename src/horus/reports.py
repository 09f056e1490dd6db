"""What ``horus status`` prints: the daemon's last status snapshot and the outbox's health, as text."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from horus import humanize
from horus.control_plane import describe_mode
from horus.processes import pid_exists

__all__ = ["daemon_state", "render_status", "stale_state_warning"]

# A snapshot older than this (the daemon writes one every 5 s) means the daemon is stuck or gone.
STALE_SNAPSHOT_SECONDS = 30.0


def daemon_state(snapshot: dict[str, Any] | None, now: float) -> str:
    """ "running (pid 4121)", "not running" or "not answering": from the snapshot and the pid in it."""
    if snapshot is None:
        return "never ran with this state dir"
    pid = snapshot.get("pid")
    alive = isinstance(pid, int) and pid_exists(pid)
    if not snapshot.get("running") or not alive:
        return f"not running (last status {_ago(snapshot.get('written_at'), now)})"
    age = now - float(snapshot.get("written_at") or 0)
    if age > max(STALE_SNAPSHOT_SECONDS, 3 * float(snapshot.get("every_seconds") or 0)):
        return f"not answering: pid {pid} is alive but its last status is {humanize.duration(age)} old"
    return f"running (pid {pid}, started {_ago(snapshot.get('started_at'), now)})"


def stale_state_warning(snapshot: dict[str, Any] | None, now: float) -> str | None:
    """A first line for a report read from the state dir when no daemon is keeping it current, else None."""
    if snapshot is None:
        return "Horus has never run with this state dir; nothing below is observed."
    state = daemon_state(snapshot, now)
    if state.startswith("running"):
        return None
    written = snapshot.get("written_at")
    if isinstance(written, int | float):
        as_of = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(written))
        since = f"this is the state as of {as_of} ({_ago(written, now)})"
    else:
        since = "the state below has no date"
    if state.startswith("not answering"):
        return f"Horus is not answering (pid {snapshot.get('pid')} is alive but silent): {since}."
    return f"Horus is not running: {since}."


def render_status(snapshot: dict[str, Any] | None, channels: Sequence[dict[str, Any]], now: float) -> str:
    lines = [f"Horus: {daemon_state(snapshot, now)}"]
    monitors = (snapshot or {}).get("monitors") or []
    if monitors:
        rows = [
            [
                m["name"],
                _monitor_state(m, now),
                _last_check(m, now),
                f"{m.get('consecutive_failures', 0)}/{m.get('min_failures_to_heal', '?')}",
                humanize.duration(m["cooldown_remaining_seconds"]) if m.get("cooldown_remaining_seconds") else "-",
                _ago(m.get("last_heal_at"), now),
                m.get("reason") or "",
            ]
            for m in monitors
        ]
        lines += ["", *_table(["MONITOR", "STATUS", "LAST CHECK", "FAILURES", "COOLDOWN", "LAST HEAL", "REASON"], rows)]
    trading = [(m["name"], m["trading"]) for m in monitors if isinstance(m.get("trading"), dict)]
    if trading:
        lines += ["", "Trading:"]
        for name, facts in trading:
            lines.append(f"  {name}: {describe_mode(facts)}")
            if facts.get("reconcile"):
                lines.append(f"    last reconcile: {facts['reconcile']}")
    disabled = (snapshot or {}).get("disabled") or []
    if disabled:
        lines.append(f"disabled: {', '.join(disabled)}")
    lines += ["", "Outbox:"]
    if not channels:
        lines.append("  no notification channels have been used")
    else:
        rows = [
            [
                c["channel"],
                _channel_state(c),
                str(c.get("pending", 0)),
                humanize.duration(c["oldest_pending_age"]) if c.get("oldest_pending_age") else "-",
                str(c.get("dead_in_last_day", 0)),
                _ago(c.get("last_sent_at"), now),
                c.get("last_error") or "",
            ]
            for c in channels
        ]
        lines += _table(["CHANNEL", "STATE", "PENDING", "OLDEST", "GIVEN UP (24 h)", "LAST SENT", "LAST ERROR"], rows)
    return "\n".join(lines)


# Row statuses as a person reads them. "error": the probe itself keeps failing, so nothing is observed;
# "unknown": the check cannot judge yet (a window not yet watched), neither healthy nor failing.
_STATUS_WORDS = {"error": "not watched", "unknown": "not known yet"}
_PHASE_WORDS = {
    "confirming": "confirming recovery",
    "verifying": "verifying the heal",
    "healing": "healing",
    "symptom": "symptom of an upstream",
}


def _monitor_state(monitor: dict[str, Any], now: float) -> str:
    until = monitor.get("quarantined_until")
    if isinstance(until, int | float):
        return f"quarantined ({humanize.duration(max(0.0, until - now))} left)"
    status = monitor.get("status")
    if not status:
        return "not checked yet"
    words = _STATUS_WORDS.get(str(status), str(status))
    if monitor.get("restart_storm"):
        return f"{words} (restart storm)"
    if monitor.get("heal_blocked"):
        return f"{words} (heal refused)"
    # A healthy look at a monitor that was failing is not a recovery yet (see horus.engine.lifecycle).
    phase = _PHASE_WORDS.get(str(monitor.get("phase")))
    return f"{words} ({phase})" if phase else words


def _last_check(monitor: dict[str, Any], now: float) -> str:
    # A healthy row is not rewritten on every look: the daemon vouches instead that it was checked within
    # this long (see horus.engine.status).
    within = monitor.get("checked_within_seconds")
    if isinstance(within, int | float):
        return f"within {humanize.duration(within)}"
    return _ago(monitor.get("last_check_at"), now)


def _channel_state(channel: dict[str, Any]) -> str:
    if channel.get("given_up"):
        return "given up"
    if channel.get("consecutive_failures"):
        return f"failing ({channel['consecutive_failures']}x)"
    return "ok"


def _ago(when: object, now: float) -> str:
    if not isinstance(when, int | float):
        return "never"
    return f"{humanize.duration(max(0.0, now - when))} ago"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]

    return True
