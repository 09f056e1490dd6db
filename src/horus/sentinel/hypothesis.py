"""The shape of one root-cause hypothesis, shared by the rules that produce it and the post-mortem."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Hypothesis"]


@dataclass(frozen=True)
class Hypothesis:
    """A probable cause of an incident, with what points to it.

    ``confidence`` is 0..1. ``evidence`` holds short lines quoted as they were seen (a log line, a
    snapshot fact, a commit subject). ``recommendation`` is the standing advice that would prevent the
    failure, or None when the rule has none to give.
    """

    title: str
    confidence: float
    evidence: list[str] = field(default_factory=list)
    recommendation: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be 0..1, got {self.confidence}")
