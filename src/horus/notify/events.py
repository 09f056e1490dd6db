"""What Horus tells the operator: one :class:`Event` per thing that happened, with a kind and a severity.

Events are values. The daemon creates them; the outbox stores them before anything is sent; the
delivery worker renders one or several of them into a message per channel.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from horus.redaction import redact, redact_tree

__all__ = ["PROBLEM_KINDS", "Event", "EventKind", "Severity"]


class Severity(enum.IntEnum):
    INFO = 10
    WARNING = 20
    CRITICAL = 30

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {value!r}; use info, warning or critical") from None

    def __str__(self) -> str:
        return self.name.lower()


class EventKind(enum.StrEnum):
    HEALED = "healed"  # a heal ran and succeeded: why, and what was done
    HEAL_FAILED = "heal_failed"
    HEAL_REFUSED = "heal_refused"  # a safety rule stopped the heal before it touched anything
    RESTART_STORM = "restart_storm"  # the service restarted itself too often without Horus
    NOT_RECOVERED = "not_recovered"  # a heal ran, but recovery was not confirmed within verify_within_seconds
    QUARANTINED = "quarantined"  # Horus stopped healing a monitor whose heals do not help
    FAILING = "failing"  # unhealthy past its threshold, and Horus cannot heal it now (no heal, cooldown)
    RECOVERED = "recovered"  # sent only where the problem was announced
    PROBE_ERROR = "probe_error"  # Horus could not observe the service
    REMINDER = "reminder"  # a problem that lasts, repeated at notify_settings.remind_every_seconds
    # A fact a trading bot's status showed, once (a disconnect, rejected orders, a trip, the daily loss limit):
    # the alerts seed 002 asks for. Not a problem by itself: the trading check's verdict is.
    TRADING_ALERT = "trading_alert"
    # What a service's runner (horus_sdk.runner) did, once: a reload's outcome, a crash restart, giving up.
    RUNNER_ALERT = "runner_alert"
    # Horus itself failed: its watchdog ended a hung run (told at the next start), or systemd gave up on it.
    HORUS_FAILED = "horus_failed"
    STARTED = "started"
    STOPPED = "stopped"
    CONFIG_RELOADED = "config_reloaded"
    CONFIG_REJECTED = "config_rejected"  # a reload whose new config was invalid: the old one stays
    DIGEST = "digest"
    TEST = "test"


# Kinds that open (or keep open) a problem for a monitor; a later RECOVERED closes it.
PROBLEM_KINDS = frozenset(
    {
        EventKind.HEALED,
        EventKind.HEAL_FAILED,
        EventKind.HEAL_REFUSED,
        EventKind.RESTART_STORM,
        EventKind.NOT_RECOVERED,
        EventKind.QUARANTINED,
        EventKind.FAILING,
        EventKind.PROBE_ERROR,
        EventKind.REMINDER,
    }
)


@dataclass(frozen=True)
class Event:
    """One notification-worthy fact. ``title`` is one short line; ``message`` says why and what was done.

    ``id`` is unique and stable: the outbox stores each event once, whatever retries happen.
    ``details`` holds JSON-able facts (reason, action, pid, crash summary) for the command channel and
    for the incident timeline.
    """

    kind: EventKind
    severity: Severity
    title: str
    message: str
    monitor: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def redacted(self) -> Event:
        """The same event (same id and time) with the secrets in its title, message and details masked."""
        return dataclasses.replace(
            self, title=redact(self.title), message=redact(self.message), details=redact_tree(self.details)
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape given to command channels on their standard input, and stored in the outbox."""
        return {
            "id": self.id,
            "kind": str(self.kind),
            "severity": str(self.severity),
            "monitor": self.monitor,
            "title": self.title,
            "message": self.message,
            "details": self.details,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            kind=EventKind(data["kind"]),
            severity=Severity.parse(data["severity"]),
            title=data["title"],
            message=data["message"],
            monitor=data.get("monitor"),
            details=dict(data.get("details") or {}),
            created_at=float(data["created_at"]),
            id=data["id"],
        )
