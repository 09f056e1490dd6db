"""The typed shape of a Horus config file.

The ``check`` and ``heal`` fields are unions built from the plugin registries, so adding a check type
touches its own module and the registry, never this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from horus.checks.base import CheckOptions
from horus.checks.registry import CHECK_TYPES
from horus.config.types import ExpandedPath, PositiveSeconds
from horus.heals.base import HealOptions
from horus.heals.registry import HEAL_ACTIONS

__all__ = ["Defaults", "HorusConfig", "MonitorConfig", "MonitorSettings"]

NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_MONITOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")


def _check_name(name: str) -> str:
    # Names appear in log events, file names and command lines, so they stay plain.
    if not _MONITOR_NAME.fullmatch(name):
        raise ValueError("a name is 1 to 100 letters, digits and . _ : @ -, starting with a letter or digit")
    return name


def _tagged_union(models: list[type[BaseModel]], tag: str) -> Any:
    return Annotated[Union[tuple(models)], Field(discriminator=tag)]  # noqa: UP007


if TYPE_CHECKING:
    AnyCheckOptions = CheckOptions
    AnyHealOptions = HealOptions
else:
    AnyCheckOptions = _tagged_union([c.options_model for c in CHECK_TYPES.values()], "type")
    AnyHealOptions = _tagged_union([h.options_model for h in HEAL_ACTIONS.values()], "action")


class Defaults(BaseModel):
    """Values every monitor inherits unless it sets its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_seconds: PositiveSeconds = 30.0
    check_timeout_seconds: PositiveSeconds = 10.0
    heal_timeout_seconds: PositiveSeconds = 60.0
    min_failures_to_heal: int = Field(2, ge=1)
    heal_cooldown_seconds: NonNegativeSeconds = 300.0
    startup_grace_seconds: NonNegativeSeconds = 30.0
    # Monitors start at a random offset within this window so that a thousand of them do not probe
    # in the same instant.
    start_jitter_seconds: NonNegativeSeconds = 5.0


_OVERRIDABLE = tuple(Defaults.model_fields)


class MonitorConfig(BaseModel):
    """One watched service: how to check it and, optionally, how to heal it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, AfterValidator(_check_name)]
    enabled: bool = True
    interval_seconds: PositiveSeconds | None = None
    check_timeout_seconds: PositiveSeconds | None = None
    heal_timeout_seconds: PositiveSeconds | None = None
    min_failures_to_heal: int | None = Field(None, ge=1)
    heal_cooldown_seconds: NonNegativeSeconds | None = None
    startup_grace_seconds: NonNegativeSeconds | None = None
    start_jitter_seconds: NonNegativeSeconds | None = None
    check: AnyCheckOptions
    heal: AnyHealOptions | None = None


class HorusConfig(BaseModel):
    """A whole config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: ExpandedPath | None = None
    defaults: Defaults = Defaults()
    monitors: list[MonitorConfig] = Field(min_length=1)

    def monitor_settings(self) -> list[MonitorSettings]:
        """Every monitor with the defaults filled in, in file order."""
        return [MonitorSettings.resolve(m, self.defaults) for m in self.monitors]


@dataclass(frozen=True)
class MonitorSettings:
    """A monitor as the engine runs it: every value concrete."""

    name: str
    enabled: bool
    interval_seconds: float
    check_timeout_seconds: float
    heal_timeout_seconds: float
    min_failures_to_heal: int
    heal_cooldown_seconds: float
    startup_grace_seconds: float
    start_jitter_seconds: float
    check: CheckOptions
    heal: HealOptions | None

    @classmethod
    def resolve(cls, monitor: MonitorConfig, defaults: Defaults) -> MonitorSettings:
        inherited = {
            key: getattr(monitor, key) if getattr(monitor, key) is not None else getattr(defaults, key)
            for key in _OVERRIDABLE
        }
        return cls(name=monitor.name, enabled=monitor.enabled, check=monitor.check, heal=monitor.heal, **inherited)
