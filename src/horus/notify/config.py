"""The ``notify`` list and ``notify_settings`` block of a Horus config.

::

    notify:
      - url: "ntfy://ntfy.sh/my-bot-alerts"          # any Apprise URL: slack://, tgram://, json://...
        min_severity: warning
      - name: pager
        command: ["/usr/local/bin/page-me"]          # the event(s) as JSON on standard input
        events: [heal_failed, quarantined]
        monitors: [bot]
    notify_settings:
      group_seconds: 10
      remind_every_seconds: 3600
      digest_at: "07:00"
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from horus.config.types import CommandLine, PositiveSeconds, require_locatable_program, require_shell_for_strings
from horus.notify.events import EventKind, Severity

__all__ = ["AppriseChannelConfig", "ChannelConfig", "CommandChannelConfig", "NotifySettings", "channel_scheme"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError("a channel name is 1 to 64 letters, digits and . _ : @ -, starting with a letter or digit")
    return name


def channel_scheme(url: str) -> str:
    """``slack://T000/B000/XXX`` -> ``slack``: the one part of a URL that never holds a secret."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "url"


def _check_apprise_url(url: str) -> str:
    # The message never repeats the URL: its path or query usually is the secret.
    if not _SCHEME.match(url):
        raise ValueError("must be an Apprise URL such as ntfy://topic or slack://tokenA/tokenB/tokenC")
    from horus.notify.apprise_support import apprise_accepts

    if not apprise_accepts(url):
        raise ValueError(
            f"Apprise does not understand this {channel_scheme(url)}:// URL "
            "(see https://github.com/caronc/apprise/wiki for each service's form)"
        )
    return url


def _check_clock_time(value: str) -> str:
    if not _CLOCK_TIME.fullmatch(value):
        raise ValueError("must be a local time written HH:MM, such as 07:00")
    return value


def _severity(value: Any) -> Any:
    return Severity.parse(value) if isinstance(value, str) else value


class _ChannelBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, AfterValidator(_check_name)] | None = None
    # Filters: an event goes to this channel only when it passes all three.
    events: list[EventKind] | None = None
    min_severity: Annotated[Severity, Field(json_schema_extra={"enum": ["info", "warning", "critical"]})] = (
        Severity.INFO
    )
    monitors: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_severity(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("min_severity"), str):
            return {**data, "min_severity": _severity(data["min_severity"])}
        return data

    def wants(self, kind: EventKind, severity: Severity, monitor: str | None) -> bool:
        """Whether an event passes this channel's filters. Events about Horus itself (no monitor) pass
        a ``monitors`` filter: they concern every monitor."""
        if self.events is not None and kind not in self.events:
            return False
        if kind not in (EventKind.TEST, EventKind.DIGEST) and severity < self.min_severity:
            return False
        return not (self.monitors is not None and monitor is not None and monitor not in self.monitors)


class AppriseChannelConfig(_ChannelBase):
    """A channel Apprise delivers to: Slack, Discord, Telegram, ntfy, Pushover, email, a JSON webhook..."""

    url: Annotated[str, AfterValidator(_check_apprise_url)]

    @property
    def display_name(self) -> str:
        return self.name or channel_scheme(self.url)


class CommandChannelConfig(_ChannelBase):
    """A program run per message, with the events as a JSON array on its standard input."""

    command: CommandLine
    shell: bool = False
    timeout_seconds: PositiveSeconds = 30.0

    @model_validator(mode="after")
    def _shell_rule(self) -> CommandChannelConfig:
        require_shell_for_strings(self.command, self.shell)
        require_locatable_program(self.command, None)
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        first = self.command[0] if isinstance(self.command, list) else self.command.split()[0]
        return PurePath(first).name or "command"


def _channel_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "command" in value:
            return "command"
        return "url"
    return None


ChannelConfig = Annotated[
    Annotated[AppriseChannelConfig, Tag("url")] | Annotated[CommandChannelConfig, Tag("command")],
    Discriminator(_channel_kind),
]


class NotifySettings(BaseModel):
    """How events become messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Events within this many seconds of the first one go out as one message per channel, so twenty
    # monitors failing together (a network blip) make one message, not twenty.
    group_seconds: float = Field(10.0, ge=0, le=300, allow_inf_nan=False)
    # A problem that lasts is repeated this often, not on every check.
    remind_every_seconds: float = Field(3600.0, ge=1, allow_inf_nan=False)
    # A daily summary at this local time (HH:MM), to channels that accept the "digest" event.
    digest_at: Annotated[str, AfterValidator(_check_clock_time)] | None = None
    # A delivery that has failed for this long is given up on and reported, not retried forever.
    give_up_after_seconds: PositiveSeconds = 86400.0
    # One delivery attempt that takes longer than this has failed (the channel hangs).
    send_timeout_seconds: PositiveSeconds = 30.0
    # Delivered and given-up events are kept this long for `horus status` and the digest.
    keep_days: float = Field(30.0, gt=0, allow_inf_nan=False)


def _unique_channel_names(channels: list[Any]) -> list[Any]:
    seen: dict[str, int] = {}
    for index, channel in enumerate(channels):
        name = channel.display_name
        if name in seen:
            raise ValueError(
                f"notify[{index}] and notify[{seen[name]}] are both named {name!r}: give each a distinct `name`"
            )
        seen[name] = index
    return channels


NotifyList = Annotated[list[ChannelConfig], AfterValidator(_unique_channel_names)]
