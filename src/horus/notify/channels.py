"""Where messages go: any Apprise URL (Slack, Telegram, ntfy, a JSON webhook...) or a program of the user's.

A channel turns one or more events into one message and sends it, blocking, on the calling thread; it
raises :class:`NotifyError` when the message did not get through, with ``permanent`` set when sending it
again cannot help. The delivery worker decides when to call it, bounds how long it waits, and retries.
Nothing a channel raises or logs contains its URL: the URL's path or query is usually the secret.
"""

from __future__ import annotations

import abc
import asyncio
import json
import time
from collections import Counter
from typing import ClassVar

from horus.errors import ExecError, NotifyError
from horus.execution import run_command
from horus.notify.apprise_support import load_apprise
from horus.notify.config import AppriseChannelConfig, ChannelConfig, CommandChannelConfig, channel_scheme
from horus.notify.events import Event, Severity

__all__ = ["AppriseChannel", "Channel", "CommandChannel", "build_channel", "render"]


class Channel(abc.ABC):
    """One configured destination. ``name`` is its display name, which never contains a secret."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.name: str = config.display_name

    @abc.abstractmethod
    def send(self, events: list[Event], timeout: float) -> None:
        """Deliver ``events`` as one message, or raise :class:`NotifyError`.

        ``timeout`` is how long the caller waits for this attempt; a channel that can bound its own work
        by it does so. Blocking: call it from a thread of its own, never from an event loop.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class AppriseChannel(Channel):
    """Sends through Apprise, which knows 100+ services by their URL scheme.

    Apprise is not given a time limit of its own: its plugins bound each connection and each read
    themselves (for HTTP services, the URL's ``cto`` and ``rto`` parameters, 4 s each by default), and
    the delivery worker stops waiting for a call that outlives ``timeout``.
    """

    config: AppriseChannelConfig

    _NOTIFY_TYPES: ClassVar[dict[Severity, str]] = {
        Severity.INFO: "info",
        Severity.WARNING: "warning",
        Severity.CRITICAL: "failure",
    }

    def __init__(self, config: AppriseChannelConfig) -> None:
        super().__init__(config)
        self._scheme = channel_scheme(config.url)
        # Built now rather than on the first send: importing Apprise takes a moment that must not count
        # against the first message's send timeout.
        apprise = load_apprise()
        self._text_format = apprise.NotifyFormat.TEXT
        # Without a service limit Apprise runs the plugin right here, on the caller's thread. With one, it
        # runs it in a thread pool shared by every channel and abandons a call that hangs: the abandoned
        # call would still hold a pool thread (delaying other channels once the pool is full), and Python
        # waits for pool threads at exit (delaying Horus's stop). The worker's own per-channel thread has
        # neither problem. (Apprise before 2.x has no such setting.)
        asset = (
            apprise.AppriseAsset(service_timeout=0)
            if hasattr(apprise.AppriseAsset, "_service_timeout")
            else apprise.AppriseAsset()
        )
        self._apprise = apprise.Apprise(asset=asset)
        self._usable = bool(self._apprise.add(config.url))

    def send(self, events: list[Event], timeout: float) -> None:
        if not self._usable:
            raise NotifyError(f"Apprise does not understand this {self._scheme}:// URL", permanent=True)
        title, body, severity = render(events)
        try:
            result = self._apprise.notify(
                title=title, body=body, notify_type=self._NOTIFY_TYPES[severity], body_format=self._text_format
            )
        except Exception:
            # `from None`: a plugin's exception text may quote the URL, and a traceback would print it.
            raise NotifyError(f"{self._scheme}:// delivery failed: Apprise raised an exception") from None
        if result:
            return
        # Apprise says why only in its log, whose lines quote the URL and are kept silent (apprise_support).
        if getattr(getattr(result, "status", None), "name", "") == "TIMEOUT":
            raise NotifyError(f"{self._scheme}:// delivery failed: the service did not answer in time")
        raise NotifyError(f"{self._scheme}:// delivery failed: the service could not be reached or refused the message")


class CommandChannel(Channel):
    """Runs the user's program once per message, with the events as a JSON array on its standard input
    (each as :meth:`Event.as_dict`). Exit 0 is delivered; anything else is a failure worth retrying."""

    config: CommandChannelConfig

    def send(self, events: list[Event], timeout: float) -> None:
        payload = json.dumps([event.as_dict() for event in events], default=str).encode()
        # The program is killed when the caller stops waiting for it, so a retry never runs beside it.
        limit = min(timeout, self.config.timeout_seconds)
        try:
            result = asyncio.run(
                run_command(self.config.command, shell=self.config.shell, timeout=limit, stdin=payload)
            )
        except ExecError as exc:
            raise NotifyError(str(exc), permanent=exc.permanent) from exc
        if not result.ok:
            last = result.last_line()
            raise NotifyError(f"{self.name} exited {result.exit_code}" + (f": {last}" if last else ""))


def build_channel(config: ChannelConfig) -> Channel:
    if isinstance(config, AppriseChannelConfig):
        return AppriseChannel(config)
    return CommandChannel(config)


def render(events: list[Event]) -> tuple[str, str, Severity]:
    """One message for one or more events: ``(title, body, severity)``, the severity being the highest.

    One event is its own title and message. Several make "Horus: 3 events (2 healed, 1 heal failed)"
    and a body listing each, oldest first, with its monitor and local time.
    """
    if not events:
        raise ValueError("render needs at least one event")
    severity = max(event.severity for event in events)
    if len(events) == 1:
        (event,) = events
        return event.title, event.message or event.title, severity
    kinds = Counter(str(event.kind).replace("_", " ") for event in events)
    title = f"Horus: {len(events)} events ({', '.join(f'{n} {kind}' for kind, n in kinds.items())})"
    entries = []
    for number, event in enumerate(events, start=1):
        when = time.strftime("%H:%M:%S", time.localtime(event.created_at))
        entry = f"{number}. {when} [{event.monitor or 'horus'}] {event.title}"
        if event.message:
            entry += "\n" + "\n".join(f"   {line}" for line in event.message.splitlines())
        entries.append(entry)
    return title, "\n\n".join(entries), severity
