"""The shape of one root-cause hypothesis, shared by the rules that produce it and the post-mortem."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CAUSES", "Hypothesis"]

# Every cause a hypothesis can name, with what it means: the stable ids that tests, the accuracy table
# and the knowledge base count by (a title says the same for people, with the details of one incident).
CAUSES: dict[str, str] = {
    "event_loop_blocked": "a synchronous call or computation held the event loop",
    "await_never_returned": "an await (an upstream call, a stream) never returned",
    "disk_full": "the volume the service writes to is full",
    "out_of_memory": "the service ran out of memory or was killed for it",
    "killed": "the service was killed by a signal (SIGKILL, often the OOM killer)",
    "address_in_use": "another process holds the address the service must listen on",
    "import_or_config_error": "the service cannot start: an import, syntax or configuration error",
    "dependency_refused": "a dependency refused connections or is failing",
    "rate_limited": "an upstream rate-limits the service",
    "upstream_timeout": "an upstream call timed out",
    "permission_denied": "the service may not open a file or resource it needs",
    "too_many_open_files": "the service ran out of file descriptors",
    "dns_failure": "a host name could not be resolved",
    "auth_failure": "an upstream rejected the service's credentials",
    "database_error": "the database refused or broke the service's work (locks, lost connections)",
    "tls_failure": "a TLS handshake or certificate failed",
    "trading_trip": "the bot's own kill switch stopped it: rejects or errors, a long disconnect, the daily loss",
    "busy_loop": "the process spins at full CPU while producing nothing",
    "hung": "the process runs but stopped producing output, and nothing says why",
    "unhandled_exception": "an exception nothing handled stopped the service",
    "recent_change": "a commit or config change just before the failure",
    "unknown": "nothing in the evidence supports a cause",
}


@dataclass(frozen=True)
class Hypothesis:
    """A probable cause of an incident, with what points to it.

    ``confidence`` is 0..1. ``evidence`` holds short lines quoted as they were seen (a log line, a
    snapshot fact, a commit subject). ``recommendation`` is the standing advice that would prevent the
    failure, or None when the rule has none to give. ``cause`` is one of :data:`CAUSES`.
    """

    title: str
    confidence: float
    evidence: list[str] = field(default_factory=list)
    recommendation: str | None = None
    cause: str = "unknown"

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be 0..1, got {self.confidence}")
        if self.cause not in CAUSES:
            raise ValueError(f"unknown cause {self.cause!r}")
