"""A settlement calendar daemon with no log at all: every tick it computes the next settlement day and
writes it to ``status_file``, reading its weekend days from ``calendar_file`` (JSON) each time.

``next_business_day`` steps forward one day at a time past weekends and holidays. A calendar whose
weekend covers every day of the week makes that loop spin forever, at full CPU, writing nothing.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

from holdout_kit import Service

svc = Service()
status = Path(svc["status_file"])
calendar = Path(svc["calendar_file"])
HOLIDAYS = {datetime.date(2026, 12, 25), datetime.date(2027, 1, 1)}


def next_business_day(day: datetime.date, weekend: set[int]) -> datetime.date:
    day += datetime.timedelta(days=1)
    while day.weekday() in weekend or day in HOLIDAYS:
        day += datetime.timedelta(days=1)
    return day


while True:
    weekend = set(json.loads(calendar.read_text())["weekend"])
    settle = next_business_day(datetime.date.today(), weekend)
    status.write_text(json.dumps({"next_settlement": settle.isoformat(), "computed_at": time.time()}))
    time.sleep(svc.tick_seconds)
