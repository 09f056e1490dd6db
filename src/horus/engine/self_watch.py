"""Horus watched itself: a hung Horus is ended and restarted, by systemd or by the SDK's watchdog.

A watchdog that hangs watches nothing while looking alive, so Horus tells its own supervisor it is working,
or makes itself fail where nobody is listening:

* Under systemd (``$NOTIFY_SOCKET`` set, a path or an ``@abstract`` name): ``READY=1`` once monitoring has
  started (the state dir is locked and every monitor is on the schedule), ``STATUS=`` lines ("watching 12
  monitors"), ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` only while the scheduler makes progress (the
  event loop runs, and the earliest due check is at most ``max_behind_seconds`` late), and ``STOPPING=1``
  when asked to stop. A Horus that hangs stops feeding systemd's watchdog and systemd restarts it.
* Everywhere (launchd, a shell loop, systemd too): horus-sdk's :class:`~horus_sdk.LoopWatchdog` watches the
  event loop from a thread. A loop blocked for ``kill_after_seconds``, or a scheduler that far behind, ends
  Horus with a crash record in ``crash_dir``, so that ``KeepAlive``/``Restart=`` starts it again.

At the next start, a crash record not reported yet is told once: ``horus.previous_run_ended_by_watchdog``
with why and where the loop was stuck (and a notification, when channels are configured). Cooldowns and heal
budgets hold across that restart because they live in the state database, not in memory.

Test-only: ``HORUS_TEST_HANG_LOOP_AFTER=SECONDS`` blocks the event loop with ``time.sleep`` that many seconds
after monitoring started, so that tests can watch a real hang being caught. Unset, it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horus import humanize
from horus.config.models import SelfWatchSettings
from horus.log import get_logger
from horus.notify.events import Event, EventKind, Severity
from horus_sdk import LoopWatchdog
from horus_sdk.formats import FORMAT_CRASH, crash_summary, read_json, write_json_atomic

if TYPE_CHECKING:
    from horus.engine.daemon import Daemon

__all__ = [
    "HANG_ENV",
    "PreviousCrash",
    "SchedulerProgress",
    "SelfWatch",
    "SystemdNotifier",
    "crash_dir_of",
    "previous_crash",
]

log = get_logger("horus.self_watch")

HANG_ENV = "HORUS_TEST_HANG_LOOP_AFTER"
"""Test-only: seconds after monitoring started at which the event loop is blocked (see the module doc)."""
_HANG_SECONDS = 3600.0
# How often the STATUS line is brought up to date when systemd has no watchdog armed.
_STATUS_SECONDS = 5.0
# The marker of the last crash record already reported, in the state dir.
_REPORTED_NAME = "self_watch.json"
_CRASH_PREFIX, _CRASH_SUFFIX = "horus-crash-", ".json"
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def crash_dir_of(settings: SelfWatchSettings, state_dir: Path) -> Path:
    """Where Horus's own crash records go: the configured dir, else ``<state_dir>/crashes``."""
    return Path(settings.crash_dir) if settings.crash_dir is not None else state_dir / "crashes"


# -- systemd -------------------------------------------------------------------------------------------


class SystemdNotifier:
    """``sd_notify(3)`` datagrams to ``$NOTIFY_SOCKET``.

    Not horus-sdk's :class:`~horus_sdk.Heartbeat`: it sends ``WATCHDOG=1`` whenever the loop runs, and Horus
    must send it only while its scheduler keeps up. Sending never raises: a failure is logged once.
    """

    def __init__(self, address: str, watchdog_period: float | None) -> None:
        # '@name' is the abstract namespace (systemd's spelling); the kernel wants a leading NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_period = watchdog_period
        """Half of ``$WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) advises; None without a watchdog."""
        self._socket: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """The notifier systemd asked for, or None when Horus does not run under ``Type=notify``."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if not address.startswith(("/", "@")):
            log.warning("self_watch.notify_socket_unsupported", notify_socket=address, note="systemd is not told")
            return None
        period = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names another process when Horus is a child of the service's main process.
        if usec and (not pid or pid == str(os.getpid())):
            try:
                period = int(usec) / 1_000_000 / 2
            except ValueError:
                period = None
            if period is None or not period > 0:
                log.warning("self_watch.watchdog_usec_invalid", watchdog_usec=usec, note="WATCHDOG=1 is not sent")
                period = None
        return cls(address, period)

    def send(self, *lines: str) -> bool:
        """One datagram of ``KEY=value`` lines; True when it was sent."""
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A systemd that stopped reading makes a send fail (EAGAIN), never blocks the loop.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.error("self_watch.notify_failed", message=lines[0], error=str(exc))
            return False
        if self._failing:
            self._failing = False
            log.info("self_watch.notify_works_again")
        return True

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


# -- progress ------------------------------------------------------------------------------------------


class SchedulerProgress:
    """Whether the daemon's scheduler keeps up: how late its earliest due check is.

    A scheduler that wakes has popped every check due by then, so an entry on its heap that is long overdue
    means it has not woken (a starved or blocked loop). A monitor whose check or heal is running is not on
    the heap: a long heal, bounded by its own timeout, never counts as the scheduler falling behind.

    It is also the ``heartbeat=`` of the LoopWatchdog (``channel_ages``): its ``scheduler`` channel's age is
    that lateness, read from the watcher thread (a tuple read from a list, atomic under the GIL).
    """

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def behind_seconds(self, now_monotonic: float | None = None) -> float:
        """Seconds the earliest due check is late (0.0 when none is, or before the scheduler exists)."""
        now = self._daemon.clock.monotonic() if now_monotonic is None else now_monotonic
        return self._daemon.overdue_seconds(now)

    def channel_ages(self, now_monotonic: float) -> Mapping[str, float]:
        if not self._daemon.watching.is_set():
            return {}
        return {"scheduler": self.behind_seconds(now_monotonic)}


# -- the previous run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviousCrash:
    """A crash record of Horus's own LoopWatchdog, not reported yet."""

    path: Path
    pid: int | None
    ended_at: float
    summary: str  # why, and where the loop was stuck: horus_sdk.formats.crash_summary


def previous_crash(crash_dir: Path, state_dir: Path) -> PreviousCrash | None:
    """The newest crash record in ``crash_dir`` written after the last one reported, and mark it reported.

    Only records of Horus's own watchdog are there; one that cannot be read is skipped, never fatal.
    """
    marker = state_dir / _REPORTED_NAME
    reported_until = -math.inf
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        reported_until = _finite(float(json.loads(marker.read_text())["reported_until"]))
    newest: PreviousCrash | None = None
    try:
        entries = list(os.scandir(crash_dir))
    except OSError:
        return None
    for entry in entries:
        if not (entry.name.startswith(_CRASH_PREFIX) and entry.name.endswith(_CRASH_SUFFIX)):
            continue
        try:
            record = read_json(entry.path, FORMAT_CRASH)
            # Not a time of this world (JSON's Infinity, NaN) would fail the log's date, and as the marker
            # would hide every later record: such a record is as unreadable as a broken one.
            ended_at = _finite(float(record.get("wall_time") or entry.stat().st_mtime))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("self_watch.crash_record_unreadable", path=entry.path, error=str(exc))
            continue
        if ended_at > reported_until and (newest is None or ended_at > newest.ended_at):
            pid = record.get("pid")
            newest = PreviousCrash(
                Path(entry.path), pid if isinstance(pid, int) else None, ended_at, crash_summary(record)
            )
    if newest is not None:
        try:
            write_json_atomic(marker, {"reported_until": newest.ended_at, "record": str(newest.path)})
        except OSError as exc:
            log.warning("self_watch.marker_failed", path=str(marker), error=str(exc), note="may be told again")
    return newest


def _finite(seconds: float) -> float:
    """``seconds`` if it is a wall time datetime can show; ValueError otherwise."""
    if not math.isfinite(seconds) or not 0 <= seconds < 2**37:  # 2**37 s: about the year 6325
        raise ValueError(f"{seconds} is not a wall time")
    return seconds


# -- the whole ---------------------------------------------------------------------------------------------


class SelfWatch:
    """Horus's watch on itself while its daemon runs: ``async with SelfWatch(...).watching(stop):``."""

    def __init__(
        self,
        settings: SelfWatchSettings,
        state_dir: Path,
        daemon: Daemon,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.crash_dir = crash_dir_of(settings, state_dir)
        self.daemon = daemon
        self.progress = SchedulerProgress(daemon)
        self._environ = os.environ if environ is None else environ
        self.systemd = SystemdNotifier.from_environment(self._environ)
        if self.systemd is not None and environ is None:
            # Read once, then kept from the checks and heals Horus starts, as sd_notify(3)'s unset_environment
            # does: a child that notified systemd would speak for Horus, and could feed its watchdog.
            for name in _SYSTEMD_VARIABLES:
                os.environ.pop(name, None)
        self.watchdog: LoopWatchdog | None = None
        self.previous: PreviousCrash | None = None
        self._stopping_sent = False

    @contextlib.asynccontextmanager
    async def watching(self, stop: asyncio.Event) -> AsyncIterator[SelfWatch]:
        """Watch Horus for as long as the block runs; ``stop`` set means Horus is stopping."""
        try:
            await asyncio.to_thread(self.crash_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            log.error("self_watch.crash_dir_failed", crash_dir=str(self.crash_dir), error=str(exc))
        self.previous = await asyncio.to_thread(previous_crash, self.crash_dir, self.state_dir)
        if self.previous is not None:
            log.warning(
                "horus.previous_run_ended_by_watchdog",
                pid=self.previous.pid,
                ended_at=_iso(self.previous.ended_at),
                reason=self.previous.summary,
                record=str(self.previous.path),
            )
        async with contextlib.AsyncExitStack() as stack:
            if self.settings.enabled:
                stack.enter_context(_sdk_log_to_structlog())
                self.watchdog = await stack.enter_async_context(
                    LoopWatchdog(
                        warn_after=self.settings.warn_after_seconds,
                        kill_after=self.settings.kill_after_seconds,
                        crash_dir=self.crash_dir,
                        heartbeat=self.progress,
                        on_kill=_say_ending,
                        kill_grace=self.settings.kill_grace_seconds,
                        faulthandler=True,
                    )
                )
            companion = asyncio.create_task(self._once_watching(stop), name="horus-self-watch")
            try:
                yield self
            finally:
                companion.cancel()
                await asyncio.wait([companion])
                if self.systemd is not None:
                    if not self._stopping_sent:  # the daemon ended without being asked (a crash)
                        self.systemd.send("STOPPING=1")
                    self.systemd.close()

    async def _once_watching(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        started = asyncio.create_task(self.daemon.watching.wait())
        try:
            await asyncio.wait([started, stopping], return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                return
            self._tell_previous_crash()
            self._arm_test_hang()
            if self.systemd is not None:
                await self._feed_systemd(self.systemd, stopping)
        finally:
            started.cancel()
            stopping.cancel()

    def _tell_previous_crash(self) -> None:
        previous, notifier = self.previous, self.daemon.notifier
        if previous is None or notifier is None:
            return
        ended = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(previous.ended_at))
        notifier.emit(
            Event(
                EventKind.HORUS_FAILED,
                Severity.WARNING,
                f"Horus on {notifier.host} was hung and was restarted",
                f"Its watchdog ended the previous run (pid {previous.pid}) at {ended}: {previous.summary}. "
                f"Crash record: {previous.path}.",
                details={"record": str(previous.path), "pid": previous.pid, "reason": previous.summary},
            )
        )

    def _arm_test_hang(self) -> None:
        raw = self._environ.get(HANG_ENV)
        if not raw:
            return
        try:
            after = float(raw)
        except ValueError:
            log.error("self_watch.test_hang_invalid", value=raw, note=f"{HANG_ENV} must be a number of seconds")
            return
        log.warning(
            "self_watch.test_hang_armed", after=after, pid=os.getpid(), note=f"{HANG_ENV} is set: for tests only"
        )
        asyncio.get_running_loop().call_later(after, _hang_the_loop_for_test)

    async def _feed_systemd(self, systemd: SystemdNotifier, stopping: asyncio.Task[Any]) -> None:
        limit = self.settings.max_behind_seconds
        period = systemd.watchdog_period or _STATUS_SECONDS
        status = self._status(0.0)
        if systemd.send("READY=1", f"STATUS={status}"):
            log.info("self_watch.ready_sent", watchdog_every=systemd.watchdog_period)
        loop = asyncio.get_running_loop()
        fed = True
        while True:
            woke_at = loop.time()
            await asyncio.wait([stopping], timeout=period)
            if stopping.done():
                self._stopping_sent = systemd.send("STOPPING=1", "STATUS=stopping")
                return
            # This task's own lateness is the loop's: a loop that ran our wake-up this late is starved.
            lag = max(0.0, loop.time() - woke_at - period)
            behind = max(self.progress.behind_seconds(), lag)
            keeping_up = behind <= limit
            if keeping_up != fed:
                fed = keeping_up
                if keeping_up:
                    log.info("self_watch.progressing_again")
                else:
                    log.error(
                        "self_watch.not_progressing",
                        behind=round(behind, 1),
                        limit=limit,
                        note="systemd's watchdog is no longer fed" if systemd.watchdog_period else None,
                    )
            lines = []
            if keeping_up and systemd.watchdog_period:
                lines.append("WATCHDOG=1")
            new_status = self._status(behind if not keeping_up else 0.0)
            if new_status != status:
                status = new_status
                lines.append(f"STATUS={status}")
            if lines:
                systemd.send(*lines)

    def _status(self, behind: float) -> str:
        count = len(self.daemon.monitors)
        watching = f"watching {count} monitor{'' if count == 1 else 's'}"
        if behind:
            return f"{watching}; the scheduler is {humanize.seconds(behind)} behind its due checks"
        return watching


def _iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _hang_the_loop_for_test() -> None:
    """Test-only (HORUS_TEST_HANG_LOOP_AFTER): block the event loop as a synchronous call gone wrong would."""
    log.critical("self_watch.test_hang", seconds=_HANG_SECONDS)
    time.sleep(_HANG_SECONDS)


def _say_ending(record: dict[str, Any]) -> None:
    """The LoopWatchdog's last word before it ends Horus (on its thread: the loop is stuck)."""
    log.critical("horus.ended_by_watchdog", reason=crash_summary(record), pid=record.get("pid"))


class _ToStructlog(logging.Handler):
    """horus-sdk logs through the standard library; Horus's log is structlog's events (JSON or console)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event, _, fields = record.getMessage().partition(" ")
            log.log(record.levelno, f"sdk.{event}", detail=fields or None)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _sdk_log_to_structlog() -> Any:
    sdk_logger = logging.getLogger("horus_sdk")
    handler = _ToStructlog(level=logging.INFO)
    sdk_logger.addHandler(handler)
    try:
        yield
    finally:
        sdk_logger.removeHandler(handler)
