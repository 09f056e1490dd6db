"""The one exception tree of Horus.

    HorusError                      anything Horus raises on purpose
    ├── ConfigError                 the config file is unreadable or invalid; carries every located issue
    ├── EngineCrashed               a bug stopped the scheduler: Horus exits rather than watch nothing
    ├── CannotStart                 the daemon cannot start watching (a check cannot hold what it needs)
    ├── CheckCannotOpen             a check cannot acquire what it holds while Horus runs (a listen address)
    ├── ProbeError                  a check could not observe (permission denied, a missing binary):
    │                               shown as an error, never a reason to heal
    ├── ExecError                   a program could not be started or did not finish in time
    ├── HealError                   a heal action failed; `permanent` says whether retrying can help
    │   └── HealRefused             a safety rule stopped the heal before it touched anything
    ├── NotifyError                 a notification channel could not deliver; `permanent` says whether
    │                               retrying can help
    ├── ServiceToolError            launchctl or systemctl could not be run, or refused a step of
    │                               `horus service` (the message says which and why)
    └── StoreError                  the state database cannot be opened or written
        ├── StateLockedError        another Horus daemon already owns this state dir
        └── IncidentStateError      no such incident, or a change its state forbids (an event on a closed one)

Third-party exceptions are translated at the boundary with ``raise HorusError(...) from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CannotStart",
    "CheckCannotOpen",
    "ConfigError",
    "ConfigIssue",
    "EngineCrashed",
    "ExecError",
    "HealError",
    "HealRefused",
    "HorusError",
    "IncidentStateError",
    "NotifyError",
    "ProbeError",
    "ServiceToolError",
    "StateLockedError",
    "StoreError",
]


class HorusError(Exception):
    """Base of every error Horus raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located like ``monitors[2] (gateway).check.port``."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(HorusError):
    """The config could not be loaded; ``issues`` holds every problem found, not just the first."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        lines = [f"{source}: {count} error{'s' if count != 1 else ''}"]
        lines += [f"  {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


class ProbeError(HorusError):
    """The probe itself broke, so nothing is known about the service."""


class ExecError(HorusError):
    """A program could not be run: not found, not executable, or past its timeout."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class HealError(HorusError):
    """A heal action failed. ``permanent`` is true when repeating it cannot help.

    ``details`` keeps what the heal did before it failed (pids signalled, exit code, output tail),
    so the record of a failed heal is as complete as the record of a successful one.
    """

    def __init__(self, message: str, *, permanent: bool = False, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.details: Mapping[str, Any] = details or {}


class HealRefused(HealError):
    """A safety rule stopped the heal before anything was signalled or restarted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class NotifyError(HorusError):
    """A channel could not deliver a message. ``permanent`` is true when sending it again cannot help
    (the channel is misconfigured), so the delivery is given up at once rather than retried.

    The message never contains a channel's URL: its path or query is usually the secret.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class EngineCrashed(HorusError):
    """A bug stopped the scheduler. Horus ends (exit 1) so that its supervisor restarts it, rather than
    stay alive watching nothing."""


class CannotStart(HorusError):
    """The daemon cannot start watching: a check cannot hold what it needs (a heartbeat's listen address is
    taken). Horus exits 1 at start rather than run with a service it cannot hear."""


class CheckCannotOpen(HorusError):
    """A check's ``open()`` cannot acquire what it holds while Horus runs; at start the daemon refuses to start,
    on a reload the monitor runs and its probe reports the reason on every look."""


class StoreError(HorusError):
    """The state store cannot be opened or written."""


class StateLockedError(StoreError):
    """Another Horus daemon holds the lock on this state dir."""


class IncidentStateError(StoreError):
    """The incident does not exist, or is not in a state that allows this (an event on a closed one)."""


class ServiceToolError(HorusError):
    """A service manager's tool could not be run, or refused a step; the message says which and why."""
