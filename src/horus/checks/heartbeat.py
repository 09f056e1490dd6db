"""The ``heartbeat`` check: the service says, from inside, that its loop and each of its jobs progress."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.heartbeat_listener import HeartbeatListener, parse_listen_address
from horus.config.types import AbsolutePath, PositiveSeconds
from horus_sdk.formats import FORMAT_CRASH, FORMAT_HEARTBEAT, boot_id, crash_summary, read_json

DEADLINE_MARGIN_SECONDS = 0.05
# A crash_dir is read at most this many entries deep: the SDK keeps 20 records, and a directory that
# another process fills must not make every look slower.
MAX_CRASH_DIR_ENTRIES = 1000
# On its first look after Horus starts, a listening check waits this long for a datagram to arrive.
FIRST_BEAT_WAIT_SECONDS = 2.0


def _listen_address(text: str) -> str:
    parse_listen_address(text)
    return text


class HeartbeatOptions(CheckOptions):
    type: Literal["heartbeat"]
    path: AbsolutePath | None = None
    listen: Annotated[str, AfterValidator(_listen_address)] | None = None
    max_age_seconds: PositiveSeconds
    channels: dict[str, PositiveSeconds] = Field(default_factory=dict)
    crash_dir: AbsolutePath | None = None

    @model_validator(mode="after")
    def _a_source(self) -> HeartbeatOptions:
        if self.path is None and self.listen is None:
            raise ValueError("set path (the heartbeat file), listen (where datagrams arrive), or both")
        return self


class HeartbeatCheck(Check[HeartbeatOptions]):
    """Unhealthy when the service's heartbeat (sent by horus-sdk's ``Heartbeat``) is older than
    ``max_age_seconds``, or when a named channel has not progressed within its own limit.

    ``path`` reads the heartbeat file; ``listen`` receives the same beats as datagrams, on
    ``udp://127.0.0.1:9123`` or ``unix:/run/bot/hb.sock`` (the SDK's ``udp=`` and ``unix_socket=``),
    which needs no shared disk. With both, the fresher beat counts. A datagram's age is measured from
    its arrival on Horus's clock. Until the first datagram arrives Horus waits up to ``max_age_seconds``
    from when it began listening before calling the service silent. Anyone on the host who can reach
    the address can send a beat: listen on loopback or on a socket only the service can write to.

    ``channels: {"ticks": 60, "orders": 300}`` is the data-staleness check: the process and its loop may
    be fine while the price feed went quiet ("channel ticks: last progress 95 s ago, limit 60 s"). The
    heartbeat is driven by the service's event loop, so a stuck loop stops it. Ages use the system's
    monotonic clock when Horus and the service share a boot, so a wall clock jump cannot fake one.
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
            self._listener = HeartbeatListener(parse_listen_address(options.listen))

    async def open(self) -> None:
        if self._listener is None or self._listener.listening:
            return
        try:
            await self._listener.start()
        except OSError as exc:
            self._listen_error = f"cannot listen on {self.options.listen}: {exc.strerror or exc}"
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
        await self.open()
        if self._listen_error is not None:
            return CheckResult.error(self._listen_error)
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
        beat = received.beat
        age = max(0.0, time.monotonic() - received.received_monotonic)
        service_now = float(beat["monotonic"]) + age  # the service's monotonic clock, now

        def channel_age(entry: dict[str, Any]) -> float:
            # Both readings come from the service's own clock, so this holds across hosts and boots.
            return max(0.0, service_now - float(entry["monotonic"]))

        from_datagram = self._judge(beat, age, channel_age)
        if from_file is None:
            return from_datagram
        return _fresher(from_datagram, from_file)

    def _rejections(self) -> str:
        listener = self._listener
        if listener is None or not listener.rejected:
            return ""
        return f"; {listener.rejected} datagram(s) ignored, last: {listener.last_rejection}"

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
        except (ValueError, OSError) as exc:
            return CheckResult.unhealthy(f"heartbeat file unreadable: {exc}")
        same_boot = self._boot is not None and beat.get("boot_id") == self._boot
        now_mono, now_wall = time.monotonic(), ctx.clock.wall()

        def age_of(entry: dict[str, Any]) -> float:
            if same_boot and isinstance(entry.get("monotonic"), int | float):
                return max(0.0, now_mono - float(entry["monotonic"]))
            return max(0.0, now_wall - float(entry.get("wall_time", 0.0)))

        return self._judge(beat, age_of(beat), age_of)

    def _judge(self, beat: dict[str, Any], age: float, channel_age: Callable[[dict[str, Any]], float]) -> CheckResult:
        """The verdict on one beat that is ``age`` seconds old, with ``channel_age`` for its channels."""
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
        channels = beat.get("channels") or {}
        beating_for: float | None = None
        if isinstance(beat.get("started_monotonic"), int | float) and isinstance(beat.get("monotonic"), int | float):
            # Both readings come from the service's own clock, so their difference holds across boots.
            beating_for = age + float(beat["monotonic"]) - float(beat["started_monotonic"])
        for name, channel_limit in self.options.channels.items():
            entry = channels.get(name)
            if entry is None:
                # Not progressed yet: judged from when the heartbeat began, if the service says.
                since = beating_for
                if since is None or since > channel_limit:
                    return CheckResult.unhealthy(f"channel {name}: no progress recorded", pid=pid, instance=instance)
                remaining.append(channel_limit - since)
                continue
            age_of_channel = channel_age(entry)
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
                    mtime = entry.stat().st_mtime
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
