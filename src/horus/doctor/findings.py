"""What the doctor reports: a :class:`Finding`, one sentence saying what is wrong and what to change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PROBLEM", "WARNING", "Finding", "Severity"]

Severity = Literal["warning", "problem"]
WARNING: Severity = "warning"
# A problem breaks the service or Horus's watch over it as things stand; a warning may, or will elsewhere.
PROBLEM: Severity = "problem"


@dataclass(frozen=True)
class Finding:
    """One thing wrong with how a monitor's service or its Horus config is set up."""

    severity: Severity
    monitor: str
    kind: str  # the audit that found it: environment, executables, privacy, writable, supervision...
    found: str  # what is wrong, as a clause: "the service reads X (bot.py line 12) but its plist does not set it"
    change: str  # what to change, as a clause: "add it under EnvironmentVariables in /path/bot.plist"

    @property
    def sentence(self) -> str:
        return f"{self.found}: {self.change}"

    @property
    def is_problem(self) -> bool:
        return self.severity == PROBLEM

    def as_dict(self) -> dict[str, str]:
        return {
            "monitor": self.monitor,
            "severity": self.severity,
            "kind": self.kind,
            "found": self.found,
            "change": self.change,
            "sentence": self.sentence,
        }
