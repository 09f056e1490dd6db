"""A staleness limit shorter than the service's own heartbeat interval: Horus would heal a healthy service
between two beats. The interval is known from the SDK's heartbeat file (its ``interval`` field)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from horus import humanize
from horus.doctor.findings import PROBLEM, Finding
from horus.doctor.reading import Unreadable, read_bounded
from horus.doctor.subject import Host, Subject

KIND = "limits"

HEARTBEAT_FILE_MAX_BYTES = 256 * 1024


def audit(subject: Subject, host: Host) -> list[Finding]:
    intervals = [
        (options.path, interval)
        for options in subject.checks
        if options.type == "heartbeat" and options.path is not None
        for interval in [_interval(options.path)]
        if interval is not None
    ]
    if not intervals:
        return []
    heartbeat_file, interval = max(intervals, key=lambda item: item[1])
    findings = []
    for options in subject.checks:
        if options.type not in ("log_staleness", "heartbeat") or options.max_age_seconds >= interval:
            continue
        allows = humanize.seconds(options.max_age_seconds)
        if options.type == "heartbeat":
            what = f"the heartbeat check allows {allows} between beats"
        else:
            what = f"log_staleness allows {allows} without a write to {options.log_file}"
        findings.append(
            Finding(
                PROBLEM,
                subject.monitor,
                KIND,
                f"{what}, but the service beats every {humanize.seconds(interval)} (the interval in "
                f"{heartbeat_file}), so Horus would heal it while it is healthy",
                f"raise max_age_seconds above {humanize.seconds(interval)} (for example to "
                f"{humanize.seconds(interval * 3)}, which leaves room for two late beats)",
            )
        )
    return findings


def _interval(path: Path) -> float | None:
    try:
        document = json.loads(read_bounded(path, HEARTBEAT_FILE_MAX_BYTES))
    except (Unreadable, ValueError):
        return None
    interval = document.get("interval") if isinstance(document, dict) else None
    # JSON's Infinity or NaN is no interval: with it every limit would be "shorter than the beat".
    if isinstance(interval, int | float) and not isinstance(interval, bool) and 0 < interval < math.inf:
        return float(interval)
    return None
