"""What every heal action shares: its options model, its outcome, and the context it acts in.

A heal action is one module holding an options model and a :class:`Heal` subclass whose docstring is
written for users. ``run`` returns a :class:`HealOutcome` when it did its job and raises
:class:`~horus.errors.HealError` (``permanent`` when retrying cannot help) or
:class:`~horus.errors.HealRefused` (a safety rule said no) when it did not. The runner applies timeouts.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from horus.clock import Clock

__all__ = ["Heal", "HealContext", "HealOptions", "HealOutcome"]


@dataclass(frozen=True)
class HealOutcome:
    ok: bool
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    permanent: bool = False  # for failures: true when repeating the heal cannot help
    refused: bool = False  # a safety rule stopped it before it touched anything: not a heal at all


class HealOptions(BaseModel):
    """Base of every heal's options; each subclass narrows ``action`` to a Literal of its name."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    action: str


@dataclass
class HealContext:
    clock: Clock
    monitor: str
    reason: str = ""  # why the monitor is healed: the failing check's reason, for heals that pass it on


OptionsT = TypeVar("OptionsT", bound=HealOptions)


class Heal(ABC, Generic[OptionsT]):
    """Base of every heal action. Subclasses set ``options_model``; ``action`` is read from it."""

    options_model: ClassVar[type[HealOptions]]
    action: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options_model" in cls.__dict__:
            (cls.action,) = typing.get_args(cls.options_model.model_fields["action"].annotation)

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    def timeout_seconds(self, default: float) -> float:
        """How long the runner lets this heal take before abandoning it."""
        return default

    @abstractmethod
    async def run(self, ctx: HealContext) -> HealOutcome:
        """Do the healing once; raise HealError when it failed."""
