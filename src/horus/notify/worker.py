"""The delivery worker: takes due deliveries from the outbox and sends them, on threads of its own.

One thread runs the loop and alone touches its :class:`Outbox`; each send runs on a short-lived thread
per channel, at most one per channel at a time. So a channel that is down costs a retry later, and a
channel that hangs costs only itself: after ``send_timeout_seconds`` the attempt counts as failed and
the other channels, the checks and the heals carry on.

Per channel, every due event leaves as one message (the notifier holds each event for
``group_seconds``, so events close together become due together). A failed message is retried with
capped exponential backoff and jitter; a permanent error, or a delivery failing for longer than
``give_up_after_seconds``, is given up and reported (``notify.gave_up``) instead of retried forever.

Delivery is at least once, never at most once: a message whose answer is lost is sent again.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from horus import humanize
from horus.clock import Clock, SystemClock
from horus.errors import NotifyError, StoreError
from horus.log import get_logger
from horus.notify.channels import Channel, build_channel
from horus.notify.config import ChannelConfig, NotifySettings
from horus.notify.events import Event
from horus.notify.outbox import Outbox, on_late_write
from horus.redaction import redact

__all__ = ["DeliveryWorker", "deliver_now"]

log = get_logger("horus.notify")

# A channel back after a long outage gets its backlog in messages of this many events: most services
# truncate or refuse a message of thousands of lines, and a refused message would be retried whole.
MAX_EVENTS_PER_MESSAGE = 50
# The loop looks around at least this often even when nothing is due: it gives up on deliveries queued
# behind a hung send, notices wall clock jumps, and prunes the outbox.
HOUSEKEEPING_SECONDS = 60.0
PRUNE_EVERY_SECONDS = 3600.0
# After an outbox error (a full disk), how long the loop waits before trying again.
STORE_RETRY_SECONDS = 5.0
# deliver_now waits this much longer than its timeout; see there.
DELIVER_NOW_GRACE_SECONDS = 0.5
# How far the wall clock may drift from the monotonic one before it counts as a jump.
CLOCK_JUMP_SECONDS = 2.0


@dataclass
class _Send:
    """One message in flight on one channel."""

    channel: Channel
    events: list[Event]
    attempts: int  # failed attempts before this one (the most among its events)
    started_wall: float
    deadline: float  # monotonic
    timed_out: bool = False

    @property
    def event_ids(self) -> list[str]:
        return [event.id for event in self.events]


class DeliveryWorker:
    """Delivers the outbox's due events to ``channels``. ``start()``, ``wake()`` after an enqueue, ``stop()``.

    ``backoff_base`` and ``backoff_max`` bound the wait between retries of one channel (doubling from
    the base, with jitter); tests shrink them.
    """

    def __init__(
        self,
        state_dir: Path,
        channels: list[Channel],
        settings: NotifySettings,
        clock: Clock | None = None,
        *,
        backoff_base: float = 5.0,
        backoff_max: float = 600.0,
    ) -> None:
        self.state_dir = state_dir
        self.channels = {channel.name: channel for channel in channels}
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._outbox: Outbox | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._results: queue.SimpleQueue[tuple[_Send, str | None, bool]] = queue.SimpleQueue()
        self._in_flight: dict[str, _Send] = {}
        self._next_prune = 0.0
        self._clock_offset = 0.0
        self._forget_listener: Callable[[], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox, give up on deliveries to channels no longer configured, and start the thread.
        Raises :class:`StoreError` when the outbox cannot be opened."""
        outbox = Outbox.open(self.state_dir)
        try:
            now = self.clock.wall()
            abandoned = outbox.abandon_channels_not_in(set(self.channels), now)
        except BaseException:
            outbox.close()
            raise
        for channel, count in abandoned.items():
            log.warning("notify.abandoned", channel=channel, events=count, why="channel no longer configured")
        self._outbox = outbox
        self._clock_offset = now - self.clock.monotonic()
        # Events kept in memory while the disk was full are written by the notifier's connection: it
        # wakes this loop then, so they leave at once rather than at the next housekeeping.
        self._forget_listener = on_late_write(outbox.path, self.wake)
        self._thread = threading.Thread(target=self._run, args=(outbox,), name="horus-notify", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (an event was just queued). Safe from any thread."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker. For up to ``timeout`` seconds it first sends what waits only for its grouping
        window and waits for sends in flight; what is still unsent stays in the outbox for the next start.
        A send still running when it returns may be delivered and sent again later (at least once)."""
        self._stop_deadline = self.clock.monotonic() + max(0.0, timeout)
        self._stopping.set()
        self._wake.set()
        if self._forget_listener is not None:
            self._forget_listener()
            self._forget_listener = None
        if self._thread is not None:
            self._thread.join(timeout + 1.0)

    # -- the loop (worker thread only) ------------------------------------------------------------------

    def _run(self, outbox: Outbox) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    self._collect(outbox)
                    self._expire_hung_sends(outbox)
                    self._housekeeping(outbox)
                    self._start_due(outbox)
                    wait = self._seconds_until_next(outbox)
                except StoreError as exc:
                    log.error("notify.store_failed", error=str(exc), retry_in=humanize.seconds(STORE_RETRY_SECONDS))
                    wait = STORE_RETRY_SECONDS
                except Exception:
                    log.exception("notify.worker_failed", retry_in=humanize.seconds(STORE_RETRY_SECONDS))
                    wait = STORE_RETRY_SECONDS
                self._wake.wait(wait)
            self._flush(outbox)
        except Exception:
            log.exception("notify.worker_failed")
        finally:
            outbox.close()

    def _flush(self, outbox: Outbox) -> None:
        """On stop: send what is waiting only for its grouping window, and wait for what is in flight."""
        if self.clock.monotonic() < self._stop_deadline:
            self._collect(outbox)
            self._start_due(outbox, flush=True)
        while any(not send.timed_out for send in self._in_flight.values()):
            remaining = self._stop_deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            self._wake.wait(remaining)
            self._wake.clear()
            self._collect(outbox)

    def _start_due(self, outbox: Outbox, *, flush: bool = False) -> None:
        now = self.clock.wall()
        for name, channel in self.channels.items():
            if name in self._in_flight:
                continue
            if flush:
                due = outbox.due(name, now + self.settings.group_seconds, limit=MAX_EVENTS_PER_MESSAGE)
            else:
                # When anything is due, everything of its grouping window comes along.
                due = outbox.due(name, now, ride_along=self.settings.group_seconds, limit=MAX_EVENTS_PER_MESSAGE)
            if not due:
                continue
            send = _Send(
                channel=channel,
                events=[event for event, _ in due],
                attempts=max(attempts for _, attempts in due),
                started_wall=now,
                deadline=self.clock.monotonic() + self.settings.send_timeout_seconds,
            )
            self._in_flight[name] = send
            log.debug("notify.sending", channel=name, events=len(send.events), attempt=send.attempts + 1)
            threading.Thread(target=self._attempt, args=(send,), name=f"horus-notify-{name}", daemon=True).start()

    def _attempt(self, send: _Send) -> None:
        """On the send's own thread: never touches the outbox, only reports back."""
        error: str | None = "the send was interrupted"
        permanent = False
        try:
            send.channel.send(send.events, self.settings.send_timeout_seconds)
            error = None
        except NotifyError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:
            # Only the type: the text of an unexpected exception might quote a URL.
            error = f"unexpected {type(exc).__name__} in the channel"
        finally:
            # Always reported, or the channel would count as busy forever.
            self._results.put((send, error, permanent))
            self._wake.set()

    def _collect(self, outbox: Outbox) -> None:
        while True:
            try:
                send, error, permanent = self._results.get_nowait()
            except queue.Empty:
                return
            name = send.channel.name
            if self._in_flight.get(name) is send:
                del self._in_flight[name]
            if send.timed_out:
                # The attempt was already counted as failed and a retry scheduled, but no retry can have
                # started: a channel has one send at a time. A late success did deliver, so it is recorded
                # and the retry is not sent; a late failure changes nothing. (A send abandoned by stop()
                # is the one case where a message can arrive twice.)
                if error is None:
                    outbox.mark_sent(name, send.event_ids, self.clock.wall())
                    log.info("notify.delivered", channel=name, events=len(send.events), late=True)
                else:
                    log.debug("notify.hung_send_returned", channel=name, error=error)
                continue
            if error is None:
                outbox.mark_sent(name, send.event_ids, self.clock.wall())
                log.info("notify.delivered", channel=name, events=len(send.events))
            else:
                self._failed(outbox, send, error, permanent=permanent)

    def _expire_hung_sends(self, outbox: Outbox) -> None:
        now = self.clock.monotonic()
        for name, send in self._in_flight.items():
            if not send.timed_out and now >= send.deadline:
                send.timed_out = True
                # Until the hung call returns, this channel gets no new send; see _collect.
                error = f"no answer within {humanize.seconds(self.settings.send_timeout_seconds)}"
                self._failed(outbox, send, error, permanent=False)
            elif send.timed_out:
                # Events queued behind a send that never returns are given up on in time, like any other.
                wall = self.clock.wall()
                give_up = self.settings.give_up_after_seconds
                stale = [event.id for event, _ in outbox.due(name, wall) if wall - event.created_at >= give_up]
                if stale:
                    error = f"its last send has not returned for {humanize.duration(wall - send.started_wall)}"
                    outbox.mark_dead(name, stale, error, wall)
                    log.error("notify.gave_up", channel=name, events=len(stale), error=error)

    def _failed(self, outbox: Outbox, send: _Send, error: str, *, permanent: bool) -> None:
        name = send.channel.name
        # A channel's error is its own words (a command's output, a library's exception with its URL): it is
        # kept in the outbox and shown by `horus status`, so it keeps no secret.
        error = redact(error)
        now = self.clock.wall()
        attempt = send.attempts + 1
        delay = self._backoff(attempt)
        give_up = self.settings.give_up_after_seconds
        expired = [event.id for event in send.events if permanent or now - event.created_at >= give_up]
        outbox.mark_failed(name, send.event_ids, error, now + delay)
        if expired:
            outbox.mark_dead(name, expired, error, now)
            why = "a permanent error" if permanent else f"failing for more than {humanize.duration(give_up)}"
            log.error("notify.gave_up", channel=name, events=len(expired), error=error, why=why, attempts=attempt)
        retrying = len(send.events) - len(expired)
        if retrying:
            log.warning(
                "notify.failed",
                channel=name,
                events=retrying,
                error=error,
                attempt=attempt,
                retry_in=humanize.seconds(delay),
            )

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 32))
        # Jitter, so channels (and hosts) that failed together do not retry in lockstep.
        return min(self.backoff_max, delay * random.uniform(0.75, 1.25))

    def _housekeeping(self, outbox: Outbox) -> None:
        mono, wall = self.clock.monotonic(), self.clock.wall()
        offset = wall - mono
        if abs(offset - self._clock_offset) > CLOCK_JUMP_SECONDS:
            # Retry times are wall-clock times; after a jump back they could lie far in the future.
            latest = wall + self.backoff_max + self.settings.group_seconds
            moved = outbox.reschedule_later_than(latest)
            log.info("notify.clock_jumped", by=humanize.seconds(offset - self._clock_offset), rescheduled=moved)
        self._clock_offset = offset
        if mono >= self._next_prune:
            self._next_prune = mono + PRUNE_EVERY_SECONDS
            pruned = outbox.prune(wall - self.settings.keep_days * 86400.0)
            if pruned:
                log.debug("notify.pruned", events=pruned)

    def _seconds_until_next(self, outbox: Outbox) -> float:
        waits = [HOUSEKEEPING_SECONDS]
        idle = [name for name in self.channels if name not in self._in_flight]
        next_due = outbox.next_due_at(idle)
        if next_due is not None:
            waits.append(next_due - self.clock.wall())
        mono = self.clock.monotonic()
        waits += [send.deadline - mono for send in self._in_flight.values() if not send.timed_out]
        return max(0.0, min(waits))


def deliver_now(channel: Channel, events: list[Event], timeout: float) -> str | None:
    """Send ``events`` to ``channel`` directly (not through the outbox), waiting at most ``timeout``
    seconds. Returns ``None`` when delivered, else why not. For ``horus notify-test``."""
    outcome: list[str | None] = []
    done = threading.Event()

    def attempt() -> None:
        try:
            channel.send(events, timeout)
            outcome.append(None)
        except NotifyError as exc:
            outcome.append(str(exc))
        except Exception as exc:
            outcome.append(f"unexpected {type(exc).__name__} in the channel")
        finally:
            done.set()

    # A daemon thread: a channel that hangs must not keep the process alive once the answer is given.
    threading.Thread(target=attempt, name=f"horus-notify-test-{channel.name}", daemon=True).start()
    # The grace lets a channel that bounds itself by `timeout` (a command is killed then) say so itself,
    # and finish killing what it started before the caller moves on.
    if not done.wait(timeout + DELIVER_NOW_GRACE_SECONDS):
        return f"no answer within {humanize.seconds(timeout)}"
    return outcome[0]


def deliver_to_every_channel_now(
    channels: Sequence[ChannelConfig], event: Event, timeout: float
) -> list[tuple[str, str | None]]:
    """Send ``event`` to every configured channel at once, side by side, not through the outbox: (channel name,
    None when delivered, else why not), in the config's order. For `horus notify-test` and for telling the
    operator that Horus itself failed (`horus service failed`), when no daemon runs to use the outbox."""
    built = [build_channel(channel) for channel in channels]
    if not built:
        return []
    with ThreadPoolExecutor(max_workers=len(built)) as pool:
        errors = list(pool.map(lambda channel: deliver_now(channel, [event], timeout), built))
    return [(channel.name, error) for channel, error in zip(built, errors, strict=True)]
