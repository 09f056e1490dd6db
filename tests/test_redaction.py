"""horus.redaction: the one set of rules for what a secret looks like, applied to every text Horus keeps."""

from __future__ import annotations

import pytest

from horus.redaction import redact, redact_line, redact_tree, whole_lines
from horus.sentinel import snapshot


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("connecting with password=hunter2 failed", "connecting with password=*** failed"),
        ("password: hunter2", "password: ***"),
        ("PASSWD=hunter2", "PASSWD=***"),
        ("db_pwd=hunter2", "db_pwd=***"),
        ("client_secret: s3cr3t", "client_secret: ***"),
        ("AUTH_TOKEN=abc123", "AUTH_TOKEN=***"),
        ("apikey=abc123", "apikey=***"),
        ("aws_access_key=abc123", "aws_access_key=***"),
        ("private_key: deadbeef", "private_key: ***"),
        ("basic_auth=user:pw", "basic_auth=***"),
        ("auth: hunter2", "auth: ***"),
        ("passphrase=correct-horse", "passphrase=***"),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic ***"),
        ("curl -H 'Authorization: token ghp_x'", "curl -H 'Authorization: token ***'"),
        ("mysql --password hunter2 -h db", "mysql --password *** -h db"),
        ("tool --api-key=abc123", "tool --api-key=***"),
        ("postgres://app:hunter2@db:5432/orders", "postgres://***@db:5432/orders"),
        ("GET /health?token=abc123&x=1", "GET /health?token=***&x=1"),
        ("key AKIAIOSFODNN7EXAMPLE in env", "key *** in env"),
        ("pushed with ghp_abcdefghijklmnopqrstuvwxyz0123456789", "pushed with ***"),
        ("slack xoxb-123456789012-abcdefghij", "slack ***"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sflKxwRJSMeKKF2QT4fw", "jwt ***"),
        ("stripe sk_live_abcdefghij1234", "stripe ***"),
        # A sentence's own punctuation stays, so a reason quoted in a message still reads as one.
        ("Why: exit 1: password=hunter2. Done: nothing.", "Why: exit 1: password=***. Done: nothing."),
        ("it said Authorization: Bearer abc.def.", "it said Authorization: Bearer ***."),
        ("sent bearer abc.def!", "sent bearer ***!"),
        ("ran mysql --password hunter2.", "ran mysql --password ***."),
    ],
)
def test_every_shape_of_secret_is_masked(line, expected):
    assert redact_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "bot.log last written 312 s ago, limit 300 s",
        "exit 1: connection refused",
        "tokens_used=512 token_type=bearer max_age=30",
        "author: Jane, key points: none",
        "/tmp/pytest-of-root/pytest-1/test_x0/feed-3: does not exist",
        "heartbeat 3.5 s old, limit 2 s; stuck in place_maker_order at bot.py:44",
        "request 8c2b7a4e-1f0b-4c55-9a57-0c6f7e2d1b3a done",
        "sent SIGTERM to pid 13067 (… demo_bot.py --mode conservative …); it exited after 11 ms",
        "http://127.0.0.1:8001/health answered 503 in 12 ms",
    ],
)
def test_ordinary_text_is_left_as_it_is(line):
    assert redact_line(line) == line


def test_redacting_twice_changes_nothing_more():
    once = redact("password=hunter2 Authorization: Bearer abc.def https://u:p@h/x?token=t eyJabcdef.ghijkl.mn")
    assert redact(once) == once
    assert "hunter2" not in once and "abc.def" not in once


def test_a_program_output_is_redacted_line_by_line_keeping_its_line_ends():
    output = "starting\r\npassword=hunter2\nAuthorization: Bearer abc.def\n\ndone\n"
    assert redact(output) == "starting\r\npassword=***\nAuthorization: Bearer ***\n\ndone\n"
    # A separator at a line's end never masks the next line's first word.
    assert redact("token:\nhealthy") == "token:\nhealthy"


def test_every_string_of_details_is_redacted_and_other_values_are_kept():
    details = {
        "exit_code": 3,
        "ok": False,
        "output_tail": "x\npassword=hunter2",
        "pids": [1, 2],
        "nested": {"lines": ("token=abc", 1.5), "none": None},
        "channels": {"password=hunter2": 1},  # a key a service chose (a heartbeat channel's name)
    }
    assert redact_tree(details) == {
        "exit_code": 3,
        "ok": False,
        "output_tail": "x\npassword=***",
        "pids": [1, 2],
        "nested": {"lines": ("token=***", 1.5), "none": None},
        "channels": {"password=***": 1},
    }


def test_sentinel_uses_the_same_rules():
    assert snapshot.redact_line is redact_line


def test_a_tail_that_was_cut_begins_at_a_whole_line():
    assert whole_lines("word=hunter2\nok\n", cut=True) == "ok\n"
    assert whole_lines("password=hunter2\nok\n", 5) == "ok\n", "cut here to five characters"
    assert whole_lines("password=hunter2\nok\n") == "password=hunter2\nok\n", "not cut: kept whole"
    assert whole_lines("ord=hunter2", cut=True) == "", "a single cut line is no line at all"
