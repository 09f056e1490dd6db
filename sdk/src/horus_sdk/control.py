"""The trading control: one state machine between the strategy and the broker, steered through files.

The worst case must be "flat and halted", never "trading blind". The bot asks before every order, and
gives the SDK its own ways to cancel orders and close positions; the operator (or Horus) commands it by
writing ``control.json``; the bot says what it does in ``status.json`` (both formats in
:mod:`horus_sdk.control_files`)::

    control = Control("/srv/bot/control", hooks=BrokerHooks(exchange), heartbeat=hb, feeds={"prices": 5.0},
                      trips=Trips(daily_loss_limit=500.0))
    async with control:
        control.reconciled(await exchange.positions())   # until then: RECONCILING, no orders
        while True:
            await control.cycle()                        # top of every cycle
            order = Order("BTC-USD", "buy", 0.1, feed="prices")
            permit = control.permit(order)               # < 5 µs, no I/O, never raises
            control.decision("entry", signal=signal, price_age=age, permit=permit)
            if permit:
                await exchange.send(order)

Modes (:class:`~horus_sdk.control_files.Mode`), least to most restrictive::

    RECONCILING --reconciled()--> ACTIVE <--reduce / resume--> REDUCING
                                    |                             |
                                    +---flatten (command or trip)-+--> FLATTENING --done or incomplete--> HALTED
                                    +---halt (command) or trip----+---------------------------------------> HALTED
    HALTED --resume with a reason (never a restart)--> ACTIVE (or whatever other causes still hold)

The state is a set of *causes*, each with the mode it asks for; the effective mode is the most
restrictive one's (the oldest on a tie), ACTIVE when there is none:

=========== ================================= ======================= =====================================
source      name                              mode                    set by / cleared by
=========== ================================= ======================= =====================================
start       reconciling                       RECONCILING             start / ``reconciled()``
operator    halt, reduce, flatten             HALTED, REDUCING,       control.json / the next command, resume
                                              FLATTENING -> HALTED
trip        failures_reduce                   REDUCING                N rejects or errors in the window
trip        failures_halt                     FLATTENING -> HALTED    M rejects or errors in the window
trip        disconnect_reduce                 REDUCING                broker disconnected that long
trip        disconnect_flatten                FLATTENING -> HALTED    broker disconnected that long; the
                                                                      flatten waits for the reconnect
trip        status_unreadable                 HALTED                  the previous status.json unreadable at
                                                                      start: its latched trips may be lost
trip        unresolved_order                  REDUCING                an order sent and never answered (its
                                                                      lookups found nothing) / resume
trip        reconcile_mismatch                REDUCING                a reconcile that was not clean: the
                                                                      broker disagreed with the bot / resume
daily_loss  daily_loss                        FLATTENING -> HALTED    daily loss limit / the next reset time
=========== ================================= ======================= =====================================

Every trip and every operator command *latches*: it survives a restart of the bot (restored from the
previous ``status.json``), and only a ``resume`` command, which needs a reason, clears it, with no restart.
A daily-loss halt is the exception: it holds until its reset time whatever the operator says, then
clears itself. While FLATTENING (and while HALTED with a flatten still wanted: a halt stops the strategy,
never the closing of positions), only orders the flatten hook places are permitted; when the flatten ends,
done or not, the causes that asked for it become HALTED: a flatten never ends in ACTIVE.

The commands are read by a watcher thread every ``poll_interval``, so a halt is applied (and
acknowledged in ``status.json``) within that time even while the bot's loop is busy or blocked, and
``permit()`` refuses at once. Hooks, which belong to the bot's event loop, run from ``cycle()``.
Background work never raises into the bot: failures are logged on the ``horus_sdk`` logger.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from horus_sdk._runner_link import RunnerLink
from horus_sdk._stacks import Handover, stop_ticker
from horus_sdk.control_files import (
    AUTOMATIC_SOURCES,
    DECISION_LOG_FILE,
    FORMAT_STATUS,
    Command,
    Mode,
    control_path,
    read_commands,
    read_status,
    status_path,
)
from horus_sdk.decisions import DEFAULT_KEEP, DEFAULT_MAX_BYTES, DecisionLog
from horus_sdk.formats import boot_id, write_json_atomic
from horus_sdk.lease import Lease

__all__ = [
    "SOURCES",
    "Cause",
    "ChannelAges",
    "Control",
    "EpochJournal",
    "HandedOver",
    "Hooks",
    "Mode",
    "Order",
    "Permit",
    "Trips",
]

logger = logging.getLogger("horus_sdk")

SOURCES = ("start", "operator", "trip", "daily_loss", "flatten")
"""Where a cause comes from. ``flatten`` is reserved for causes a flatten sets; none does yet."""

EXPOSURE_MAX_BYTES = 64 * 1024
"""The most ``exposure(**words)`` keeps in status.json, as JSON."""
ROUTINE_STATUS_SECONDS = 0.5
"""``cycle()`` rewrites status.json at least this often (without fsync), so its last cycle stays fresh."""
CHANGED_STATUS_SECONDS = 0.1
"""...and at most this often for routine changes (counters, positions, exposure), however fast the bot
cycles. A change of mode, cause or command is written at once, whatever the time."""
_REREAD_SECONDS = 2.0
"""control.json is read again this often even when its stat looks unchanged: a file replaced within the
filesystem's time granularity, reusing a freed inode and the same size, would otherwise go unseen."""
_STOP_JOIN_SECONDS = 5.0
_RESUME_HOLD = "resumed; the daily loss limit holds until {until}"
_RECONCILING_REASON = "reconciling: positions not confirmed yet"
_NO_LEASE_REASON = "standby: this instance does not hold the trading lease (another one may be trading)"
_LOST_LEASE_REASON = "this instance lost its trading lease ({why}): another instance may be trading"
_LEASE_BUSY_LOG_SECONDS = 10.0
_RELATIVE_TOLERANCE = 1e-9  # float noise between a position and the order that closes it


class Hooks(Protocol):
    """What the bot gives ``Control(hooks=...)``: its own broker calls, each run under ``hook_timeout``."""

    async def positions(self) -> Mapping[str, float]:
        """The true open positions, signed quantities by symbol, from the broker."""
        ...

    async def cancel_all(self) -> None:
        """Cancel every open order."""
        ...

    async def flatten(self, positions: Mapping[str, float]) -> None:
        """Send the orders that close ``positions`` (the SDK re-reads positions to see what filled)."""
        ...


class EpochJournal(Protocol):
    """What the Control needs of an order journal to put the lease's epoch into every client order id
    (:class:`~horus_sdk.journal.OrderJournal` is one)."""

    def highest_epoch(self) -> int: ...

    def begin_epoch(self, epoch: int) -> None: ...


class HandedOver(SystemExit):
    """Raised from ``cycle()`` (or ``ready()``) when this instance has given up trading for good: it handed
    the lease to the next version, its runner asked it to stop, or its runner is gone. It is a SystemExit
    with status 0, so that it ends the bot the way a clean stop does (``except Exception`` lets it pass)."""

    def __init__(self, why: str) -> None:
        super().__init__(0)
        self.why = why

    def __str__(self) -> str:
        return self.why


class LeaseLost(SystemExit):
    """Raised from ``cycle()`` when this instance's lease no longer fences anyone out (its file was deleted or
    replaced, so another instance may hold a lease on the new one). The instance has stopped trading. It is a
    SystemExit with status 3, not a clean stop: whatever supervises the bot (its runner, a shell loop,
    systemd) starts it again, and the new process takes the lease only when no one else holds it."""

    EXIT_STATUS = 3

    def __init__(self, why: str) -> None:
        super().__init__(self.EXIT_STATUS)
        self.why = why

    def __str__(self) -> str:
        return self.why


class ChannelAges(Protocol):
    """What ``heartbeat=`` needs: seconds since each channel progressed, safe to call from another thread
    (:class:`horus_sdk.Heartbeat` is one)."""

    def channel_ages(self, now_monotonic: float) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class Order:
    """An order the bot is about to send; ``permit()`` also takes any object or mapping with these names."""

    symbol: str
    side: str  # "buy" or "sell"
    quantity: float  # more than 0
    feed: str | None = None  # the heartbeat channel whose data the order rests on
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Permit:
    """The gate's answer: true when the order may be sent; ``reason`` says why not."""

    allowed: bool
    reason: str
    mode: Mode

    def __bool__(self) -> bool:
        return self.allowed


# One shared answer per mode, so the common path allocates nothing.
_ALLOWED = {mode: Permit(True, "allowed", mode) for mode in Mode}
_ALLOWED_ACTIVE = _ALLOWED[Mode.ACTIVE]
_ALLOWED_REDUCING = _ALLOWED[Mode.REDUCING]


@dataclass(frozen=True)
class Trips:
    """The automatic trips, each configurable; None disables one. Every trip *latches*: it holds through
    restarts until an operator ``resume`` command with a reason (``horus control NAME resume --reason``),
    except the daily loss halt, which holds until ``daily_reset`` and then clears itself.

    ================================= ======= =========================================================
    field                             default what happens
    ================================= ======= =========================================================
    window_seconds                    60      the window in which rejects and errors are counted
    reduce_after_failures             5       that many rejects + errors in the window: REDUCING
    halt_after_failures               10      that many: flatten, then HALTED
    reduce_after_disconnect_seconds   30      broker disconnected that long: REDUCING
    flatten_after_disconnect_seconds  120     that long: flatten once it reconnects, then HALTED
    daily_loss_limit                  None    today's pnl at or below minus this: flatten, then HALTED
                                              until the next ``daily_reset``
    daily_reset                       00:00   "HH:MM", the time the trading day starts ...
    daily_reset_tz                    UTC     ... in this zone (a zoneinfo name: "America/New_York")
    ================================= ======= =========================================================

    A failure is ``control.record_reject()`` or ``control.record_error()``. Each trip fires once at its
    threshold; after a resume, the failures counted before it no longer count.
    """

    window_seconds: float = 60.0
    reduce_after_failures: int | None = 5
    halt_after_failures: int | None = 10
    reduce_after_disconnect_seconds: float | None = 30.0
    flatten_after_disconnect_seconds: float | None = 120.0
    daily_loss_limit: float | None = None
    daily_reset: str = "00:00"
    daily_reset_tz: str = "UTC"

    def __post_init__(self) -> None:
        if not _positive(self.window_seconds):
            raise ValueError(f"window_seconds must be a positive number of seconds, got {self.window_seconds!r}")
        for name in ("reduce_after_failures", "halt_after_failures"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number of 1 or more, or None, got {value!r}")
        for name in ("reduce_after_disconnect_seconds", "flatten_after_disconnect_seconds", "daily_loss_limit"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise ValueError(f"{name} must be a positive number, or None, got {value!r}")
        self.reset_time()
        self.reset_zone()

    def reset_time(self) -> tuple[int, int]:
        """``daily_reset`` as (hour, minute); ValueError when it is not "HH:MM"."""
        hour_text, _, minute_text = self.daily_reset.partition(":")
        try:
            hour, minute = int(hour_text), int(minute_text)
        except ValueError:
            hour = minute = -1
        if not (0 <= hour < 24 and 0 <= minute < 60) or len(minute_text) != 2:
            raise ValueError(f'daily_reset must be a time of day as "HH:MM", got {self.daily_reset!r}')
        return hour, minute

    def reset_zone(self) -> tzinfo:
        if self.daily_reset_tz.upper() in ("UTC", "Z"):
            return UTC  # needs no time zone database
        # Imported here: zoneinfo loads sysconfig's generated data module, which a service that trades
        # in UTC has no reason to carry.
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(self.daily_reset_tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"daily_reset_tz {self.daily_reset_tz!r} is not a known time zone ({exc})") from None

    def next_reset(self, after_wall: float) -> float:
        """The first daily reset after ``after_wall`` (seconds since the epoch)."""
        hour, minute = self.reset_time()
        zone = self.reset_zone()
        local = datetime.fromtimestamp(after_wall, zone)
        day = local.date()
        for _ in range(3):  # today, or tomorrow; one more day when a DST change moved the time
            candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).timestamp()
            if candidate > after_wall:
                return candidate
            day += timedelta(days=1)
        return after_wall + 86400.0


@dataclass(frozen=True)
class Cause:
    """One reason for the mode: ``status.json`` lists them all, and the winning one as ``cause``."""

    source: str
    name: str
    mode: Mode
    reason: str
    since: float  # wall time it began
    latched: bool = False  # holds until a resume (and through restarts)
    until: float | None = None  # wall time it clears itself (the daily loss halt)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "name": self.name,
            "mode": self.mode.value,
            "reason": self.reason,
            "since": self.since,
            "latched": self.latched,
            "until": self.until,
        }

    @classmethod
    def from_json(cls, data: Any) -> Cause:
        """The cause in ``data`` (from a previous status.json); ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"a cause must be an object, got {type(data).__name__}")
        source, name, reason = data.get("source"), data.get("name"), data.get("reason")
        if source not in SOURCES:
            raise ValueError(f"a cause's source must be one of {', '.join(SOURCES)}, got {source!r}")
        if not isinstance(name, str) or not name or not isinstance(reason, str):
            raise ValueError("a cause needs a name and a reason")
        try:
            mode = Mode(str(data.get("mode")))
        except ValueError:
            raise ValueError(f"a cause's mode must be one of {', '.join(Mode)}, got {data.get('mode')!r}") from None
        since, until = data.get("since"), data.get("until")
        if not _time(since) or (until is not None and not _time(until)):
            raise ValueError("a cause's since and until must be times in seconds since the epoch")
        latched = data.get("latched")
        if not isinstance(latched, bool):
            raise ValueError("a cause's latched must be true or false")
        assert isinstance(since, int | float)
        return cls(str(source), name, mode, reason, float(since), latched, None if until is None else float(until))


@dataclass(frozen=True, slots=True)
class _Gate:
    """What ``permit()`` reads: one object replaced whole on every change, so it needs no lock."""

    mode: Mode
    denial: Permit | None  # the answer to every order in RECONCILING and HALTED (and FLATTENING outside it)
    positions: Mapping[str, Any]
    stale: Mapping[str, float]  # stale feed -> its limit, empty when none is
    flatten_may_run: bool = False  # the flatten hook's own orders are allowed


# Set while hooks.flatten runs, to the Control running it: its orders are the only ones FLATTENING permits.
_FLATTENER: contextvars.ContextVar[Control | None] = contextvars.ContextVar("horus_sdk_flattener", default=None)


class Control:
    """The trading control of one service; ``async with Control(dir, ...) as control:`` (or start()/stop()).

    ``control_dir`` holds control.json, status.json and the decision log (created 0o700 if missing).
    ``hooks``: the bot's ``positions()``, ``cancel_all()`` and ``flatten(positions)`` (see :class:`Hooks`),
    each awaited for at most ``hook_timeout`` seconds; without hooks a flatten cannot close anything and
    ends incomplete. ``trips``: the automatic trips (:class:`Trips`). ``heartbeat`` and ``feeds``
    (``{"prices": 5.0}``: channel name -> max age in seconds): an order resting on a stale feed may only
    reduce a position. ``dust``: a quantity at or below it (one number, or one per symbol) counts as
    closed. ``trusted_uids``: who may write control.json (default: this user and root).
    ``flatten_attempts``: how many times the flatten sends orders before it gives up, ``flatten_pause``
    seconds apart (for fills to land). ``decision_log_max_bytes`` and ``decision_log_keep``: the decision
    log's rotation (:class:`~horus_sdk.decisions.DecisionLog`). ``wall`` and ``monotonic``: the clocks,
    for tests.
    """

    def __init__(
        self,
        control_dir: str | os.PathLike[str],
        *,
        hooks: Hooks | None = None,
        trips: Trips | None = None,
        heartbeat: ChannelAges | None = None,
        feeds: Mapping[str, float] | None = None,
        dust: float | Mapping[str, float] = 0.0,
        poll_interval: float = 0.1,
        trusted_uids: Collection[int] | None = None,
        decision_log_max_bytes: int = DEFAULT_MAX_BYTES,
        decision_log_keep: int = DEFAULT_KEEP,
        flatten_attempts: int = 5,
        flatten_pause: float = 0.5,
        hook_timeout: float = 10.0,
        lease: str | os.PathLike[str] | None = None,
        journal: EpochJournal | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _positive(poll_interval):
            raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        if not _positive(hook_timeout):
            raise ValueError(f"hook_timeout must be a positive number of seconds, got {hook_timeout!r}")
        if isinstance(flatten_attempts, bool) or not isinstance(flatten_attempts, int) or flatten_attempts < 1:
            raise ValueError(f"flatten_attempts must be a whole number of 1 or more, got {flatten_attempts!r}")
        if not (_positive(flatten_pause) or flatten_pause == 0):
            raise ValueError(f"flatten_pause must be 0 or more seconds, got {flatten_pause!r}")
        dust_values = dust.values() if isinstance(dust, Mapping) else [dust]
        if any(not (_positive(value) or value == 0) for value in dust_values):
            raise ValueError(f"dust must be 0 or more, got {dust!r}")
        feeds = dict(feeds or {})
        for feed, limit in feeds.items():
            if not _positive(limit):
                raise ValueError(f"feeds[{feed!r}] must be a positive number of seconds, got {limit!r}")
        if feeds and heartbeat is None:
            raise ValueError("feeds are heartbeat channels: give heartbeat= too, or their age cannot be known")
        self.control_dir = Path(control_dir)
        self.hooks = hooks
        self.trips = trips if trips is not None else Trips()
        self.heartbeat = heartbeat
        self.feeds: dict[str, float] = feeds
        self.dust = dust
        self.poll_interval = float(poll_interval)
        self.trusted_uids = frozenset(trusted_uids) if trusted_uids is not None else frozenset({os.getuid(), 0})
        self.flatten_attempts = flatten_attempts
        self.flatten_pause = float(flatten_pause)
        self.hook_timeout = float(hook_timeout)
        self.decisions = DecisionLog(
            self.control_dir / DECISION_LOG_FILE, max_bytes=decision_log_max_bytes, keep=decision_log_keep
        )
        self._wall = wall
        self._monotonic = monotonic

        self.permitted = 0
        """Orders ``permit()`` allowed since start (plain counts: the gate takes no lock)."""
        self.denied = 0

        self._lock = threading.Lock()  # around every change of state; permit() never takes it
        self._write_lock = threading.Lock()  # one status.json writer at a time (they share a temp file)
        self._causes: list[Cause] = []
        self._mode = Mode.RECONCILING
        self._gate = _Gate(Mode.RECONCILING, Permit(False, _RECONCILING_REASON, Mode.RECONCILING), {}, {}, False)
        self._positions: dict[str, Any] = {}
        self._exposure_words: dict[str, Any] = {}
        self._applied_seq = 0
        self._seen_seq = 0  # the highest seq applied or refused
        self._ignored_seq: int | None = None
        self._last_control: dict[str, Any] | None = None
        self._control_error: str | None = None
        self._control_stat: tuple[int, ...] | None = None
        self._control_read_at = -math.inf
        self._rejects = 0
        self._errors = 0
        self._failures: deque[tuple[float, str]] = deque()
        self._broker_connected: bool | None = None  # None: the bot never said
        self._broker_since: float | None = None
        self._broker_since_monotonic: float | None = None
        self._broker_reason: str | None = None
        self._disconnect_fired: set[str] = set()  # trips already fired in this disconnection
        self._daily_pnl: float | None = None
        self._stale_ages: dict[str, float] = {}
        self._flatten: dict[str, Any] | None = None
        self._cancel_pending = False
        self._resumed_during_flatten = False
        self._hooks_running = False
        self._last_cycle_at: float | None = None
        self._last_cycle_monotonic: float | None = None
        self._started_at: float | None = None
        self._started_real_monotonic = time.monotonic()
        self._boot_id = boot_id()
        self._version = 0  # bumped by every change that must reach status.json at once
        self._written_version = -1
        self._dirty = False  # a routine change (counters, positions) for the next cycle's write
        self._status_written_at = -math.inf
        self._warned: set[str] = set()
        self._reconcile: dict[str, Any] | None = None  # what the last reconcile found, for status.json
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handover = Handover(self.poll_interval)
        self._ticker: asyncio.Task[None] | None = None
        # Under a runner (horus_sdk.runner) or with a lease of its own, this instance trades only while it
        # holds the lease; until then it is a standby that writes none of the files it shares with the
        # instance that trades (status.json, the decisions it has not made).
        self._link = RunnerLink.from_environment()
        lease_path = lease if lease is not None else (self._link.lease_path if self._link is not None else None)
        self._lease = Lease(lease_path) if lease_path is not None else None
        self._lease_lost: str | None = None  # why every order is refused once the lease stopped fencing
        self._journal = journal
        self._writes_status = self._lease is None
        self._ready_told = False
        self._trading_told = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> Control:
        self.start()
        # The loop hands the watcher its turns (see horus_sdk._stacks.Handover): a thread that wakes on its
        # own timer beside a busy loop races it for the GIL and slows it. Its own timer, a little later than
        # the turns, fires only when the loop has stopped ticking, so a stuck bot is still halted.
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="horus-control")
        if self.running:
            self._handover.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handover.stop()
        ticker, self._ticker = self._ticker, None
        await stop_ticker(ticker)
        self.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self._handover.offer(time.monotonic())

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Restore what latched, read control.json, write status.json and start the watcher thread.

        Raises OSError when the control dir cannot be created: a bot that cannot be halted must not start.
        """
        if self.running:
            raise RuntimeError("this Control is already running")
        if not self.control_dir.is_dir():
            self.control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._lease is not None and not self._lease.held:
            # A standby: it reads and writes nothing the trading instance owns until it is promoted.
            self._gate = _Gate(Mode.RECONCILING, Permit(False, _NO_LEASE_REASON, Mode.RECONCILING), {}, {}, False)
            if self._link is not None:
                self._link.send("hello", pid=os.getpid(), version=self._link.version)
            return
        self._start_holding()

    def _start_holding(self) -> None:
        """The start of an instance that may trade: restore, read control.json, write status.json, watch."""
        self._writes_status = True
        now = self._wall()
        self._stop.clear()
        self._control_stat = None  # read control.json now, whatever was seen before a stop
        self._started_real_monotonic = time.monotonic()
        with self._lock:
            self._started_at = now
            self._causes = [Cause("start", "reconciling", Mode.RECONCILING, _RECONCILING_REASON, now)]
            restored = self._restore_previous_status(now)
            self._publish()
            self._record(
                "control.start",
                pid=os.getpid(),
                restored=[c.to_json() for c in restored],
                applied_seq=self._applied_seq,
            )
        self._poll_control()
        self._write_status(fsync=True)
        self._start_watcher()

    def _start_watcher(self) -> None:
        self._stop.clear()
        self._handover = Handover(self.poll_interval)
        self._thread = threading.Thread(target=self._watch, name="horus-control", daemon=True)
        self._thread.start()
        if self._ticker is not None:
            self._handover.open()

    def _stop_watcher(self) -> None:
        self._stop.set()
        self._handover.stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(_STOP_JOIN_SECONDS, 10 * self.poll_interval))

    def stop(self) -> None:
        """Stop the watcher and write the last status.json; the latched causes stay in it for the next start.
        A lease held is given back."""
        if self._started_at is not None and self._writes_status:
            self._stop_watcher()
            self._write_status(fsync=True)
        self.decisions.close()
        if self._lease is not None:
            self._lease.release()

    # -- what the bot asks --------------------------------------------------------------------------------

    def permit(self, order: Any) -> Permit:
        """May ``order`` be sent now? Never raises: a gate that fails denies.

        ``order`` has ``symbol``, ``side`` ("buy"/"sell"), ``quantity`` (> 0) and optionally ``feed``, as
        attributes (:class:`Order`) or keys. RECONCILING and HALTED deny all; FLATTENING allows only the
        flatten hook's own orders; REDUCING, and ACTIVE on a stale feed, allow only an order that reduces a
        position without reversing it.
        """
        try:
            gate = self._gate
            if type(order) is Order:
                symbol, side, quantity, feed = order.symbol, order.side, order.quantity, order.feed
            elif isinstance(order, Mapping):
                symbol, side, quantity, feed = order["symbol"], order["side"], order["quantity"], order.get("feed")
            else:
                symbol, side, quantity = order.symbol, order.side, order.quantity
                feed = getattr(order, "feed", None)
            if side != "buy" and side != "sell":
                raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
            if not quantity > 0:
                raise ValueError(f"quantity must be more than 0, got {quantity!r}")
            mode = gate.mode
            if mode is Mode.ACTIVE:
                stale = gate.stale
                on_stale_feed = stale and (feed in stale if feed is not None else True)
                if on_stale_feed and not _reduces(gate.positions, symbol, side, quantity):
                    self.denied += 1
                    return self._stale_denial(stale, feed, symbol, side, quantity)
                self.permitted += 1
                return _ALLOWED_ACTIVE
            if mode is Mode.REDUCING:
                if _reduces(gate.positions, symbol, side, quantity):
                    self.permitted += 1
                    return _ALLOWED_REDUCING
                self.denied += 1
                position = gate.positions.get(symbol, 0)
                return Permit(
                    False,
                    f"reducing: only an order that reduces a position may be sent "
                    f"({side} {quantity} {symbol} with a position of {position})",
                    mode,
                )
            if gate.flatten_may_run and _FLATTENER.get() is self:
                self.permitted += 1
                return _ALLOWED[mode]
            self.denied += 1
            denial = gate.denial
            return denial if denial is not None else Permit(False, str(mode), mode)
        except Exception as exc:
            self.denied += 1
            return Permit(False, f"the gate failed: {exc}", self._gate.mode)

    def _stale_denial(self, stale: Mapping[str, float], feed: str | None, symbol: str, side: str, qty: Any) -> Permit:
        name = feed if feed is not None else next(iter(stale))
        return Permit(
            False,
            f"feed {name!r} is older than its {stale[name]:g} s limit: no new exposure ({side} {qty} {symbol})",
            Mode.ACTIVE,
        )

    @property
    def mode(self) -> Mode:
        """The effective mode now."""
        return self._gate.mode

    @property
    def causes(self) -> tuple[Cause, ...]:
        return tuple(self._causes)

    @property
    def cause(self) -> Cause | None:
        """The winning cause, None in ACTIVE."""
        with self._lock:
            return self._winner()

    @property
    def applied_seq(self) -> int:
        return self._applied_seq

    @property
    def decision_log_path(self) -> Path:
        return self.decisions.path

    def status(self) -> dict[str, Any]:
        """What status.json says now (a fresh copy)."""
        with self._lock:
            return self._status_json()

    # -- what the bot tells --------------------------------------------------------------------------------

    def reconciled(self, positions: Mapping[str, float] | None = None, *, report: Any = None) -> None:
        """The bot knows its true positions (given here, or by ``set_positions``): RECONCILING ends.

        ``report`` is what the reconcile found (``horus_sdk.reconcile.Reconciliation``): its ``to_json()`` is
        shown in status.json's ``reconcile``, and one that was not clean (a quantity the broker disagreed on,
        whose positions win; an order the bot thought open that the broker does not know) latches REDUCING
        until a resume, so that a person looks before the bot adds exposure on a memory that was wrong.
        """
        with self._lock:
            if positions is not None:
                self._set_positions(positions)
            if report is not None:
                self._note_reconcile(report)
                if not getattr(report, "clean", True) and not self._has("reconcile_mismatch"):
                    reason = f"the broker disagreed with the bot's memory: {_first_difference(report)}"
                    self._trip(Cause("trip", "reconcile_mismatch", Mode.REDUCING, reason, self._wall(), latched=True))
            before = len(self._causes)
            self._causes = [c for c in self._causes if not (c.source == "start" and c.name == "reconciling")]
            if len(self._causes) != before:
                self._changed()
        self._flush()

    def reconcile_incomplete(self, report: Any) -> None:
        """A reconcile that could not finish (the broker's report was incomplete): shown in status.json's
        ``reconcile``; the bot stays in RECONCILING and sends nothing on partial knowledge."""
        with self._lock:
            self._note_reconcile(report)
            self._changed()
        self._flush()

    def _note_reconcile(self, report: Any) -> None:
        self._reconcile = report.to_json()
        self._record("control.reconcile", summary=report.summary(), clean=bool(report.clean))

    def set_positions(self, positions: Mapping[str, float]) -> None:
        """The open positions, signed quantities by symbol (what REDUCING and stale feeds judge by)."""
        with self._lock:
            self._set_positions(positions)

    def exposure(self, **words: Any) -> None:
        """Free-form words about the open exposure, shown in status.json's ``exposure`` with the positions.

        At most ``EXPOSURE_MAX_BYTES`` of JSON: more is replaced by a note saying so, because Horus reads a
        status.json of at most 1 MiB and a bot must never make its own status unreadable."""
        try:
            size = len(json.dumps(words, default=str))
        except (TypeError, ValueError, RecursionError) as exc:
            words, size = {"unreadable": f"exposure words are not JSON: {exc}"}, 0
        if size > EXPOSURE_MAX_BYTES:
            words = {"too_large": f"{size} bytes of exposure words, more than the {EXPOSURE_MAX_BYTES} kept"}
        with self._lock:
            self._exposure_words = dict(words)
            self._dirty = True

    def record_reject(self, reason: str) -> None:
        """The broker rejected an order: counts toward the failure trips."""
        self._record_failure("reject", str(reason))

    def record_error(self, error: BaseException | str) -> None:
        """An order call failed: counts toward the failure trips."""
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
        self._record_failure("error", text)

    def broker_connected(self) -> None:
        with self._lock:
            if self._broker_connected is not True:
                self._broker_connected = True
                self._broker_since = self._wall()
                self._broker_since_monotonic = self._monotonic()
                self._broker_reason = None
                self._disconnect_fired.clear()
                self._record("control.broker", connected=True)
                self._changed()
        self._flush()

    def broker_disconnected(self, reason: str = "") -> None:
        with self._lock:
            if self._broker_connected is not False:
                self._broker_connected = False
                self._broker_since = self._wall()
                self._broker_since_monotonic = self._monotonic()
                self._broker_reason = str(reason) or None
                self._record("control.broker", connected=False, reason=self._broker_reason)
                self._changed()
            elif reason and reason != self._broker_reason:
                self._broker_reason = str(reason)
                self._dirty = True
        self._flush()

    def order_unresolved(self, client_order_id: str, why: str) -> None:
        """An order was sent and nothing tells what became of it: REDUCING, latched until a resume (and
        through restarts), once per order id. :func:`horus_sdk.orders.submit` calls it."""
        # The id (A-Za-z0-9_-, no spaces) opens the reason, which is how a restored cause is known again.
        opening = f"order {client_order_id} "
        with self._lock:
            if any(c.name == "unresolved_order" and c.reason.startswith(opening) for c in self._causes):
                return
            reason = f"{opening}is unresolved ({why}): only orders that reduce a position until it is resolved"
            self._trip(Cause("trip", "unresolved_order", Mode.REDUCING, reason, self._wall(), latched=True))
        self._flush()

    def daily_pnl(self, pnl: float) -> None:
        """Today's realized plus unrealized pnl (negative: a loss), for the daily loss limit. After the
        daily reset, give the new day's figure: yesterday's loss reported again trips again."""
        limit = self.trips.daily_loss_limit
        with self._lock:
            self._daily_pnl = float(pnl)
            self._dirty = True
            if limit is not None and pnl <= -limit and not self._has("daily_loss"):
                now = self._wall()
                until = self.trips.next_reset(now)
                reason = (
                    f"today's loss of {-float(pnl):g} reached the daily loss limit of {limit:g}: "
                    f"flatten and halt until {_local_time(until, self.trips.reset_zone())}"
                )
                self._trip(Cause("daily_loss", "daily_loss", Mode.FLATTENING, reason, now, True, until))
        self._flush()

    def decision(self, kind: str, /, **context: Any) -> None:
        """Append one decision to the log: ``{"at", "kind", "mode", **context}`` (a Permit shows as
        ``{"allowed", "reason", "mode"}``). ``at``, ``kind`` and ``mode`` are the SDK's own."""
        self._record(kind, **context)

    def cycle(self) -> _Cycle:
        """Mark a cycle: ``await control.cycle()`` at the top of every cycle, or ``async with
        control.cycle():`` around it (then its end is a boundary too).

        It marks the cycle, applies the time-based trips, runs a pending cancel_all or flatten (the flatten
        may take several attempts: it runs inside this call), and keeps status.json fresh. Never raises,
        but a cancellation propagates, and so does :class:`HandedOver`: under a runner the boundary
        between two cycles is where trading passes from one instance to the next (see :meth:`ready`).
        """
        return _Cycle(self)

    async def ready(self) -> None:
        """Say that this instance is warmed up, and wait until it may trade; returns at once when it may.

        Without a runner or a lease it returns at once. Under a runner (``horus_sdk.runner``) every
        instance starts as a standby: ``permit()`` refuses every order and nothing shared is written. Load
        state, warm up and reconcile read-only first, then await this: the runner hands over when the
        trading instance reaches a cycle boundary, this instance takes the lease (a larger epoch than any
        before, put into the journal's client order ids when ``journal=`` was given) and starts for real:
        the latched causes, control.json and status.json as the previous instance left them. A standby's
        first ``cycle()`` calls this by itself. Raises :class:`HandedOver` when the runner went away first.
        """
        lease = self._lease
        if lease is None or lease.held:
            return
        link = self._link
        if link is not None:
            if not self._ready_told:
                self._ready_told = link.send("ready")
            if not await link.wait_for_promotion():
                raise HandedOver("the runner stopped or went away before promoting this standby")
        epoch = await self._take_lease(lease)
        self._start_holding()
        if self._ticker is not None:
            self._handover.open()
        logger.info("control.promoted epoch=%s pid=%s", epoch, os.getpid())
        if link is not None:
            link.mark_holding()
            link.send("promoted", epoch=epoch)

    @property
    def standby(self) -> bool:
        """True while this instance may not trade because it does not hold the lease."""
        return self._lease is not None and not self._lease.held

    @property
    def epoch(self) -> int | None:
        """The lease's epoch while it is held; None without a lease or while not holding it."""
        return self._lease.epoch if self._lease is not None else None

    async def _take_lease(self, lease: Lease) -> int:
        """The lease, waiting while another holder has it; its epoch goes into the journal's ids."""
        waited_from = time.monotonic()
        logged = waited_from
        while True:
            floor = self._journal.highest_epoch() if self._journal is not None else 0
            epoch = lease.try_acquire(at_least=floor)
            if epoch is not None:
                if self._journal is not None:
                    try:
                        self._journal.begin_epoch(epoch)
                    except BaseException:
                        lease.release()
                        raise
                return epoch
            if self._link is not None and self._link.gone.is_set():
                raise HandedOver("the runner went away while this instance waited for the lease")
            now = time.monotonic()
            if now - logged >= _LEASE_BUSY_LOG_SECONDS:
                logged = now
                logger.warning(
                    "control.lease_busy waited=%.0fs holder=%s (another instance holds the trading lease)",
                    now - waited_from,
                    lease.holder(),
                )
            await asyncio.sleep(0.01)

    async def _begin_cycle(self) -> None:
        if self._lease is not None:
            if not self._lease.held:
                await self.ready()  # a standby's first cycle: it waits here to be promoted
            else:
                self._stop_unless_still_fenced(self._lease)
                await self._end_cycle()
        await self._mark_cycle()
        link = self._link
        if link is not None and not self._trading_told and self._mode is not Mode.RECONCILING:
            # The first cycle with its reconcile done, under the lease: the runner's handover is complete.
            self._trading_told = link.send("trading", epoch=self.epoch)

    def _stop_unless_still_fenced(self, lease: Lease) -> None:
        """At every boundary: a lease whose file is gone fences no one out, so this instance stops trading
        (every order refused from here) and ends, for its supervisor to start it again."""
        why = lease.lost()
        if why is None:
            return
        self._stop_watcher()
        lease.release()
        with self._lock:
            self._writes_status = False
            self._lease_lost = _LOST_LEASE_REASON.format(why=why)
            self._publish()
        logger.error("control.lease_lost %s; this instance stopped trading and exits", why)
        raise LeaseLost(f"this instance stopped trading: {why}, so another instance may hold the lease")

    async def _end_cycle(self) -> None:
        """A cycle boundary: where a handover the runner asked for happens."""
        link, lease = self._link, self._lease
        if link is None or lease is None or not lease.held or not link.handover_wanted:
            return
        epoch = lease.epoch
        self._stop_watcher()
        self._write_status(fsync=True)  # what the next instance starts from
        with self._lock:
            self._writes_status = False
        lease.release()
        link.mark_released()
        with self._lock:
            self._publish()
        link.send("released", epoch=epoch, at=self._wall())
        logger.info("control.released epoch=%s pid=%s", epoch, os.getpid())
        if link.exit_after_release:
            why = "its runner is gone" if link.gone.is_set() else "its runner asked it to stop"
            raise HandedOver(f"this instance stopped trading at a cycle boundary: {why}")
        if await link.wait_for_verdict() != "resume":
            raise HandedOver(f"this instance handed trading over to the next one after epoch {epoch}")
        # The new version failed to take over: trade on, with a new epoch (the failed one may have used its).
        epoch = await self._take_lease(lease)
        with self._lock:
            self._writes_status = True
            self._changed()
        self._start_watcher()
        link.mark_holding()
        link.send("resumed", epoch=epoch)
        logger.warning("control.resumed epoch=%s (the new version did not take over)", epoch)

    async def _mark_cycle(self) -> None:
        try:
            first = self._last_cycle_at is None  # news: the daemon judges a stuck loop by it
            self._last_cycle_at = self._wall()
            self._last_cycle_monotonic = self._monotonic()
            with self._lock:
                self._evaluate_clock()
            self._flush()
            if not self._hooks_running:
                self._hooks_running = True
                try:
                    await self._run_hooks()
                finally:
                    self._hooks_running = False
            since = self._monotonic() - self._status_written_at
            if first or since >= ROUTINE_STATUS_SECONDS or (self._dirty and since >= CHANGED_STATUS_SECONDS):
                self._write_status(fsync=self._version != self._written_version)
        except Exception as exc:
            self._warn_once(f"cycle {type(exc).__name__}", "control.cycle_failed error=%r", exc)

    # -- state changes (called with self._lock held) ------------------------------------------------------

    def _winner(self) -> Cause | None:
        if not self._causes:
            return None
        return max(self._causes, key=lambda c: (c.mode.rank, -c.since))

    def _has(self, name: str) -> bool:
        return any(c.name == name for c in self._causes)

    def _changed(self) -> None:
        """Something status.json must show at once: publish the gate and mark it for an fsynced write."""
        self._publish()
        self._version += 1

    def _publish(self) -> None:
        winner = self._winner()
        mode = winner.mode if winner is not None else Mode.ACTIVE
        if self._lease is not None and not self._lease.held:
            refusal = Permit(False, self._lease_lost or _NO_LEASE_REASON, Mode.RECONCILING)
            self._gate = _Gate(Mode.RECONCILING, refusal, self._positions, {}, False)
            return
        denial: Permit | None = None
        if mode is Mode.RECONCILING:
            denial = Permit(False, _RECONCILING_REASON, mode)
        elif mode is Mode.HALTED and winner is not None:
            denial = Permit(False, f"halted: {winner.reason}", mode)
        elif mode is Mode.FLATTENING and winner is not None:
            denial = Permit(False, f"flattening: only the flatten's own orders may be sent ({winner.reason})", mode)
        stale = {feed: self.feeds[feed] for feed in self._stale_ages}
        self._gate = _Gate(mode, denial, self._positions, stale, self._flatten_may_run(mode))
        if mode is not self._mode:
            before, self._mode = self._mode, mode
            described = winner.to_json() if winner is not None else None
            self._record("control.mode", previous=before, cause=described)
            # Stricter is news for whoever reads the service's log; freer again is routine.
            logger.log(
                logging.WARNING if mode.rank > before.rank else logging.INFO,
                "control.mode from=%s to=%s cause=%s reason=%s",
                before,
                mode,
                f"{winner.source}/{winner.name}" if winner else None,
                winner.reason if winner else None,
            )

    def _set_positions(self, positions: Mapping[str, Any]) -> None:
        self._positions = {str(symbol): quantity for symbol, quantity in positions.items()}
        self._dirty = True
        self._publish()

    def _trip(self, cause: Cause) -> None:
        self._causes.append(cause)
        if cause.mode is Mode.FLATTENING:
            self._flatten_wanted()
        self._record("control.trip", trip=cause.to_json())
        logger.warning("control.trip name=%s mode=%s reason=%s", cause.name, cause.mode, cause.reason)
        self._changed()
        if self._link is not None and cause.source in AUTOMATIC_SOURCES:
            self._link.send("tripped", cause=cause.to_json())  # a new version on probation is rolled back

    def _flatten_wanted(self) -> None:
        if self._flatten is None or self._flatten.get("state") != "running":
            self._flatten = _flatten_record("pending")

    def _record_failure(self, kind: str, text: str) -> None:
        with self._lock:
            now = self._monotonic()
            if kind == "reject":
                self._rejects += 1
            else:
                self._errors += 1
            self._failures.append((now, text))
            self._prune_failures(now)
            self._dirty = True
            count = len(self._failures)
            window = self.trips.window_seconds
            reason = f"{count} rejects or errors in {window:g} s (last: {text})"
            # Each one is in the decision log, so that an incident can quote what the broker said.
            self._record("control.failure", failure=kind, text=text, in_window=count)
            wall = self._wall()
            halt_at = self.trips.halt_after_failures
            if halt_at is not None and count >= halt_at and not self._has("failures_halt"):
                self._trip(Cause("trip", "failures_halt", Mode.FLATTENING, reason, wall, latched=True))
            reduce_at = self.trips.reduce_after_failures
            if reduce_at is not None and count >= reduce_at and not self._has("failures_reduce"):
                self._trip(Cause("trip", "failures_reduce", Mode.REDUCING, reason, wall, latched=True))
        self._flush()

    def _prune_failures(self, now: float) -> None:
        horizon = now - self.trips.window_seconds
        while self._failures and self._failures[0][0] <= horizon:
            self._failures.popleft()

    def _evaluate_clock(self) -> None:
        """The trips that fire with time alone: a disconnection that lasts, a daily loss halt that ends."""
        now_wall, now = self._wall(), self._monotonic()
        self._prune_failures(now)
        if self._broker_connected is False and self._broker_since_monotonic is not None:
            down = now - self._broker_since_monotonic
            why = f" ({self._broker_reason})" if self._broker_reason else ""
            for name, limit, mode, then in (
                ("disconnect_reduce", self.trips.reduce_after_disconnect_seconds, Mode.REDUCING, ""),
                (
                    "disconnect_flatten",
                    self.trips.flatten_after_disconnect_seconds,
                    Mode.FLATTENING,
                    ": flatten once it reconnects, then halt",
                ),
            ):
                if limit is not None and down >= limit and name not in self._disconnect_fired:
                    self._disconnect_fired.add(name)
                    if not self._has(name):
                        reason = f"the broker has been disconnected for {limit:g} s{why}{then}"
                        self._trip(Cause("trip", name, mode, reason, now_wall, latched=True))
        ended = [c for c in self._causes if c.until is not None and now_wall >= c.until]
        if ended:
            self._causes = [c for c in self._causes if c not in ended]
            for cause in ended:
                self._record("control.trip", cleared=cause.to_json(), why="its time ran out")
                logger.warning("control.trip_cleared name=%s until=%s", cause.name, cause.until)
            self._changed()

    def _apply_command(self, command: Command, *, newest: bool = True) -> None:
        """A command read from control.json: applied once, in seq order, unless it expired first."""
        if command.seq <= self._seen_seq:
            # A queued command already applied is expected; a newest one older than what was seen is a
            # file put back by hand or by a backup: said once.
            if newest and command.seq < self._seen_seq and self._ignored_seq != command.seq:
                self._ignored_seq = command.seq
                self._record("control.command", seq=command.seq, command=command.command, outcome="ignored")
                logger.info(
                    "control.command_ignored seq=%s newest=%s (an older command than one already seen)",
                    command.seq,
                    self._seen_seq,
                )
            return
        self._seen_seq = command.seq
        now = self._wall()
        if command.expired(now):
            assert command.expires_at is not None
            reason = f"expired at {_utc_time(command.expires_at)}"
            self._last_control = {
                "seq": command.seq,
                "command": command.command,
                "outcome": "refused",
                "reason": reason,
                "at": now,
            }
            self._record(
                "control.command",
                seq=command.seq,
                command=command.command,
                issued_by=command.issued_by,
                outcome="refused",
                reason=reason,
            )
            logger.warning("control.command_refused seq=%s command=%s reason=%s", command.seq, command.command, reason)
            self._changed()
            return
        outcome_reason = command.reason
        operator_free = [c for c in self._causes if c.source != "operator"]
        if command.command == "resume":
            held = [c for c in operator_free if c.source == "daily_loss" and c.until is not None and now < c.until]
            cleared = [c for c in operator_free if c.latched and c not in held]
            self._causes = [c for c in operator_free if c not in cleared]
            self._failures.clear()  # the failures the operator has just looked at must not trip again
            # A flatten's record stays in the decision log; status.json shows the present, which the
            # operator has just accepted. A running flatten stops before its next attempt.
            if self._flatten is not None:
                if self._flatten.get("state") == "running":
                    self._resumed_during_flatten = True
                else:
                    self._flatten = None
            if held:
                outcome_reason = _RESUME_HOLD.format(until=_local_time(held[0].until or now, self.trips.reset_zone()))
            for cause in cleared:
                self._record("control.trip", cleared=cause.to_json(), why="resumed by the operator")
        else:
            self._causes = [
                *operator_free,
                Cause("operator", command.command, command.mode, command.reason, now, latched=True),
            ]
            if command.command == "halt":
                self._cancel_pending = True
            elif command.command == "flatten":
                self._flatten_wanted()
        self._applied_seq = command.seq
        self._last_control = {
            "seq": command.seq,
            "command": command.command,
            "outcome": "applied",
            "reason": outcome_reason,
            "at": now,
        }
        self._record(
            "control.command",
            seq=command.seq,
            command=command.command,
            issued_by=command.issued_by,
            outcome="applied",
            reason=command.reason,
        )
        logger.warning(
            "control.command_applied seq=%s command=%s issued_by=%s reason=%s",
            command.seq,
            command.command,
            command.issued_by,
            command.reason,
        )
        self._changed()

    def _restore_previous_status(self, now: float) -> list[Cause]:
        """Bring back what latched in the previous run's status.json, and the seqs it had seen."""
        try:
            _written_by_this_user(status_path(self.control_dir))
            previous = read_status(self.control_dir)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            return self._restore_failed(now, str(exc))
        applied = previous.get("applied_seq")
        if isinstance(applied, int) and _whole(applied):
            self._applied_seq = self._seen_seq = applied
        last = previous.get("control")
        if isinstance(last, dict):
            self._last_control = last
            last_seq = last.get("seq")
            if isinstance(last_seq, int) and _whole(last_seq):
                self._seen_seq = max(self._seen_seq, last_seq)
        latched = previous.get("latched", [])
        restored: list[Cause] = []
        try:
            if not isinstance(latched, list):
                raise ValueError("no list of latched causes")
            for item in latched:
                cause = Cause.from_json(item)
                if cause.until is not None and now >= cause.until:
                    continue  # a daily loss halt whose reset time has passed
                restored.append(cause)
        except ValueError as exc:
            return self._restore_failed(now, f"{status_path(self.control_dir)}: {exc}")
        for cause in restored:
            self._causes.append(cause)
            if cause.mode is Mode.FLATTENING:
                self._flatten_wanted()  # the previous run did not finish its flatten
            if cause.source == "operator" and cause.name == "halt":
                self._cancel_pending = True  # orders the previous run left open are cancelled again
        if restored:
            logger.warning("control.restored causes=%s", ", ".join(f"{c.source}/{c.name}" for c in restored))
        return restored

    def _restore_failed(self, now: float, why: str) -> list[Cause]:
        # Its latched trips cannot be known, and a restart must never un-halt a bot: halt until a resume.
        cause = Cause(
            "trip",
            "status_unreadable",
            Mode.HALTED,
            f"the previous status.json could not be read ({why}), so a halt it held may be lost: "
            "check the bot, then resume",
            now,
            latched=True,
        )
        self._causes.append(cause)
        self._record("control.trip", trip=cause.to_json())
        logger.error("control.previous_status_unreadable error=%s", why)
        return [cause]

    # -- the watcher thread -------------------------------------------------------------------------------

    def _watch(self) -> None:
        handover = self._handover
        while True:
            # With the loop's ticker (async with), turns come every poll_interval and this timer, half a poll
            # later, only when the loop has stopped; without it (start()), the timer is the poll.
            handover.wait(self.poll_interval * (1.5 if self._ticker is not None else 1.0))
            if self._stop.is_set() or handover.stopped:
                return
            try:
                self._poll_control()
                with self._lock:
                    self._evaluate_clock()
                self._evaluate_feeds()
                self._flush()
            except Exception as exc:
                self._warn_once(f"watch {type(exc).__name__}", "control.watch_failed error=%r", exc)

    def _poll_control(self) -> None:
        path = control_path(self.control_dir)
        try:
            st = os.stat(path)
            signature: tuple[int, ...] | None = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            signature = None
        except OSError:
            signature = (-1,)  # read it, and say why it cannot be
        now = time.monotonic()
        if signature == self._control_stat and now - self._control_read_at < _REREAD_SECONDS:
            return
        self._control_stat, self._control_read_at = signature, now
        commands: list[Command] = []
        error: str | None = None
        try:
            # The commands still queued (written while this service was not reading), then the newest.
            commands = read_commands(self.control_dir, trusted_uids=self.trusted_uids)
        except FileNotFoundError:
            pass  # no command yet, or it was removed: the last one read stays in force
        except (OSError, ValueError) as exc:
            error = str(exc)
        with self._lock:
            if error != self._control_error:
                self._control_error = error
                if error is not None:
                    self._record("control.command", outcome="unreadable", error=error)
                    logger.error("control.control_file_unreadable error=%s (the last good command stays)", error)
                self._changed()
            for index, command in enumerate(commands):
                self._apply_command(command, newest=index == len(commands) - 1)

    def _evaluate_feeds(self) -> None:
        if self.heartbeat is None or not self.feeds:
            return
        now = time.monotonic()  # the heartbeat's clock, whatever clock this Control was given
        try:
            ages = self.heartbeat.channel_ages(now)
        except Exception as exc:
            self._warn_once("channel_ages", "control.channel_ages_failed error=%r", exc)
            return
        stale: dict[str, float] = {}
        for feed, limit in self.feeds.items():
            age = ages.get(feed)
            if age is None:
                age = now - self._started_real_monotonic  # never progressed: judged from the start
            if age > limit:
                stale[feed] = age
        with self._lock:
            became = set(stale) - set(self._stale_ages)
            recovered = set(self._stale_ages) - set(stale)
            self._stale_ages = stale
            if became or recovered:
                self._record(
                    "control.stale",
                    stale={feed: round(age, 3) for feed, age in stale.items()},
                    became_stale=sorted(became),
                    fresh_again=sorted(recovered),
                )
                if became:
                    logger.warning("control.feed_stale feeds=%s", ",".join(sorted(became)))
                self._changed()

    # -- hooks (on the bot's event loop, from cycle()) -----------------------------------------------------

    async def _run_hooks(self) -> None:
        if self._cancel_pending:
            self._cancel_pending = False
            await self._cancel_all_once()
        if self._flatten_due():
            try:
                await self._run_flatten()
            except asyncio.CancelledError:
                with self._lock:  # the bot is being stopped: the next cycle (or start) goes on with it
                    if self._flatten is not None and self._flatten.get("state") == "running":
                        self._flatten = {**self._flatten, "state": "pending"}
                        self._changed()
                raise
            except Exception as exc:
                remaining, dust = self._split(self._positions)
                attempts = int((self._flatten or {}).get("attempts") or 0)
                self._finish_flatten("incomplete", attempts, remaining, dust, f"the flatten broke: {_describe(exc)}")

    async def _cancel_all_once(self) -> None:
        if self.hooks is None:
            self._warn_once("no hooks cancel", "control.cancel_all_skipped reason=%s", "no hooks were given")
            return
        try:
            await self._call_hook("cancel_all")
        except Exception as exc:
            self._record("control.cancel_all", outcome="failed", error=_describe(exc))
            logger.error("control.cancel_all_failed error=%s", _describe(exc))
            return
        self._record("control.cancel_all", outcome="ok")
        logger.info("control.cancel_all outcome=ok")

    def _flatten_may_run(self, mode: Mode) -> bool:
        """In FLATTENING; or HALTED while some cause still asks for a flatten (a trip's, or the operator's):
        a halt stops the strategy, never the closing of positions, so the worst case stays flat and halted
        and never halted with positions left open that nothing manages."""
        if mode is Mode.FLATTENING:
            return True
        return mode is Mode.HALTED and any(c.mode is Mode.FLATTENING for c in self._causes)

    def _flatten_due(self) -> bool:
        return (
            self._gate.flatten_may_run
            and self._broker_connected is not False
            and (self._flatten is None or self._flatten.get("state") != "running")
        )

    def _still_flattening(self) -> str | None:
        """None while the flatten may go on; otherwise why it stops before its next attempt."""
        if not self._gate.flatten_may_run:
            return f"the mode became {self._gate.mode}"
        if self._broker_connected is False:
            return "the broker disconnected: the flatten goes on once it reconnects"
        return None

    async def _run_flatten(self) -> None:
        with self._lock:
            self._flatten = _flatten_record("running")
            self._resumed_during_flatten = False
            self._changed()
        self._flush()
        self._record("control.flatten", state="running")
        logger.warning("control.flatten state=running")
        if self.hooks is None:
            remaining, dust = self._split(self._positions)
            self._finish_flatten("incomplete", 0, remaining, dust, "no hooks were given, so no position can be closed")
            return
        attempts = 0
        remaining, dust = self._split(self._positions)
        error: str | None = None
        while True:
            stopped = self._still_flattening()
            if stopped is not None:
                self._interrupt_flatten(attempts, remaining, stopped)
                return
            try:
                await self._call_hook("cancel_all")
                positions = await self._call_hook("positions")
                if not isinstance(positions, Mapping):
                    raise TypeError(f"positions() returned {type(positions).__name__}, not a mapping")
                self.set_positions(positions)
                remaining, dust = self._split(positions)
            except Exception as exc:
                error = _describe(exc)
                logger.error("control.flatten_attempt_failed attempt=%s error=%s", attempts + 1, error)
                if attempts >= self.flatten_attempts:
                    break
                attempts += 1
                self._flatten_progress(attempts, remaining, dust, error)
                await asyncio.sleep(self.flatten_pause)
                continue
            if not remaining:
                self._finish_flatten("done", attempts, remaining, dust, None)
                return
            if attempts >= self.flatten_attempts:
                break
            attempts += 1
            token = _FLATTENER.set(self)
            try:
                await self._call_hook("flatten", dict(remaining))
                error = None
            except Exception as exc:
                error = _describe(exc)
                logger.error("control.flatten_attempt_failed attempt=%s error=%s", attempts, error)
            finally:
                _FLATTENER.reset(token)
            self._flatten_progress(attempts, remaining, dust, error)
            await asyncio.sleep(self.flatten_pause)
        self._finish_flatten("incomplete", attempts, remaining, dust, error)

    def _split(self, positions: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(positions still open, dust left) of ``positions``: dust is at or below its threshold, not 0."""
        remaining: dict[str, Any] = {}
        dust: dict[str, Any] = {}
        for symbol, quantity in positions.items():
            if quantity == 0:
                continue
            threshold = self.dust.get(symbol, 0.0) if isinstance(self.dust, Mapping) else self.dust
            (remaining if abs(quantity) > threshold else dust)[str(symbol)] = quantity
        return remaining, dust

    def _flatten_progress(
        self, attempts: int, remaining: Mapping[str, Any], dust: Mapping[str, Any], error: str | None
    ) -> None:
        with self._lock:
            self._flatten = {
                **_flatten_record("running"),
                "attempts": attempts,
                "remaining": _numbers(remaining),
                "dust": _numbers(dust),
                "error": error,
            }
            self._dirty = True
        self._write_status(fsync=False)

    def _finish_flatten(
        self, state: str, attempts: int, remaining: Mapping[str, Any], dust: Mapping[str, Any], error: str | None
    ) -> None:
        now = self._wall()
        if state == "done":
            after = "; positions closed" + (f" (dust left: {_listing(dust)})" if dust else "")
        else:
            after = f"; the flatten left positions open after {attempts} attempt(s): {_listing(remaining)}"
            if error:
                after += f" (last error: {error})"
        with self._lock:
            self._flatten = {
                "state": state,
                "attempts": attempts,
                "remaining": _numbers(remaining),
                "dust": _numbers(dust),
                "error": error,
                "finished_at": now,
            }
            # Done or not, what asked for the flatten now halts: a flatten never ends in ACTIVE.
            self._causes = [
                dataclasses.replace(c, mode=Mode.HALTED, reason=c.reason + after) if c.mode is Mode.FLATTENING else c
                for c in self._causes
            ]
            self._record("control.flatten", **self._flatten)
            self._changed()
        log = logger.warning if state == "done" else logger.error
        log("control.flatten state=%s attempts=%s remaining=%s error=%s", state, attempts, _listing(remaining), error)
        self._flush()

    def _interrupt_flatten(self, attempts: int, remaining: Mapping[str, Any], why: str) -> None:
        with self._lock:
            still_wanted = any(c.mode is Mode.FLATTENING for c in self._causes)
            if still_wanted:
                # Halted by the operator, or disconnected: it goes on when the mode is FLATTENING again.
                self._flatten = {**_flatten_record("pending"), "attempts": attempts, "error": why}
            elif self._resumed_during_flatten:
                self._flatten = None
            elif self._flatten is not None and self._flatten.get("state") == "running":
                # Resumed or replaced by the operator: say what it left.
                self._flatten = {
                    **_flatten_record("incomplete"),
                    "attempts": attempts,
                    "remaining": _numbers(remaining),
                    "error": f"stopped: {why}",
                    "finished_at": self._wall(),
                }
            self._record("control.flatten", **(self._flatten or {"state": None}), stopped=why)
            self._changed()
        logger.warning("control.flatten_stopped attempts=%s why=%s", attempts, why)
        self._flush()

    async def _call_hook(self, name: str, *args: Any) -> Any:
        hook = getattr(self.hooks, name)
        result = hook(*args)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, self.hook_timeout)
        return result

    # -- status.json --------------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write status.json at once (fsynced) when something it must show changed."""
        if self._version != self._written_version:
            self._write_status(fsync=True)

    def _write_status(self, *, fsync: bool) -> None:
        if not self._writes_status:
            return  # a standby, or an instance that handed over: status.json is the trading instance's
        try:
            with self._lock:
                data = self._status_json()
                version = self._version
                self._dirty = False
            with self._write_lock:
                if version < self._written_version:
                    return  # a newer status is already on disk
                write_json_atomic(status_path(self.control_dir), data, fsync=fsync)
                self._written_version = version
                self._status_written_at = self._monotonic()
        except Exception as exc:
            self._warn_once(
                f"status {type(exc).__name__} {getattr(exc, 'errno', '')}", "control.status_write_failed error=%r", exc
            )

    def _status_json(self) -> dict[str, Any]:
        now_wall, now = self._wall(), self._monotonic()
        winner = self._winner()
        limit = self.trips.daily_loss_limit
        daily = next((c for c in self._causes if c.source == "daily_loss"), None)
        self._prune_failures(now)
        return {
            "format": FORMAT_STATUS,
            "pid": os.getpid(),
            "boot_id": self._boot_id,
            "started_at": self._started_at,
            "updated_at": now_wall,
            "monotonic": now,
            "mode": self._gate.mode.value,
            "cause": winner.to_json() if winner is not None else None,
            "causes": [c.to_json() for c in self._causes],
            "applied_seq": self._applied_seq,
            "control": self._last_control,
            "control_error": self._control_error,
            "last_cycle_at": self._last_cycle_at,
            "last_cycle_monotonic": self._last_cycle_monotonic,
            "broker": {
                "connected": self._broker_connected,
                "since": self._broker_since,
                "reason": self._broker_reason,
            },
            "counters": {
                "rejects": self._rejects,
                "errors": self._errors,
                "permitted": self.permitted,
                "denied": self.denied,
            },
            "recent_failures": len(self._failures),
            "exposure": {**self._exposure_words, "positions": _numbers(self._positions)},
            "flatten": self._flatten,
            "daily_loss": {
                "pnl": self._daily_pnl,
                "limit": limit,
                "reached": daily is not None,
                "until": daily.until if daily is not None else None,
            },
            "stale_feeds": {feed: round(age, 3) for feed, age in self._stale_ages.items()},
            "latched": [c.to_json() for c in self._causes if c.latched],
            "decision_log": str(self.decisions.path),
            "reconcile": self._reconcile,
            "lease": None
            if self._lease is None
            else {"epoch": self._lease.epoch, "version": self._link.version if self._link is not None else None},
        }

    # -- the decision log and our own failures -------------------------------------------------------------

    def _record(self, kind: str, **context: Any) -> None:
        record: dict[str, Any] = {"at": self._wall(), "kind": kind, "mode": self._gate.mode}
        for key, value in context.items():
            record.setdefault(key, value)
        self.decisions.write(record)

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message + " (said once)", *args)


def _first_difference(report: Any) -> str:
    """A reconcile's first difference in its own words, and how many more; its summary when it has none."""
    differences = list(getattr(report, "differences", ()) or ())
    if not differences:
        return str(report.summary())
    more = f" (and {len(differences) - 1} more difference(s))" if len(differences) > 1 else ""
    return f"{getattr(differences[0], 'detail', differences[0])}{more}"


def _written_by_this_user(path: Path) -> None:
    """Raise OSError unless ``path`` is this service's own file: a status.json another user wrote (in a
    directory others may write) could drop the trips it must restore, and un-halt the bot."""
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o002:
        raise PermissionError(f"{path}: not written by this service's user (uid {st.st_uid}), not believed")


def _reduces(positions: Mapping[str, Any], symbol: str, side: str, quantity: Any) -> bool:
    """Does the order bring the position closer to zero without passing it?"""
    position = positions.get(symbol, 0)
    if side == "sell":
        if not position > 0:
            return False
        return bool(quantity <= position or (type(quantity) is float and quantity - position <= _tolerance(position)))
    if not position < 0:
        return False
    return bool(quantity <= -position or (type(quantity) is float and quantity + position <= _tolerance(position)))


def _tolerance(position: Any) -> float:
    try:
        return abs(float(position)) * _RELATIVE_TOLERANCE
    except (TypeError, ValueError):
        return 0.0


def _flatten_record(state: str) -> dict[str, Any]:
    return {"state": state, "attempts": 0, "remaining": {}, "dust": {}, "error": None, "finished_at": None}


def _numbers(positions: Mapping[str, Any]) -> dict[str, Any]:
    """Quantities as JSON numbers (a Decimal becomes a float; what is no number, its text)."""
    out: dict[str, Any] = {}
    for symbol, quantity in positions.items():
        try:
            out[str(symbol)] = float(quantity)
        except (TypeError, ValueError):
            out[str(symbol)] = str(quantity)
    return out


def _listing(positions: Mapping[str, Any]) -> str:
    return ", ".join(f"{symbol} {quantity}" for symbol, quantity in positions.items()) or "none"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within the hook timeout ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value > 0


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _time(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value >= 0


def _utc_time(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local_time(wall: float, zone: tzinfo) -> str:
    text = datetime.fromtimestamp(wall, zone).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if zone is UTC else text


class _Cycle:
    """What ``Control.cycle()`` returns: awaited at the top of a cycle, or entered around one."""

    __slots__ = ("_control",)

    def __init__(self, control: Control) -> None:
        self._control = control

    def __await__(self) -> Generator[Any, None, None]:
        return self._control._begin_cycle().__await__()

    async def __aenter__(self) -> Control:
        await self._control._begin_cycle()
        return self._control

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self._control._end_cycle()
