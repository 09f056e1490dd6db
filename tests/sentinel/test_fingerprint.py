from __future__ import annotations

import inspect

import pytest

import horus.sentinel
from horus.sentinel.fingerprint import (
    FAILURE_KINDS,
    FINGERPRINT_VERSION,
    MAX_SIGNATURE_CHARS,
    failure_kind,
    fingerprint,
    normalise,
    signature,
)

# The polymarket bot hanging on its order call, as its log tail looked on two different days: other
# pids, timestamps, order and request ids, another deploy directory, other markets being scanned.
MONDAY_TAIL = [
    "2026-02-23 16:18:06,412 INFO  [main] heartbeat ok (pid 4121, 1893 cycles)",
    "2026-02-23 16:19:20,118 INFO  [scan] ETH/daily score 89/100 STRONG UP",
    "2026-02-23 16:19:27,003 WARNING [exec] place_maker_order slow: 12.4 s for order ord7f3k2m9x8q1w5e4r",
    "2026-02-23 16:19:27,901 ERROR [exec] request 3f2a9c1e-1111-4222-8333-444455556666 to "
    "https://clob.polymarket.com/order?nonce=1771863567 failed: HTTP 429 Too Many Requests",
    "Traceback (most recent call last):",
    '  File "/Users/alice/bots/polymarket/v1/bot.py", line 212, in _execute_signal',
    "    order_id = await self.polymarket.place_maker_order(market, direction, bet_size)",
    '  File "/Users/alice/bots/polymarket/v1/clob.py", line 88, in place_maker_order',
    "    raise RateLimited(response.status)",
    "clob.RateLimitedError: HTTP 429 after 3 retries (retry-after 17 s)",
    "2026-02-23 16:19:28,000 INFO  [scan] BTC/4h score 41/100 WEAK",
]
THURSDAY_TAIL = [
    "2026-02-26 03:02:44,950 INFO  [main] heartbeat ok (pid 90211, 77 cycles)",
    "2026-02-26 03:04:11,273 INFO  [scan] SOL/weekly score 64/100 LEAN DOWN",
    "2026-02-26 03:04:12,560 WARNING [exec] place_maker_order slow: 8.9 s for order ordq9w8e7r6t5y4u3i2",
    "2026-02-26 03:04:13,004 ERROR [exec] request 0b9e2d47-aaaa-4bbb-9ccc-ddddeeeeffff to "
    "https://clob.polymarket.com/order?nonce=1772074999 failed: HTTP 429 Too Many Requests",
    "Traceback (most recent call last):",
    '  File "/opt/bots/polymarket-2.3.1/bot.py", line 215, in _execute_signal',
    "    order_id = await self.polymarket.place_maker_order(market, direction, bet_size)",
    '  File "/opt/bots/polymarket-2.3.1/clob.py", line 90, in place_maker_order',
    "    raise RateLimited(response.status)",
    "clob.RateLimitedError: HTTP 429 after 5 retries (retry-after 3 s)",
]
# Another day, another failure: the exchange answering 503 and the client giving up on a dropped socket.
OUTAGE_TAIL = [
    "2026-03-02 11:40:01,220 INFO  [scan] ETH/daily score 72/100 UP",
    "2026-03-02 11:40:02,331 ERROR [exec] request 11111111-2222-4333-8444-555555555555 to "
    "https://clob.polymarket.com/order failed: HTTP 503 Service Unavailable",
    "Traceback (most recent call last):",
    '  File "/opt/bots/polymarket-2.3.1/clob.py", line 61, in _send',
    "    raise ConnectionResetError(104, 'Connection reset by peer')",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
]


def bot_fingerprint(tail: list[str], *, kind: str = "stale", crash: str | None = None, **extra: object) -> str:
    return fingerprint(
        monitor="polymarket-bot",
        check_type="log_staleness",
        failure_kind=kind,
        signature=signature(tail, crash),
        **extra,
    )


def test_the_same_failure_on_another_day_has_the_same_fingerprint():
    assert signature(MONDAY_TAIL) == signature(THURSDAY_TAIL)
    assert bot_fingerprint(MONDAY_TAIL) == bot_fingerprint(THURSDAY_TAIL)


def test_the_same_hang_reported_by_the_sdk_watchdog_has_the_same_fingerprint():
    monday = "channel 'scan' made no progress for 3.1 s; stuck in place_maker_order at /srv/a/bot.py:44"
    thursday = "channel 'scan' made no progress for 12.7 s; stuck in place_maker_order at /home/b/bot.py:44"
    assert bot_fingerprint([], crash=monday) == bot_fingerprint([], crash=thursday)
    elsewhere = "channel 'scan' made no progress for 3.1 s; stuck in fetch_orderbook at /srv/a/bot.py:80"
    assert bot_fingerprint([], crash=monday) != bot_fingerprint([], crash=elsewhere)


def test_a_different_kind_of_failure_has_a_different_fingerprint():
    assert bot_fingerprint(OUTAGE_TAIL) != bot_fingerprint(MONDAY_TAIL)
    assert bot_fingerprint(MONDAY_TAIL, kind="channel_stalled") != bot_fingerprint(MONDAY_TAIL, kind="stale")


def test_a_fingerprint_counts_the_http_status_by_class_and_the_signal_by_name():
    assert bot_fingerprint([], http_status=502) == bot_fingerprint([], http_status=503)
    assert bot_fingerprint([], http_status=429) != bot_fingerprint([], http_status=503)
    assert bot_fingerprint([], signal=9) == bot_fingerprint([], signal="SIGKILL") == bot_fingerprint([], signal="kill")
    assert bot_fingerprint([], exit_code=1) != bot_fingerprint([], exit_code=137)


def test_a_fingerprint_is_stable_across_releases_unless_its_version_changes():
    # If this fails, what fingerprints are computed from changed: bump FINGERPRINT_VERSION (and this value).
    assert FINGERPRINT_VERSION == 1
    value = fingerprint(
        monitor="bot", check_type="log_staleness", failure_kind="stale", signature="timeouterror", http_status=504
    )
    assert value == "eba2576dba950218"
    assert len(value) == 16


def test_normalise_masks_what_varies_and_keeps_what_names_the_failure():
    text = (
        "2026-02-25T16:19:27.123Z pid 4121 at 16:19:27 on 2026-02-25 GET https://api.example.com:443/v1/o/77?k=v "
        "from 10.0.0.12:51234 and [::1]:8001 obj 0x7f3a2b1c commit a3f9c2e1b2 id 3f2a9c1e-1111-4222-8333-444455556666 "
        "file /Users/alice/bots/bot.log: HTTP 429 Too Many Requests, [Errno 111] Connection refused, "
        "exit code 137, killed by signal 9"
    )
    assert normalise(text) == (
        "<ts> pid <n> at <time> on <date> get https://api.example.com/… from <ip> and <ip> obj <hex> "
        "commit <hex> id <uuid> file bot.log: http 429 too many requests, [errno 111] connection refused, "
        "exit code 137, killed by signal 9"
    )


def test_normalise_leaves_ordinary_words_and_code_alone():
    assert normalise("  std::map   in ETH/daily  'main.py --mode conservative' ") == (
        "std::map in eth/daily 'main.py --mode conservative'"
    )


def test_signature_puts_the_exception_and_where_it_was_raised_first():
    first, frame, *_ = signature(MONDAY_TAIL).split(" | ")
    assert first == "clob.ratelimitederror: http 429 after <n> retries (retry-after <n> s)"
    assert frame == 'file "clob.py", line <n>, in place_maker_order'


def test_signature_leaves_out_progress_lines_and_is_bounded():
    assert signature(["INFO scan ETH/daily score 89", "INFO heartbeat ok"]) == ""
    noisy = [f"ERROR worker {name} failed: " + "x" * 200 for name in ("alpha", "beta", "gamma", "delta")]
    assert len(signature(noisy)) <= MAX_SIGNATURE_CHARS


def test_signature_puts_the_crash_summary_before_the_log():
    text = signature(OUTAGE_TAIL, "event loop blocked for 12.0 s in place_maker_order")
    assert text.startswith("event loop blocked for <n> s in place_maker_order | connectionreseterror: [errno 104]")


@pytest.mark.parametrize(
    ("check_type", "reason", "kind"),
    [
        ("log_staleness", "bot.log last written 312 s ago, limit 300 s", "stale"),
        ("log_staleness", "bot.log (rotated to bot.log.1) last written 9.2 s ago, limit 3 s", "stale"),
        ("log_staleness", "bot.log does not exist (/srv/bot/bot.log)", "missing"),
        ("file_exists", "prices.csv is 0 bytes, minimum 10", "too_small"),
        ("file_exists", "prices.csv last written 2 h ago, limit 600 s", "stale"),
        ("heartbeat", "heartbeat 3.5 s old, limit 2 s", "stale"),
        ("heartbeat", "channel scan: last progress 95 s ago, limit 60 s", "channel_stalled"),
        ("heartbeat", "channel orders: no progress recorded", "channel_stalled"),
        ("heartbeat", "no heartbeat file at /srv/bot/hb.json", "no_heartbeat"),
        ("heartbeat", "no heartbeat received on udp://127.0.0.1:9123 in 30 s", "no_heartbeat"),
        ("process_alive", "no process matches 'main.py --mode conservative'", "process_missing"),
        ("process_alive", "1 process matches 'worker' (pid 4121), minimum 2", "process_missing"),
        ("http_health", "HTTP 503 in 45 ms, expected 2xx", "http_status"),
        ("http_health", "HTTP 200 in 12 ms, body does not contain 'ok'", "bad_body"),
        ("http_health", "HTTP 200 in 12 ms, db.connected is false, expected true", "bad_body"),
        ("http_health", "connection refused by 127.0.0.1:8001", "refused"),
        ("http_health", "no answer from 127.0.0.1:8001 in time", "no_response"),
        ("http_health", "probe did not finish within 10 s", "no_response"),
        ("http_health", "127.0.0.1:8001 closed the connection without answering", "dropped"),
        ("http_health", "cannot resolve api.example.com (Name or service not known)", "dns"),
        ("http_health", "TLS certificate of api.example.com:443 is not trusted: expired", "tls"),
        ("port_open", "127.0.0.1:18789 refused the connection", "refused"),
        ("port_open", "10.0.0.5:18789 cannot be reached: No route to host", "unreachable"),
        ("docker_container", "container mc-backend is not running (status exited, exit code 137)", "service_down"),
        ("docker_container", "container mc-backend is running but unhealthy (3 failures in a row)", "unhealthy"),
        ("launchd_service", "com.example.gateway is loaded but not running (state = waiting)", "service_down"),
        ("systemd_service", "bot.service is failed", "service_down"),
        ("command", "exit 2: database is locked", "command_failed"),
        ("command", "killed by SIGKILL", "command_failed"),
        ("artifact_growth", "no new files matching *.md in out in the last 10 min (still 42)", "no_output"),
        ("artifact_growth", "2 new files matching *.md in out in the last 10 min, need 3 (now 44)", "no_output"),
        ("artifact_growth", "trades.csv did not grow in the last 5 min (still 1,024 bytes)", "no_output"),
        ("artifact_growth", "trades: count 1,200, +0 in the last 10 min, need +1", "no_output"),
        ("artifact_growth", "trades: latest row 2026-02-25 03:14 is 2 h old, limit 1 h", "no_output"),
        ("artifact_growth", "output directory /srv/out does not exist", "missing"),
        ("some_future_check", "something odd", "unhealthy"),
    ],
)
def test_failure_kind_classifies_the_reasons_the_checks_give(check_type, reason, kind):
    assert failure_kind(check_type, reason) == kind
    assert kind in FAILURE_KINDS


def test_the_package_exports_its_api_and_keeps_the_fingerprint_module_reachable():
    assert all(hasattr(horus.sentinel, name) for name in horus.sentinel.__all__)
    # Re-exporting the function fingerprint() would shadow the module of the same name.
    assert inspect.ismodule(horus.sentinel.fingerprint)
