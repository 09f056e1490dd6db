"""Log lines as an operator reads and parses them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from horus.log import configure, get_logger


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    configure("console")


def test_json_log_timestamps_are_iso_8601_utc_with_an_explicit_z():
    out = io.StringIO()
    configure("json", stream=out)
    get_logger().info("test.event", monitor="bot")
    line = json.loads(out.getvalue())
    stamp = line["timestamp"]
    assert stamp.endswith("Z"), stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_console_log_lines_show_the_time_in_utc_with_an_explicit_z():
    out = io.StringIO()
    configure("console", stream=out)
    get_logger().info("test.event", monitor="bot")
    first_word = out.getvalue().split()[0]
    assert first_word.endswith("Z"), out.getvalue()
    assert datetime.fromisoformat(first_word).utcoffset() == timedelta(0)
