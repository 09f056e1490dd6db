"""The ``heartbeat`` check: the service says, from inside, that its loop and each of its jobs progress."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import ExpandedPath, PositiveSeconds
from horus_sdk.formats import FORMAT_CRASH, FORMAT_HEARTBEAT, boot_id, crash_summary, read_json

DEADLINE_MARGIN_SECONDS = 0.05


class HeartbeatOptions(CheckOptions):
    type: Literal["heartbeat"]
    path: ExpandedPath
    max_age_seconds: PositiveSeconds
    channels: dict[str, PositiveSeconds] = Field(default_factory=dict)
    crash_dir: ExpandedPath | None = None


class HeartbeatCheck(Check[HeartbeatOptions]):
    """Unhealthy when the service's heartbeat file (written by horus-sdk's ``Heartbeat``) is older than
    ``max_age_seconds``, or when a named channel has not progressed within its own limit.

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

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return await asyncio.to_thread(self.probe_inline, ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        path = self.options.path
        try:
            beat = read_json(path, FORMAT_HEARTBEAT)
        except FileNotFoundError:
            return CheckResult.unhealthy(f"no heartbeat file at {path}")
        except (ValueError, OSError) as exc:
            return CheckResult.unhealthy(f"heartbeat file unreadable: {exc}")
        same_boot = self._boot is not None and beat.get("boot_id") == self._boot
        now_mono, now_wall = time.monotonic(), ctx.clock.wall()

        def age_of(entry: dict[str, Any], mono_key: str = "monotonic", wall_key: str = "wall_time") -> float:
            if same_boot and isinstance(entry.get(mono_key), int | float):
                return max(0.0, now_mono - float(entry[mono_key]))
            return max(0.0, now_wall - float(entry.get(wall_key, 0.0)))

        limit = self.options.max_age_seconds
        age = age_of(beat)
        pid = beat.get("pid")
        if age > limit:
            return CheckResult.unhealthy(
                f"heartbeat {humanize.seconds(age)} old, limit {humanize.seconds(limit)}", pid=pid, age_seconds=age
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
                    return CheckResult.unhealthy(f"channel {name}: no progress recorded", pid=pid)
                remaining.append(channel_limit - since)
                continue
            channel_age = age_of(entry)
            if channel_age > channel_limit:
                return CheckResult.unhealthy(
                    f"channel {name}: last progress {humanize.seconds(channel_age)} ago, "
                    f"limit {humanize.seconds(channel_limit)}",
                    pid=pid,
                    channel=name,
                )
            remaining.append(channel_limit - channel_age)
        return CheckResult.healthy(
            f"heartbeat {humanize.seconds(age)} old (pid {pid}, beat {beat.get('sequence')})",
            recheck_in=min(remaining) + DEADLINE_MARGIN_SECONDS,
            pid=pid,
        )

    def evidence(self, since_wall: float | None) -> dict[str, Any]:
        """The newest crash record the service left since ``since_wall``, summarised for a heal's log."""
        if self.options.crash_dir is None:
            return {}
        newest: tuple[float, Path] | None = None
        try:
            for entry in os.scandir(self.options.crash_dir):
                if entry.name.startswith("horus-crash-") and entry.name.endswith(".json"):
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
