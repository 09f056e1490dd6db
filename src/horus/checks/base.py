"""What every check type shares: its options model, its result, and the context it probes with.

A check type is one module holding an options model (frozen, unknown keys forbidden) and a
:class:`Check` subclass whose docstring is written for users. ``probe`` returns a
:class:`CheckResult`: an unhealthy service is a value with a human reason, not an exception. An
exception from ``probe`` means the probe itself broke; the runner records it as a probe error, which is
never a reason to heal. Checks never set their own timeouts: the runner applies them.
"""

from __future__ import annotations

import enum
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
from pydantic import BaseModel, ConfigDict

from horus.clock import Clock

__all__ = ["Check", "CheckOptions", "CheckResult", "ProbeContext", "Status", "new_probe_http_client"]


class Status(enum.StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    ERROR = "error"  # the probe could not observe; says nothing about the service
    # The probe observed, but cannot judge yet (a growth window not yet watched, a first datagram not yet
    # due): neither healthy nor unhealthy, so it can neither start a heal nor confirm a recovery.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CheckResult:
    status: Status
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    # When set, the scheduler looks again after this many seconds even if the interval is longer,
    # so that staleness is caught on its deadline rather than on the next tick.
    recheck_in: float | None = None

    @classmethod
    def healthy(cls, reason: str, *, recheck_in: float | None = None, **details: Any) -> CheckResult:
        return cls(Status.HEALTHY, reason, details, recheck_in)

    @classmethod
    def unhealthy(cls, reason: str, *, recheck_in: float | None = None, **details: Any) -> CheckResult:
        return cls(Status.UNHEALTHY, reason, details, recheck_in)

    @classmethod
    def error(cls, reason: str, **details: Any) -> CheckResult:
        return cls(Status.ERROR, reason, details)

    @classmethod
    def unknown(cls, reason: str, *, recheck_in: float | None = None, **details: Any) -> CheckResult:
        return cls(Status.UNKNOWN, reason, details, recheck_in)

    @property
    def is_healthy(self) -> bool:
        return self.status is Status.HEALTHY


class CheckOptions(BaseModel):
    """Base of every check's options; each subclass narrows ``type`` to a Literal of its name."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: str


@dataclass
class ProbeContext:
    """Shared resources a probe may use; each is a seam tests can replace with something real and small."""

    clock: Clock
    http: aiohttp.ClientSession


def new_probe_http_client() -> aiohttp.ClientSession:
    """The HTTP session probes share; use it as ``async with new_probe_http_client() as http:``.

    Its pool has no limit, because a limit lets a few hung servers hold every connection and starve the
    other monitors. It sets no timeout: the runner cancels every probe at its monitor's timeout. It keeps
    no cookies, because a cookie set by one service would otherwise be sent back on every later probe, by
    any monitor, to that host. Resolved addresses are kept for five minutes so that probes rarely wait for
    DNS; a service that moves to a new address is followed within that time.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
    )


OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class Check(ABC, Generic[OptionsT]):
    """Base of every check type. Subclasses set ``options_model``; ``type`` is read from it."""

    options_model: ClassVar[type[CheckOptions]]
    type: ClassVar[str]
    # Checks that talk to a service (HTTP, a port, a health command) treat "no answer in time" as the
    # service's failure. For the rest, running past the timeout means the probe itself is stuck.
    timeout_means_unhealthy: ClassVar[bool] = False
    # Inline checks only read local files: the engine runs them in batches on its filesystem thread
    # through ``probe_inline``, far cheaper than a task each. ``probe`` must then call ``probe_inline``.
    # An instance may turn it off (a heartbeat check that also listens for datagrams).
    inline: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options_model" in cls.__dict__:
            (cls.type,) = typing.get_args(cls.options_model.model_fields["type"].annotation)

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    def timeout_seconds(self, default: float) -> float:
        """The check's own ``timeout_seconds`` when it has one, else the monitor's check timeout."""
        own = getattr(self.options, "timeout_seconds", None)
        return float(own) if own is not None else default

    @abstractmethod
    async def probe(self, ctx: ProbeContext) -> CheckResult:
        """Observe the service once and say whether it is healthy, and why."""

    async def open(self) -> None:
        """Acquire what the check holds while Horus runs (a listening socket); called before the first
        probe. A failure here is the probe's to report, so this does not raise."""

    async def aclose(self) -> None:
        """Release what :meth:`open` acquired; called when Horus stops."""

    def evidence(self, since_wall: float | None) -> dict[str, Any]:
        """What the service left behind to explain a failure since ``since_wall`` (a crash record...),
        added to the heal's log events. Reads files: the engine calls it off the event loop."""
        return {}

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        """The same observation, synchronously, for checks with ``inline = True``; runs off the event loop."""
        raise NotImplementedError(f"{self.type} is not an inline check")
