"""The ``clock`` check: is this machine's clock right, against NTP servers and the venue that trades on it."""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.checks.http_health import _check_headers, _check_url
from horus.config.types import PositiveSeconds
from horus.log import redact_url
from horus.timesources import (
    LocalSync,
    NtpReading,
    SourceFailure,
    VenueReading,
    local_sync_state,
    parse_server,
    query_ntp_server,
    query_venue,
)

# A wall clock that moved this much against the monotonic clock between two looks was stepped (set by hand,
# by an NTP daemon that gave up slewing, by a VM resumed from a snapshot); slewing never moves it so fast.
STEP_THRESHOLD_SECONDS = 0.5
# The least time a venue is given to answer its time, whatever samples and query_timeout_seconds say.
VENUE_MIN_WAIT_SECONDS = 1.0
# A venue time this far from this clock is a misread answer (seconds read as milliseconds, a placeholder 0),
# not a clock this far off, unless an NTP server confirms it: it is set aside, never judged, never healed on.
MISREAD_VENUE_OFFSET_SECONDS = 86400.0
# Read in the other unit, a venue time this close to this clock says which unit its field is in.
OTHER_UNIT_CLOSE_SECONDS = 60.0
# Steps kept in details as evidence, newest last.
MAX_STEPS_KEPT = 5

ALERT_SEVERITY = {
    "clock_offset": "warning",
    "clock_offset_cleared": "info",
    "clock_step": "warning",
    "clock_unsynchronized": "warning",
}


def _check_ntp_server(value: str) -> str:
    try:
        host, port = parse_server(value)
    except ValueError:
        raise ValueError(f"must be host or host:port, got {value!r}") from None
    if not host or not 1 <= port <= 65535:
        raise ValueError(f"must be host or host:port with a port 1..65535, got {value!r}")
    return value


class VenueOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    url: Annotated[str, AfterValidator(_check_url)]
    json_field: str | None = None
    unit: Literal["ms", "s"] = "ms"
    headers: Annotated[dict[str, str], AfterValidator(_check_headers)] = Field(default_factory=dict)


class ClockOptions(CheckOptions):
    type: Literal["clock"]
    ntp_servers: list[Annotated[str, AfterValidator(_check_ntp_server)]] = Field(default_factory=list)
    samples: int = Field(5, ge=1, le=50)
    query_timeout_seconds: PositiveSeconds = 1.0
    venue: VenueOptions | None = None
    local_sync: bool = True
    warn_offset_seconds: PositiveSeconds = 0.25
    # None: an offset alone is only ever an alert, so a heal runs only for a clock ahead of the venue.
    critical_offset_seconds: PositiveSeconds | None = 1.0
    max_ahead_of_venue_seconds: PositiveSeconds = 1.0

    @model_validator(mode="after")
    def _something_to_compare_with(self) -> Self:
        if not self.ntp_servers and self.venue is None:
            raise ValueError("give ntp_servers, a venue, or both: the clock needs something to be compared with")
        critical = self.critical_offset_seconds
        if critical is not None and self.warn_offset_seconds > critical:
            raise ValueError(
                f"warn_offset_seconds ({self.warn_offset_seconds:g}) must not exceed critical_offset_seconds "
                f"({critical:g})"
            )
        return self


class ClockCheck(Check[ClockOptions]):
    """Compares this machine's clock with NTP servers and with a trading venue's server time.

    - ``ntp_servers: ["pool.ntp.org", "127.0.0.1:12345"]`` (port 123 unless given): each is asked
      ``samples`` times (default 5) over SNTP, each question waiting at most ``query_timeout_seconds``
      (default 1); the offset is the median of the valid answers. A server that does not answer, sends a
      kiss-of-death, is unsynchronized, or sends back a reply that is not the answer to the question asked
      (a stale or spoofed origin timestamp) is named in the result, never trusted.
    - ``venue: {url, json_field: serverTime, unit: ms|s}``: the venue's time from a JSON field of its
      answer (a dotted path), or without ``json_field`` from its HTTP ``Date`` header, corrected by half the
      round trip. The Date header has a resolution of one second, so it is read as the middle of that
      second and half a second of tolerance is added; only what is certainly ahead counts. ``headers``
      are sent as given (an API key) and never shown. The venue's answer is waited for as long as one
      NTP server's samples take (``samples`` × ``query_timeout_seconds``, at least 1 s).
    - ``local_sync`` (default true): the system's own view, from ``timedatectl show`` (NTPSynchronized) or
      ``chronyc tracking``; where neither answers, that is said in the details. Unsynchronized is an alert.

    An offset beyond ``warn_offset_seconds`` (default 0.25) is an alert, once each time it crosses the
    line; beyond ``critical_offset_seconds`` (default 1; null: never) the clock is unhealthy. Ahead of the
    venue is worse than behind it: a venue rejects signed requests stamped in its future, cancel-all
    included, so ``max_ahead_of_venue_seconds`` (default 1) makes the clock unhealthy on its own.

    With ``heal: {action: halt, command: reduce, control_dir: ...}`` (the bot's horus-sdk control dir) an
    unhealthy clock puts the bot in REDUCING: it may only send orders that reduce its positions, and Horus
    waits for its acknowledgement. It stays so until the operator fixes the clock and runs ``horus control
    NAME resume --reason ...``. To reduce only for a clock ahead of the venue, set
    ``critical_offset_seconds: null``.

    A wall clock step (the wall clock moving more than 0.5 s against the monotonic clock between two
    looks) is an alert and is kept in the details as evidence. When no source answers at all, the probe
    could not observe, which is never a reason to heal.
    """

    options_model = ClockOptions
    timeout_means_unhealthy = False

    def __init__(self, options: ClockOptions) -> None:
        super().__init__(options)
        self._wall_minus_monotonic: float | None = None
        self._steps: list[dict[str, Any]] = []
        self._was_beyond_warn = False
        self._was_synchronized: bool | None = None

    def timeout_seconds(self, default: float) -> float:
        """Long enough for every sample of the slowest server, which are asked one after the other, and for the
        venue's answer, asked meanwhile."""
        options = self.options
        asking = options.samples * options.query_timeout_seconds if options.ntp_servers else 0.0
        venue = self._venue_wait() if options.venue is not None else 0.0
        return max(default, max(asking, venue) + 2.0)

    def _venue_wait(self) -> float:
        """How long the venue's answer is waited for: as long as one NTP server's samples take, so that a venue
        that never answers is a reason of its own, within the probe's time, and the NTP servers still judge."""
        return max(VENUE_MIN_WAIT_SECONDS, self.options.samples * self.options.query_timeout_seconds)

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        options = self.options
        alerts: list[dict[str, str]] = []
        step = self._step(ctx, alerts)
        ntp_tasks = [
            query_ntp_server(server, ctx.clock, samples=options.samples, timeout=options.query_timeout_seconds)
            for server in options.ntp_servers
        ]
        venue = options.venue
        venue_task = (
            query_venue(
                ctx.http,
                ctx.clock,
                venue.url,
                json_field=venue.json_field,
                unit=venue.unit,
                headers=venue.headers,
                timeout=self._venue_wait(),
            )
            if venue is not None
            else None
        )
        sync_task = local_sync_state() if options.local_sync else None
        ntp_results, venue_result, sync = await _gather(ntp_tasks, venue_task, sync_task)

        readings = [r for r in ntp_results if isinstance(r, NtpReading)]
        failures = [r for r in ntp_results if isinstance(r, SourceFailure)]
        if isinstance(venue_result, SourceFailure):
            failures.append(venue_result)
        venue_reading = venue_result if isinstance(venue_result, VenueReading) else None
        if venue_reading is not None and venue is not None:
            misread = _misread_venue(venue_reading, readings, venue, ctx.clock.wall())
            if misread is not None:
                failures.append(SourceFailure(venue_reading.host, misread))
                venue_reading = None
        details: dict[str, Any] = {
            "ntp": [_ntp_details(r) for r in readings],
            "venue": _venue_details(venue_reading, venue.url if venue else None),
            "failures": [{"source": f.source, "reason": f.reason} for f in failures],
            "local_sync": _sync_details(sync),
            "steps": list(self._steps),
        }
        if step is not None:
            details["step"] = step
        self._sync_alert(sync, alerts)
        if not readings and venue_reading is None:
            self._finish_alerts(details, alerts)
            said = "; ".join(f.reason for f in failures)
            return CheckResult.error(f"no time source answered, so the clock cannot be judged: {said}", **details)

        ntp_ahead = statistics.median(r.ahead_seconds for r in readings) if readings else None
        details["ntp_ahead_seconds"] = None if ntp_ahead is None else round(ntp_ahead, 6)
        # The venue's offset counted only as far as it is certain: its reading's uncertainty is given away.
        venue_certain = _certain(venue_reading) if venue_reading else None
        worst = max(abs(x) for x in (ntp_ahead, venue_certain) if x is not None)
        details["worst_offset_seconds"] = round(worst, 6)
        offsets = _describe(venue_reading, readings, ntp_ahead)
        sentence = f"the clock is {offsets}"
        unreadable = "; " + "; ".join(f.reason for f in failures) if failures else ""

        beyond_warn = worst > options.warn_offset_seconds
        if beyond_warn and not self._was_beyond_warn:
            alerts.append(
                _alert("clock_offset", f"{sentence} (warning at {humanize.seconds(options.warn_offset_seconds)})")
            )
        elif not beyond_warn and self._was_beyond_warn:
            alerts.append(_alert("clock_offset_cleared", f"the clock is back within tolerance: {offsets}"))
        self._was_beyond_warn = beyond_warn
        self._finish_alerts(details, alerts)

        if venue_certain is not None and venue_certain > options.max_ahead_of_venue_seconds:
            assert venue_reading is not None
            return CheckResult.unhealthy(
                f"{sentence}; more than {humanize.seconds(options.max_ahead_of_venue_seconds)} ahead of "
                f"{venue_reading.host}, which rejects signed requests stamped in its future, cancel-all "
                f"included{unreadable}",
                condition="ahead_of_venue",
                **details,
            )
        if options.critical_offset_seconds is not None and worst > options.critical_offset_seconds:
            return CheckResult.unhealthy(
                f"{sentence}; the limit is {humanize.seconds(options.critical_offset_seconds)}{unreadable}",
                condition="offset",
                **details,
            )
        return CheckResult.healthy(f"{sentence}{unreadable}", **details)

    def _step(self, ctx: ProbeContext, alerts: list[dict[str, str]]) -> dict[str, Any] | None:
        """A wall clock step since the last look, as evidence, or None."""
        wall, monotonic = ctx.clock.wall(), ctx.clock.monotonic()
        now = wall - monotonic
        before, self._wall_minus_monotonic = self._wall_minus_monotonic, now
        if before is None or abs(now - before) <= STEP_THRESHOLD_SECONDS:
            return None
        moved = now - before
        step = {"at": round(wall, 3), "step_seconds": round(moved, 3)}
        self._steps = [*self._steps, step][-MAX_STEPS_KEPT:]
        way = "forward" if moved > 0 else "back"
        alerts.append(
            _alert(
                "clock_step", f"the wall clock was stepped {way} by {humanize.seconds(abs(moved))} since the last look"
            )
        )
        return step

    def _sync_alert(self, sync: LocalSync | None, alerts: list[dict[str, str]]) -> None:
        if sync is None or sync.synchronized is None:
            return
        if sync.synchronized is False and self._was_synchronized is not False:
            alerts.append(_alert("clock_unsynchronized", f"the system clock is not synchronized ({sync.detail})"))
        self._was_synchronized = sync.synchronized

    @staticmethod
    def _finish_alerts(details: dict[str, Any], alerts: list[dict[str, str]]) -> None:
        if alerts:
            details["alerts"] = alerts


async def _gather(
    ntp_tasks: list[Any], venue_task: Any, sync_task: Any
) -> tuple[list[NtpReading | SourceFailure], VenueReading | SourceFailure | None, LocalSync | None]:
    async def nothing() -> None:
        return None

    results = await asyncio.gather(
        *ntp_tasks,
        venue_task if venue_task is not None else nothing(),
        sync_task if sync_task is not None else nothing(),
    )
    *ntp, venue, sync = results
    return list(ntp), venue, sync


def _misread_venue(
    reading: VenueReading, ntp_readings: list[NtpReading], venue: VenueOptions, now: float
) -> str | None:
    """Why the venue's reading is set aside, or None when it is a reading to judge the clock by."""
    ahead = reading.ahead_seconds
    if abs(ahead) <= MISREAD_VENUE_OFFSET_SECONDS:
        return None
    if any(abs(r.ahead_seconds - ahead) <= MISREAD_VENUE_OFFSET_SECONDS for r in ntp_readings):
        return None  # an NTP server sees the clock as far off: it is the clock
    venue_time = now - ahead
    what = f"its {venue.json_field}" if reading.source == "json" else "its Date header"
    try:
        when = f"reads as {datetime.fromtimestamp(venue_time, UTC):%Y-%m-%d %H:%M} UTC, "
    except (OverflowError, OSError, ValueError):  # beyond the years a datetime holds
        when = "reads as a time "
    sentence = (
        f"venue {reading.host}: {what} {when}{humanize.duration(abs(ahead))} from this clock, and no NTP server "
        "confirms a clock this far off: taken as a misread answer, not a reading"
    )
    if reading.source == "json":
        other_unit, in_other = ("s", venue_time * 1000) if venue.unit == "ms" else ("ms", venue_time / 1000)
        if abs(now - in_other) <= OTHER_UNIT_CLOSE_SECONDS:
            word = "seconds" if other_unit == "s" else "milliseconds"
            sentence += (
                f"; read in {word} it is {humanize.seconds(abs(now - in_other))} from this clock: "
                f"set unit: {other_unit}"
            )
    return sentence


def _certain(reading: VenueReading) -> float:
    """How far ahead (positive) or behind (negative) the clock certainly is, given the reading's uncertainty."""
    magnitude = max(0.0, abs(reading.ahead_seconds) - reading.uncertainty_seconds)
    return magnitude if reading.ahead_seconds >= 0 else -magnitude


def _side(ahead: float) -> str:
    return f"{humanize.seconds(abs(ahead))} {'ahead of' if ahead >= 0 else 'behind'}"


def _describe(venue: VenueReading | None, readings: list[NtpReading], ntp_ahead: float | None) -> str:
    """ "1.8 s ahead of api.venue (HTTP, round trip 12 ms) and 1.7 s ahead of 2 NTP servers"."""
    parts: list[str] = []
    if venue is not None:
        how = "HTTP Date header, 1 s resolution" if venue.source == "date" else "HTTP"
        round_trip = humanize.seconds(venue.round_trip_seconds)
        parts.append(f"{_side(venue.ahead_seconds)} {venue.host} ({how}, round trip {round_trip})")
    if ntp_ahead is not None:
        servers = readings[0].server if len(readings) == 1 else f"{len(readings)} NTP servers"
        if len(readings) == 1:
            servers = f"NTP server {servers}"
        parts.append(f"{_side(ntp_ahead)} {servers}")
    return " and ".join(parts)


def _alert(kind: str, message: str) -> dict[str, str]:
    return {"kind": kind, "message": message, "severity": ALERT_SEVERITY[kind]}


def _ntp_details(reading: NtpReading) -> dict[str, Any]:
    return {
        "server": reading.server,
        "ahead_seconds": round(reading.ahead_seconds, 6),
        "round_trip_ms": round(reading.round_trip_seconds * 1000, 3),
        "stratum": reading.stratum,
        "samples": f"{reading.samples}/{reading.asked}",
        **({"rejected": list(reading.problems)} if reading.problems else {}),
    }


def _venue_details(reading: VenueReading | None, url: str | None) -> dict[str, Any] | None:
    if url is None:
        return None
    if reading is None:
        return {"url": redact_url(url), "answered": False}
    return {
        "url": redact_url(url),
        "host": reading.host,
        "ahead_seconds": round(reading.ahead_seconds, 6),
        "round_trip_ms": round(reading.round_trip_seconds * 1000, 3),
        "source": reading.source,
        "uncertainty_seconds": round(reading.uncertainty_seconds, 6),
    }


def _sync_details(sync: LocalSync | None) -> dict[str, Any]:
    if sync is None:
        return {"skipped": "local_sync is off"}
    return {"tool": sync.tool, "synchronized": sync.synchronized, "detail": sync.detail}
