"""Commanding a trading service through its control dir, and knowing whether it obeyed.

One path for ``horus control NAME halt`` and the ``halt`` heal: write the command to ``control.json``
(``horus_sdk.control_files.issue_command``: the next seq, under a lock), then watch ``status.json`` until the
service acknowledges that seq (``applied_seq``), refuses it, or the time runs out. An acknowledgement is
the only proof a command took effect: a file written is not a bot halted.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from horus import humanize
from horus.processes import pid_exists
from horus_sdk.control_files import Command, issue_command, read_status

__all__ = ["ACK_POLL_SECONDS", "Acknowledgement", "describe_mode", "operator_name", "send_command"]

# How often status.json is read while waiting: a few reads of a small file per 100 ms is nothing, and it
# keeps the wait's own delay well under the 100 ms the acknowledgement is allowed on top of a bot's cycle.
ACK_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Acknowledgement:
    """What became of a command: ``applied`` (acknowledged), ``refused`` (the service said no, and why),
    or ``unanswered`` (no word from the service within the wait)."""

    command: Command
    outcome: str
    waited_seconds: float
    status: dict[str, Any] | None  # the service's last status.json, when one could be read
    status_error: str | None = None  # why it could not, when it could not
    refusal: str | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"

    @property
    def mode(self) -> str | None:
        return _text(self.status.get("mode")) if self.status else None

    def summary(self, name: str) -> str:
        """One or two sentences for a person: what the service does now, or why nobody knows."""
        took = humanize.seconds(self.waited_seconds)
        sent = f"{self.command.command} (seq {self.command.seq})"
        if self.outcome == "applied":
            return f"{name} acknowledged {sent} in {took}: {describe_mode(self.status or {})}"
        if self.outcome == "refused":
            return f"{name} refused {sent}: {self.refusal}"
        return f"{name} did not acknowledge {sent} within {took}: {self._silence()}"

    def _silence(self) -> str:
        if self.status is None:
            return f"its status.json cannot be read ({self.status_error}); is the service running with its control dir?"
        applied = self.status.get("applied_seq")
        said = f"its status.json still says applied_seq {applied}"
        pid = self.status.get("pid")
        if isinstance(pid, int) and not pid_exists(pid):
            said += f", from pid {pid}, which is not running"
        cycle = self.status.get("last_cycle_at")
        if isinstance(cycle, int | float):
            said += f"; its last cycle was {humanize.seconds(max(0.0, time.time() - cycle))} ago"
        expiry = self.command.expires_at
        kept = (
            f"unless it expires first (at {_when(expiry)})"
            if expiry is not None
            else "whenever it next reads it, even after a restart"
        )
        return f"{said}. The command stays in control.json and the service applies it {kept}."


def describe_mode(status: dict[str, Any]) -> str:
    """ "HALTED (operator: exchange maintenance)": the service's mode and what holds it there."""
    mode = (_text(status.get("mode")) or "unknown").upper()
    cause = status.get("cause")
    if isinstance(cause, dict) and (cause.get("reason") or cause.get("name")):
        source = _text(cause.get("source")) or "cause"
        name = _text(cause.get("name"))
        label = f"{source} {name}" if name and name != source else source
        return f"{mode} ({label}: {_text(cause.get('reason')) or name})"
    return mode


async def send_command(
    control_dir: Path,
    command: str,
    reason: str,
    issued_by: str,
    *,
    timeout: float,
    expires_in: float | None = None,
) -> Acknowledgement:
    """Issue ``command`` and wait up to ``timeout`` for the service's answer.

    Raises ValueError for a command the SDK would not take and OSError when control.json cannot be
    written; a service that does not answer is an ``unanswered`` acknowledgement, not an exception.
    """
    issued = await asyncio.to_thread(issue_command, control_dir, command, reason, issued_by, expires_in=expires_in)
    started = time.monotonic()
    status: dict[str, Any] | None = None
    error: str | None = None
    while True:
        try:
            status = await asyncio.to_thread(read_status, control_dir)
            error = None
        except (OSError, ValueError) as exc:
            status, error = None, str(exc)
        waited = time.monotonic() - started
        if status is not None:
            answer = _answer(status, issued)
            if answer is not None:
                outcome, refusal = answer
                return Acknowledgement(issued, outcome, waited, status, refusal=refusal)
        if waited >= timeout:
            return Acknowledgement(issued, "unanswered", waited, status, status_error=error)
        await asyncio.sleep(min(ACK_POLL_SECONDS, max(0.0, timeout - waited)))


def _answer(status: dict[str, Any], issued: Command) -> tuple[str, str | None] | None:
    last = status.get("control")
    if isinstance(last, dict) and last.get("seq") == issued.seq and last.get("outcome") == "refused":
        return "refused", _text(last.get("reason")) or "no reason given"
    applied = status.get("applied_seq")
    if isinstance(applied, int) and not isinstance(applied, bool) and applied >= issued.seq:
        return "applied", None
    return None


def operator_name(via: str) -> str:
    """Who issues a command, for the service's status and decision log: "alice via horus control"."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user} via {via}"

    return True


def _when(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
