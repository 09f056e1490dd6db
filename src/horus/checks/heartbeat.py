"""The ``heartbeat`` check: the service says, from inside, that its loop and each of its jobs progress."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import pwd
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.heartbeat_listener import CannotListen, HeartbeatListener, load_key, parse_listen_address
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.errors import ProbeError
from horus_sdk.formats import FORMAT_CRASH, FORMAT_HEARTBEAT, RefusedFileError, boot_id, crash_summary, read_json

DEADLINE_MARGIN_SECONDS = 0.05
# A crash_dir is read at most this many entries deep: the SDK keeps 20 records, and a directory that
# another process fills must not make every look slower.
MAX_CRASH_DIR_ENTRIES = 1000
# On its first look after Horus starts, a listening check waits this long for a datagram to arrive.
FIRST_BEAT_WAIT_SECONDS = 2.0


def _listen_address(text: str) -> str:
    parse_listen_address(text)
    return text


def _key_file(path: Path) -> Path:
    # ValueError in words: missing, readable by others, not a key. A key that only the daemon's user may
    # read is checked in full when the daemon opens the check.
    load_key(path, unreadable_ok=True)
    return path


def _user(user: str | int) -> str | int:
    _uid_of(user)
    return user


def _uid_of(user: str | int) -> int:
    if isinstance(user, int):
        if user < 0:
            raise ValueError(f"a uid is 0 or more, got {user}")
        return user
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"no such user {user!r}") from None


_HOW_TO_KEY = (
    "set key_file to a file of random text that only the service's user can read, and give the same file to "
    "the SDK: Heartbeat(..., key_file=...) (make one with: head -c 32 /dev/urandom | base64 > /etc/bot/hb.key; "
    "chmod 600 /etc/bot/hb.key), or listen on a unix socket (unix:/run/bot/hb.sock), which tells Horus "
    "the sender's user"
)


class HeartbeatOptions(CheckOptions):
    type: Literal["heartbeat"]
    path: AbsolutePath | None = None
    listen: Annotated[str, AfterValidator(_listen_address)] | None = None
    key_file: Annotated[AbsolutePath, AfterValidator(_key_file)] | None = None
    user: Annotated[str | int, AfterValidator(_user)] | None = None
    max_age_seconds: PositiveSeconds
    channels: dict[str, PositiveSeconds] = Field(default_factory=dict)
    crash_dir: AbsolutePath | None = None

    @model_validator(mode="after")
    def _a_source(self) -> HeartbeatOptions:
        if self.path is None and self.listen is None:
            raise ValueError("set path (the heartbeat file), listen (where datagrams arrive), or both")
        if self.listen is None:
            if self.user is not None or self.key_file is not None:
                raise ValueError(
                    "user and key_file apply to listen: (datagrams); "
                    "a heartbeat file is protected by its directory's permissions"
                )
            return self
        if self.listen.startswith("udp://"):
            if self.user is not None:
                raise ValueError("user: UDP does not say who sent a datagram; use key_file, or a unix socket")
            if self.key_file is None:
                raise ValueError(f"{self.listen} accepts datagrams from any local user: {_HOW_TO_KEY}")
        return self


class HeartbeatCheck(Check[HeartbeatOptions]):
    """Unhealthy when the service's heartbeat (sent by horus-sdk's ``Heartbeat``) is older than
    ``max_age_seconds``, or when a named channel has not progressed within its own limit.

    ``path`` reads the heartbeat file; ``listen`` receives the same beats as datagrams, on
    ``udp://127.0.0.1:9123`` or ``unix:/run/bot/hb.sock`` (the SDK's ``udp=`` and ``unix_socket=``),
    which needs no shared disk. With both, the fresher beat counts. A datagram's age is measured from
    its arrival on Horus's clock. Until the first datagram arrives Horus waits up to ``max_age_seconds``
    from when it began listening before calling the service silent.

    Any local user can send a datagram, so only authenticated ones count:

    - ``key_file: /etc/bot/hb.key`` (with ``Heartbeat(..., key_file="/etc/bot/hb.key")``): each datagram
      carries the HMAC-SHA256 of its JSON under the key, the file's text (16 to 4096 bytes, made with
      ``head -c 32 /dev/urandom | base64``). The file must be readable only by its owner (``chmod 600``):
      one the group or others can read or write is refused when the config is loaded. UDP needs a key:
      UDP cannot say who sent a datagram, so ``listen: udp://`` without ``key_file`` is refused.
    - On a unix socket the kernel tells Horus the sender's uid, and only ``user`` (a name or uid; by
      default the user Horus runs as) is believed, unless ``key_file`` is set and ``user`` is not (then the
      key decides). Horus, when it runs as root, hands the socket file to ``user`` (mode 0600), so other
      users cannot even reach it; ``unix:@name`` (the abstract namespace) has no file, so the uid check
      alone protects it.

    A datagram of the service's current run must carry a ``monotonic`` later than the one before, so a
    captured datagram sent again does not count; a new run (another pid or start) must have begun after
    the newest beat seen, so an earlier run's beats cannot come back either. Ignored datagrams are counted
    and named in an unhealthy reason ("; 3 datagrams ignored: bad signature"). Horus keeps, whatever
    arrives, the newest beat's known fields and the configured channels' progress; a datagram over
    16 KiB is ignored. An address Horus cannot listen on (another process holds it, no permission) or a
    key file it cannot read stops the daemon from starting, with the reason.

    ``channels: {"ticks": 60, "orders": 300}`` is the data-staleness check: the process and its loop may
    be fine while the price feed went quiet ("channel ticks: last progress 95 s ago, limit 60 s"). The
    heartbeat is driven by the service's event loop, so a stuck loop stops it. A channel's progress is
    judged only by the sender's own clock differences: how long before the beat that reports it the
    channel moved (a time after the beat's own is taken as the beat's), dated on Horus's clock from the
    beat's arrival; a channel reported as in the beat before (same count, same time) has not moved.
    A heartbeat file's age uses the system's monotonic clock when Horus and the service share a boot,
    so a wall clock jump cannot fake one.
    With ``crash_dir`` (the SDK watchdog's), a heal of this monitor logs the crash record the service
    left: why it was ended and the function and line it was stuck in.
    """

    options_model = HeartbeatOptions
    inline = True

    def __init__(self, options: HeartbeatOptions) -> None:
        super().__init__(options)
        self._boot = boot_id()
        self._crash_records_seen: dict[str, int] | None = None  # name -> mtime (ns), from the last look
        self._listener: HeartbeatListener | None = None
        self._listen_error: str | None = None
        if options.listen is not None:
            # Datagrams arrive on the event loop, so this instance cannot run on the filesystem thread.
            self.inline = False
            self._listener = HeartbeatListener(parse_listen_address(options.listen), channels=options.channels)

    async def open(self) -> None:
        """Listen; CannotListen when the address cannot be held or the key read: the daemon must not start
        watching a service it cannot hear. Each later probe tries again and reports the same as a probe error."""
        await self._try_open()
        if self._listen_error is not None:
            raise CannotListen(self._listen_error)

    async def _try_open(self) -> None:
        listener = self._listener
        if listener is None or listener.listening:
            return
        try:
            if self.options.key_file is not None:
                listener.key = load_key(self.options.key_file)
            if listener.address.path is None:
                listener.sender_uid = None  # UDP: the key decides
            elif self.options.user is not None:
                listener.sender_uid = _uid_of(self.options.user)
            else:
                listener.sender_uid = None if self.options.key_file is not None else os.geteuid()
            await listener.start()
        except ValueError as exc:
            self._listen_error = f"cannot listen on {self.options.listen}: key_file {exc}"
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                why += " (another process holds it: it may be there to catch or fake this service's beats)"
            self._listen_error = f"cannot listen on {self.options.listen}: {why}"
        else:
            self._listen_error = None

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.close()

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        if self._listener is None:
            return await asyncio.to_thread(self.probe_inline, ctx)
        result = await self._probe_listening(ctx)
        return await asyncio.to_thread(self._with_crash_records, result)

    async def _probe_listening(self, ctx: ProbeContext) -> CheckResult:
        listener = self._listener
        assert listener is not None
        await self._try_open()
        if self._listen_error is not None:
            return CheckResult.error(self._listen_error)
        listener.receive_pending()
        limit = self.options.max_age_seconds
        assert listener.listening_since is not None
        listening_for = time.monotonic() - listener.listening_since
        if listener.latest is None and listening_for < limit:
            # Just began listening (Horus started): give the service one beat's time before judging.
            await listener.wait_for_beat(min(limit - listening_for, FIRST_BEAT_WAIT_SECONDS))
        from_file = await asyncio.to_thread(self._probe_file, ctx) if self.options.path is not None else None
        received = listener.latest
        if received is None:
            if from_file is not None and from_file.is_healthy:
                return from_file
            listening_for = time.monotonic() - listener.listening_since
            if listening_for < limit:
                # Not a probe error and not a verdict: the service has not been listened to for one beat's time.
                return CheckResult.unknown(
                    f"no heartbeat on {self.options.listen} yet (listening for {humanize.seconds(listening_for)})"
                )
            return CheckResult.unhealthy(
                f"no heartbeat received on {self.options.listen} in {humanize.seconds(listening_for)}"
                + self._rejections()
            )
        now = time.monotonic()
        age = max(0.0, now - received.received_monotonic)
        # Dated on Horus's clock when the beat arrived, from the sender's own deltas (see the listener).
        channel_ages = {name: max(age, now - at) for name, at in received.channels.items()}
        beating_for = max(0.0, now - received.started) if received.started is not None else None
        from_datagram = self._judge(received.beat, age, channel_ages, beating_for)
        if not from_datagram.is_healthy:
            from_datagram = dataclasses.replace(from_datagram, reason=from_datagram.reason + self._rejections())
        if from_file is None:
            return from_datagram
        return _fresher(from_datagram, from_file)

    def _rejections(self) -> str:
        summary = self._listener.ignored_summary() if self._listener is not None else ""
        return f"; {summary}" if summary else ""

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        return self._with_crash_records(self._probe_file(ctx))

    def _with_crash_records(self, result: CheckResult) -> CheckResult:
        """The result, with how many crash records appeared since the last look: restarts to count."""
        new = self._new_crash_records()
        if not new:
            return result
        return dataclasses.replace(result, details={**result.details, "new_crashes": new})

    def _new_crash_records(self) -> int:
        crash_dir = self.options.crash_dir
        if crash_dir is None:
            return 0
        seen: dict[str, int] = {}
        try:
            with os.scandir(crash_dir) as entries:
                for count, entry in enumerate(entries):
                    if count >= MAX_CRASH_DIR_ENTRIES:
                        break
                    if _is_crash_record(entry.name) and entry.is_file(follow_symlinks=False):
                        seen[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
        except OSError:
            return 0
        before, self._crash_records_seen = self._crash_records_seen, seen
        if before is None:
            return 0  # the first look learns what is there already
        return sum(1 for name, mtime in seen.items() if before.get(name) != mtime)

    def _probe_file(self, ctx: ProbeContext) -> CheckResult:
        path = self.options.path
        assert path is not None
        try:
            beat = read_json(path, FORMAT_HEARTBEAT)
        except FileNotFoundError:
            return CheckResult.unhealthy(f"no heartbeat file at {path}")
        except RefusedFileError as exc:
            # Not the SDK's file (it writes a small regular file, atomically): nothing about the service is
            # known, and a file someone else put there must never be a reason to kill the service.
            raise ProbeError(f"cannot observe the heartbeat: {exc}") from exc
        except (ValueError, OSError) as exc:
            return CheckResult.unhealthy(f"heartbeat file unreadable: {exc}")
        same_boot = self._boot is not None and beat.get("boot_id") == self._boot
        now_mono, now_wall = time.monotonic(), ctx.clock.wall()

        def age_of(entry: dict[str, Any]) -> float:
            if same_boot and isinstance(entry.get("monotonic"), int | float):
                return max(0.0, now_mono - float(entry["monotonic"]))
            return max(0.0, now_wall - float(entry.get("wall_time", 0.0)))

        age = age_of(beat)
        channels = beat.get("channels") or {}
        # A channel cannot have progressed after the beat that reports it: its age is at least the beat's.
        channel_ages = {
            name: max(age, age_of(entry))
            for name in self.options.channels
            if isinstance(entry := channels.get(name), dict)
        }
        beating_for: float | None = None
        if isinstance(beat.get("started_monotonic"), int | float) and isinstance(beat.get("monotonic"), int | float):
            # Both readings come from the service's own clock, so their difference holds across boots.
            beating_for = age + max(0.0, float(beat["monotonic"]) - float(beat["started_monotonic"]))
        return self._judge(beat, age, channel_ages, beating_for)

    def _judge(
        self, beat: Mapping[str, Any], age: float, channel_ages: Mapping[str, float], beating_for: float | None
    ) -> CheckResult:
        """The verdict on one beat that is ``age`` seconds old, its configured channels ``channel_ages``
        seconds since they progressed (absent: not yet), the service ``beating_for`` seconds."""
        limit = self.options.max_age_seconds
        pid = beat.get("pid")
        # Which run of the service sent this beat: a new pid or start means it restarted.
        instance = f"{pid}:{beat.get('started_monotonic')}" if pid is not None else None
        if age > limit:
            return CheckResult.unhealthy(
                f"heartbeat {humanize.seconds(age)} old, limit {humanize.seconds(limit)}",
                pid=pid,
                instance=instance,
                age_seconds=age,
            )
        remaining = [limit - age]
        for name, channel_limit in self.options.channels.items():
            age_of_channel = channel_ages.get(name)
            if age_of_channel is None:
                # Not progressed yet: judged from when the heartbeat began, if the service says.
                since = beating_for
                if since is None or since > channel_limit:
                    return CheckResult.unhealthy(f"channel {name}: no progress recorded", pid=pid, instance=instance)
                remaining.append(channel_limit - since)
                continue
            if age_of_channel > channel_limit:
                return CheckResult.unhealthy(
                    f"channel {name}: last progress {humanize.seconds(age_of_channel)} ago, "
                    f"limit {humanize.seconds(channel_limit)}",
                    pid=pid,
                    instance=instance,
                    channel=name,
                )
            remaining.append(channel_limit - age_of_channel)
        return CheckResult.healthy(
            f"heartbeat {humanize.seconds(age)} old (pid {pid}, beat {beat.get('sequence')})",
            recheck_in=min(remaining) + DEADLINE_MARGIN_SECONDS,
            pid=pid,
            instance=instance,
            age_seconds=age,
        )

    def evidence(self, since_wall: float | None) -> dict[str, Any]:
        """The newest crash record the service left since ``since_wall``, summarised for a heal's log."""
        if self.options.crash_dir is None:
            return {}
        newest: tuple[float, Path] | None = None
        try:
            for entry in os.scandir(self.options.crash_dir):
                if _is_crash_record(entry.name):
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                    if (since_wall is None or mtime >= since_wall) and (newest is None or mtime > newest[0]):
                        newest = (mtime, Path(entry.path))
        except OSError:
            return {}
        if newest is None:
            return {}
        try:
            record = read_json(newest[1], FORMAT_CRASH)
        except (OSError, ValueError):
            return {"crash_record": str(newest[1])}
        return {"crash_record": str(newest[1]), "crash_summary": crash_summary(record)}


def _is_crash_record(name: str) -> bool:
    return name.startswith("horus-crash-") and name.endswith(".json")


def _fresher(first: CheckResult, second: CheckResult) -> CheckResult:
    """Of two sources of the same heartbeat, the one that saw the service more recently wins."""
    if first.is_healthy != second.is_healthy:
        return first if first.is_healthy else second
    first_age, second_age = first.details.get("age_seconds"), second.details.get("age_seconds")
    if isinstance(second_age, float) and (not isinstance(first_age, float) or second_age < first_age):
        return second
    return first
