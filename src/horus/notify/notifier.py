"""The daemon's side of notifications: which events go out, when, and to which channels.

Nothing here waits on a channel or on the disk. :meth:`Notifier.problem` and friends run on the event
loop, decide in memory, and hand the event to a writer thread that commits it to the outbox; the
delivery worker (its own thread) sends it from there. So a channel that is down or hangs, or a slow
disk, never delays a check or a heal, and an event that was written survives a crash of Horus.

Per monitor, a *problem* opens with the first event that announces it (healed, heal failed, failing,
probe error...). While it stays open, the same kind of event again is not repeated on every cycle: it is
counted, and a reminder goes out every ``remind_every_seconds``. A new kind of event within the problem
(the heal failed, after the failure was announced) goes out at once. ``recovered`` closes the problem
and is sent only to the channels that were told about it.

Every event is redacted (:meth:`Event.redacted`) before it is queued: the daemon's words quote what
services said, and the outbox, the channels and the digest must never hold a secret from it.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horus import humanize
from horus.clock import Clock
from horus.log import get_logger
from horus.notify.channels import build_channel
from horus.notify.config import ChannelConfig, NotifySettings
from horus.notify.events import Event, EventKind, Severity
from horus.notify.outbox import Outbox
from horus.notify.worker import DeliveryWorker

__all__ = ["Notifier"]

log = get_logger("horus.notify")

# How long stopping waits for the last events (Horus stopped) to be delivered; the rest wait in the outbox.
STOP_FLUSH_SECONDS = 3.0


@dataclass
class _Problem:
    opened_at: float
    last_sent_at: float
    sent_kinds: set[EventKind] = field(default_factory=set)
    unsent: int = 0  # events held back since the last message
    last_reason: str = ""


class Notifier:
    """Feeds the outbox; owns the writer thread and the delivery worker. ``start()`` before use."""

    def __init__(
        self,
        state_dir: Path,
        channels: Sequence[ChannelConfig],
        settings: NotifySettings,
        *,
        clock: Clock,
    ) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.settings = settings
        self.channel_configs = list(channels)
        self._problems: dict[str, _Problem] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="horus-outbox")
        self._outbox: Outbox | None = None
        self._worker: DeliveryWorker | None = None
        self.host = socket.gethostname()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox and start delivering (including what an earlier Horus left undelivered)."""
        self._writer.submit(self._open_outbox).result()
        self._start_worker()

    def _open_outbox(self) -> None:
        self._outbox = Outbox.open(self.state_dir)

    def _start_worker(self) -> None:
        if not self.channel_configs:
            return
        channels = [build_channel(config) for config in self.channel_configs]
        self._worker = DeliveryWorker(self.state_dir, channels, self.settings, self.clock)
        self._worker.start()

    def reconfigure(self, channels: Sequence[ChannelConfig], settings: NotifySettings) -> None:
        """Adopt a reloaded config's channels and settings; undelivered events stay in the outbox."""
        if list(channels) == self.channel_configs and settings == self.settings:
            return
        self._stop_worker(flush_seconds=0.0)
        self.channel_configs, self.settings = list(channels), settings
        self._start_worker()

    def stop(self) -> None:
        """Write what is queued, give the last events a moment to go out, and stop."""
        self._writer.shutdown(wait=True)
        self._stop_worker(flush_seconds=STOP_FLUSH_SECONDS)
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def _stop_worker(self, flush_seconds: float) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(flush_seconds)

    # -- what the daemon reports -------------------------------------------------------------------------

    def emit(self, event: Event, *, immediately: bool = False) -> None:
        """Queue an event about Horus itself (started, stopped, config reloaded) for every channel that wants it."""
        self._enqueue(event, immediately=immediately)

    def problem(self, kind: EventKind, monitor: str, title: str, message: str, **details: Any) -> list[str]:
        """Something is wrong with ``monitor``; sent unless the same news went out recently. Returns the
        channels the event was queued for (none when it was held back or no channel wants it)."""
        now = self.clock.wall()
        problem = self._problems.get(monitor)
        if problem is None:
            self._problems[monitor] = _Problem(now, now, {kind}, last_reason=str(details.get("reason", "")))
        elif kind not in problem.sent_kinds:
            # News within the problem (the heal failed after the failure was announced): sent at once.
            problem.sent_kinds.add(kind)
            problem.last_sent_at = now
            problem.unsent = 0
        else:
            problem.unsent += 1
            problem.last_reason = str(details.get("reason", problem.last_reason))
            self._remind_if_due(monitor, problem, now)
            return []
        return self._enqueue(Event(kind, _SEVERITY[kind], title, message, monitor, _jsonable(details), created_at=now))

    def alert(
        self,
        monitor: str,
        kind: str,
        message: str,
        *,
        severity: Severity = Severity.WARNING,
        event_kind: EventKind = EventKind.TRADING_ALERT,
    ) -> list[str]:
        """A fact about ``monitor`` worth a message on its own (a ``trading_alert`` from a check, a
        ``runner_alert`` from its runner); never held back, because each is new (every fact is told once)."""
        now = self.clock.wall()
        title = f"{monitor}: {kind.replace('_', ' ')}"
        event = Event(event_kind, severity, title, message, monitor, {"alert": kind}, created_at=now)
        return self._enqueue(event)

    def still_failing(self, monitor: str, reason: str) -> None:
        """Called on every failed look at a monitor; a reminder goes out when one is due."""
        problem = self._problems.get(monitor)
        if problem is None:
            return
        problem.last_reason = reason
        self._remind_if_due(monitor, problem, self.clock.wall())

    def healthy(self, monitor: str, reason: str) -> None:
        """Called when the monitor's lifecycle says it is healthy (a confirmed recovery, or a healthy look
        at a monitor that was not failing); closes an open problem with ``recovered``."""
        problem = self._problems.pop(monitor, None)
        if problem is None:
            return
        now = self.clock.wall()
        lasted = humanize.duration(max(0.0, now - problem.opened_at))
        event = Event(
            EventKind.RECOVERED,
            Severity.INFO,
            f"{monitor} recovered",
            f"{monitor} is healthy again after {lasted}: {reason}",
            monitor,
            {"reason": reason, "problem_seconds": round(now - problem.opened_at, 1)},
            created_at=now,
        )
        self._enqueue(event, only_where_announced=True)

    def channel_health(self) -> Future[list[dict[str, Any]]]:
        """Each channel's delivery health (pending, given up, last error), read on the writer thread."""
        return self._writer.submit(self._channel_health)

    def _channel_health(self) -> list[dict[str, Any]]:
        assert self._outbox is not None
        return [dataclasses.asdict(health) for health in self._outbox.health(self.clock.wall())]

    def open_problems(self) -> dict[str, float]:
        """Monitors with an announced, open problem, and since when (wall time)."""
        # Copied first in one step: the status writer calls this from a worker thread.
        return {name: problem.opened_at for name, problem in dict(self._problems).items()}

    def _remind_if_due(self, monitor: str, problem: _Problem, now: float) -> None:
        if now - problem.last_sent_at < self.settings.remind_every_seconds:
            return
        lasted = humanize.duration(now - problem.opened_at)
        held = f" ({problem.unsent} repeated event(s) not sent separately)" if problem.unsent else ""
        event = Event(
            EventKind.REMINDER,
            Severity.WARNING,
            f"{monitor} still failing",
            f"{monitor} has been failing for {lasted}: {problem.last_reason}{held}",
            monitor,
            {"reason": problem.last_reason, "problem_seconds": round(now - problem.opened_at, 1)},
            created_at=now,
        )
        problem.last_sent_at = now
        problem.unsent = 0
        self._enqueue(event)

    # -- to the outbox -----------------------------------------------------------------------------------

    def _enqueue(self, event: Event, *, only_where_announced: bool = False, immediately: bool = False) -> list[str]:
        # The one door every event leaves by (problem, reminder, recovered, emit): masked here, once.
        event = event.redacted()
        channels = [c.display_name for c in self.channel_configs if c.wants(event.kind, event.severity, event.monitor)]
        if not channels:
            return []
        # Held for the grouping window, so events close together leave as one message per channel.
        not_before = event.created_at if immediately else event.created_at + self.settings.group_seconds
        try:
            self._writer.submit(self._write, event, channels, not_before, only_where_announced)
        except RuntimeError:  # the writer was shut down: Horus is stopping
            log.warning("notify.dropped", kind=str(event.kind), monitor=event.monitor, why="Horus is stopping")
            return []
        return channels

    def _write(self, event: Event, channels: list[str], not_before: float, only_where_announced: bool) -> None:
        assert self._outbox is not None
        try:
            self._outbox.enqueue(event, channels, not_before=not_before, only_where_announced=only_where_announced)
        except Exception as exc:
            log.error("notify.enqueue_failed", kind=str(event.kind), monitor=event.monitor, error=str(exc))
            return
        worker = self._worker
        if worker is not None:
            worker.wake()


_SEVERITY = {
    EventKind.HEALED: Severity.WARNING,
    EventKind.HEAL_FAILED: Severity.CRITICAL,
    EventKind.HEAL_REFUSED: Severity.CRITICAL,
    EventKind.RESTART_STORM: Severity.CRITICAL,
    EventKind.NOT_RECOVERED: Severity.CRITICAL,
    EventKind.QUARANTINED: Severity.CRITICAL,
    EventKind.FAILING: Severity.WARNING,
    EventKind.PROBE_ERROR: Severity.WARNING,
    EventKind.REMINDER: Severity.WARNING,
}


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value if isinstance(value, str | int | float | bool | None) else str(value)
        for key, value in details.items()
    }
