"""Following a monitor's runner: what changed in its ``runner.json`` since the last look, as news for people.

A monitor with ``runner:`` set is followed whatever its check. After each look the daemon reads the runner's
``runner.json`` (bounded, only when no other user could have written it) and compares it with what it saw last:

- each reload entry that is new or whose outcome changed (by id and outcome): ``done`` (info), ``failed``
  (warning), ``rolled_back`` (critical), told in :func:`horus_sdk.runner_files.describe_reload`'s words;
- the runner restarting a crashed instance (its ``restarts`` grew: warning, once the restart happened, not
  during the backoff before it), and the runner giving up on it (its state became ``gave_up``: critical, and
  not also told as a restart).

Each is an alert for notifications and, while the monitor has an incident, a line of its timeline, told once.
What was seen is remembered in the Horus state dir's ``runner-news.json`` (each monitor's runner dir, the reload
ids with the outcome last seen, the restart count and the state), so that a Horus restart neither tells old news
again nor loses what the runner finished while Horus was stopped (a reload under way when it stopped, a rollback
on probation meanwhile, a crash restart). Only without that memory (a first start, or a lost state dir) is what
``runner.json`` held when the daemon started (reloads that finished before) taken as old. A config reload keeps
what was seen (the watches belong to the daemon, not to a monitor). A file that cannot be read is logged once,
never raised into the look.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from horus.checks.runner import describe_exit, runner_instance, wall_time
from horus.files import write_file_atomically
from horus.log import get_logger
from horus.notify.events import EventKind, Severity
from horus_sdk.formats import read_json
from horus_sdk.runner_files import describe_reload, read_runner_state

if TYPE_CHECKING:
    from horus.config.models import MonitorSettings
    from horus.engine.daemon import Daemon, Monitor

__all__ = ["RunnerNews", "RunnerWatch", "follow_from_now", "follow_runner"]

log = get_logger("horus.engine")

# A read of runner.json blocked longer than this (a stat on a dead network mount) is left to finish on its own
# thread: the look's heal waits for nothing more.
FOLLOW_TIMEOUT_SECONDS = 5.0
MEMORY_FILE = "runner-news.json"
MEMORY_FORMAT = "horus-runner-news/1"
# A monitor's memory is at most the 20 reload ids its runner.json lists: 16 MiB is thousands of runners.
MEMORY_MAX_BYTES = 16 * 1024 * 1024
# The daemon's watches share one memory file, each rewriting its own part from a thread of its own.
_memory_lock = threading.Lock()

_RELOAD_NEWS = {
    "done": ("reload_done", Severity.INFO),
    "failed": ("reload_failed", Severity.WARNING),
    "rolled_back": ("reload_rolled_back", Severity.CRITICAL),
}


@dataclass(frozen=True)
class RunnerNews:
    """One thing the runner did that people are told: ``kind`` names it in alerts and the incident timeline."""

    kind: str
    severity: Severity
    message: str


class RunnerWatch:
    """What has been seen of one runner's ``runner.json``; :meth:`read` returns what is new since."""

    def __init__(self, state_dir: Path, *, since_wall: float, memory: Path | None = None) -> None:
        self.state_dir = state_dir
        # Without a memory of what was told, reloads finished before this were there before the daemon: not news.
        self.since_wall = since_wall
        self.memory = memory  # the daemon's runner-news.json; None remembers nothing across restarts
        self._recalled = False
        self._remembered: dict[str, Any] | None = None
        self._seen: dict[str, Any] = {}  # reload id -> the outcome last seen
        self.pending: asyncio.Future[list[RunnerNews]] | None = None  # a read not yet taken up (on the loop only)
        self._restarts: int | None = None
        self._state: str | None = None
        self._error: str | None = None
        self._primed = False
        self.instance: str | None = None
        """The runner's identity for restart counting (checks.runner.runner_instance), as last read."""
        # A config reload may start the monitor's new look while the old one's follow-up still reads.
        self._lock = threading.Lock()

    def read(self, monitor: str) -> list[RunnerNews]:
        """Read ``runner.json`` and return what changed; blocking (call it in a thread), never raises for the
        file's sake."""
        with self._lock:
            if not self._recalled:
                self._recalled = True
                self._recall(monitor)
            try:
                state = read_runner_state(self.state_dir)
            except (OSError, ValueError) as exc:
                error = str(exc)
                if error != self._error:
                    log.warning("runner.unreadable", monitor=monitor, error=error, note="runner news waits for it")
                    self._error = error
                return []
            if self._error is not None:
                log.info("runner.readable", monitor=monitor)
                self._error = None
            news = self.compare(state)
            self._remember(monitor)
            return news

    def _recall(self, monitor: str) -> None:
        """Take up what the last daemon saw of this monitor's runner, if it watched the same dir."""
        if self.memory is None:
            return
        try:
            mine = _read_memory(self.memory).get(monitor)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("runner.memory_unreadable", monitor=monitor, error=str(exc), note="old news may be told again")
            return
        if (
            not isinstance(mine, dict)
            or mine.get("dir") != str(self.state_dir)
            or not isinstance(mine.get("seen"), dict)
        ):
            return
        self._seen = dict(mine["seen"])
        restarts, runner_state = mine.get("restarts"), mine.get("state")
        self._restarts = restarts if isinstance(restarts, int) and not isinstance(restarts, bool) else None
        self._state = runner_state if isinstance(runner_state, str) else None
        self._primed = True
        self._remembered = self._memory_entry()

    def _remember(self, monitor: str) -> None:
        """Write down what was seen, when it changed, before the news goes out: a restart then never tells it
        again (and a crash between the two loses no more than that one look's news)."""
        entry = self._memory_entry()
        if self.memory is None or entry == self._remembered:
            return
        try:
            with _memory_lock:
                try:
                    memory = _read_memory(self.memory)
                except FileNotFoundError:
                    memory = {}
                except ValueError:
                    memory = {}  # damaged: started anew, since a rewrite is the only way back
                memory[monitor] = entry
                text = json.dumps({"format": MEMORY_FORMAT, "monitors": memory}, separators=(",", ":"), default=str)
                write_file_atomically(self.memory, text.encode("utf-8"))  # private, like the rest of the state dir
        except OSError as exc:
            log.warning("runner.memory_unwritable", monitor=monitor, error=str(exc), note="a restart may tell it again")
            return
        self._remembered = entry

    def _memory_entry(self) -> dict[str, Any]:
        return {"dir": str(self.state_dir), "seen": dict(self._seen), "restarts": self._restarts, "state": self._state}

    def compare(self, state: Mapping[str, Any]) -> list[RunnerNews]:
        """What ``state`` (a ``runner.json``) says that was not seen before."""
        news: list[RunnerNews] = []
        instance = runner_instance(state)
        first = not self._primed
        self._primed = True
        reloads = state.get("reloads")
        # By id, the last entry listed: an id listed twice would otherwise differ from what was seen at every look.
        latest: dict[str, dict[str, Any]] = {}
        for entry in reloads if isinstance(reloads, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                latest.pop(entry["id"], None)
                latest[entry["id"]] = entry
        seen: dict[str, Any] = {}
        for reload_id, entry in latest.items():
            outcome = entry.get("outcome")
            seen[reload_id] = outcome
            if reload_id in self._seen and self._seen[reload_id] == outcome:
                continue
            if first and _finished_before(entry, self.since_wall):
                continue
            if isinstance(outcome, str) and outcome in _RELOAD_NEWS:
                kind, severity = _RELOAD_NEWS[outcome]
                if outcome == "failed" and entry.get("stage") == "probation":
                    # The new version failed on probation and the old one could not be brought back: worse
                    # than a rollback, where the old version trades on.
                    severity = Severity.CRITICAL
                news.append(RunnerNews(kind, severity, describe_reload(entry)))
        # Only ids runner.json still lists are remembered: it keeps the last few, so this stays small.
        self._seen = seen
        restarts = state.get("restarts")
        restarts = restarts if isinstance(restarts, int) and not isinstance(restarts, bool) else None
        runner_state = state.get("state") if isinstance(state.get("state"), str) else None
        exit_text = describe_exit(state.get("last_exit"))
        crashed = not first and restarts is not None and self._restarts is not None and restarts > self._restarts
        # The runner counts a crash when the instance dies, then restarts it after a backoff or gives up: the restart
        # is news once it has happened (the check tells the crash meanwhile), and giving up is told below, not as one.
        waiting = crashed and runner_state == "backoff"
        if crashed and not waiting and runner_state != "gave_up":
            message = "the runner restarted the crashed instance"
            message += f": the last one {exit_text}" if exit_text else ""
            news.append(RunnerNews("runner_restart", Severity.WARNING, message + f" (restart {restarts})"))
        if not first and runner_state == "gave_up" and self._state != "gave_up":
            why = str(state.get("state_reason") or "").strip()
            message = "the runner gave up restarting the instance" + (f": {why}" if why else "")
            message += f"; the last one {exit_text}" if exit_text else ""
            message += "; nothing trades until a new version or a restart request"
            news.append(RunnerNews("runner_gave_up", Severity.CRITICAL, message))
        # A new runner counts its restarts from zero: a smaller number is a new baseline, not news.
        if not waiting:
            self._restarts = restarts
            self.instance = instance  # so the engine counts the restart when it is told, not before
        self._state = runner_state
        return news


def _finished_before(entry: Mapping[str, Any], wall: float) -> bool:
    for key in ("finished_at", "started_at"):
        at = wall_time(entry.get(key))
        if at is not None:
            return at < wall
    return True  # undated: taken as old, since it cannot be shown to be new


def _read_memory(path: Path) -> dict[str, Any]:
    monitors = read_json(path, MEMORY_FORMAT, max_bytes=MEMORY_MAX_BYTES).get("monitors")
    if not isinstance(monitors, dict):
        raise ValueError(f"{path}: no monitors")
    return monitors


def watch_of(monitor: Monitor) -> RunnerWatch:
    """The monitor's watch, kept by the daemon so that a config reload keeps what was seen."""
    assert monitor.settings.runner is not None
    return _watch(monitor.daemon, monitor.name, monitor.settings.runner, since_wall=monitor.daemon.started_at)


def follow_from_now(daemon: Daemon, settings: Iterable[MonitorSettings]) -> None:
    """For a config reload, before it starts the monitors it adds or changes: a runner that a monitor names
    for the first time (or instead of another) is followed from now, since what it did before was nobody's news
    yet; a runner the monitor already named keeps what was seen of it."""
    for monitor in settings:
        if monitor.runner is not None:
            _watch(daemon, monitor.name, monitor.runner, since_wall=daemon.clock.wall())


def _watch(daemon: Daemon, name: str, state_dir: Path, *, since_wall: float) -> RunnerWatch:
    """The watch of monitor ``name`` on ``state_dir``: the one kept, or a new one when it watched another dir."""
    watch = daemon.runner_watches.get(name)
    if watch is None or watch.state_dir != state_dir:
        watch = RunnerWatch(state_dir, since_wall=since_wall, memory=daemon.store.path.parent / MEMORY_FILE)
        daemon.runner_watches[name] = watch
    return watch


async def follow_runner(monitor: Monitor) -> None:
    """After a look: tell what the monitor's runner did since the last one. Never raises, and never waits
    more than FOLLOW_TIMEOUT_SECONDS: the monitor's heal and its next look come after this."""
    try:
        watch = watch_of(monitor)
        if watch.pending is None:
            watch.pending = asyncio.ensure_future(asyncio.to_thread(watch.read, monitor.name))
        elif not watch.pending.done():
            return  # still stuck since an earlier look: one thread is held, not one per look
        try:
            news = await asyncio.wait_for(asyncio.shield(watch.pending), FOLLOW_TIMEOUT_SECONDS)
        except TimeoutError:
            # Left to finish on its own thread; its news is told at the first look after it does.
            monitor.log.warning(
                "runner.read_stuck",
                dir=str(watch.state_dir),
                note=f"reading runner.json took more than {FOLLOW_TIMEOUT_SECONDS:g} s; healing goes on without it",
            )
            return
        finally:
            if watch.pending is not None and watch.pending.done():
                watch.pending = None
    except Exception:
        monitor.log.exception("runner.follow_failed")
        return
    for item in news:
        monitor.log.warning("monitor.alert", alert=item.kind, message=item.message, severity=item.severity.name.lower())
        if monitor.notifier is not None:
            monitor.notifier.alert(
                monitor.name, item.kind, item.message, severity=item.severity, event_kind=EventKind.RUNNER_ALERT
            )
        await monitor.note(item.kind, item.message)
