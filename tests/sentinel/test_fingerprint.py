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
    assert FINGERPRINT_VERSION == 2
    value = fingerprint(
        monitor="bot", check_type="log_staleness", failure_kind="stale", signature="timeouterror", http_status=504
    )
    assert value == "acc27f90a8d53b13"
    assert len(value) == 16


def test_normalise_masks_what_varies_and_keeps_what_names_the_failure():
    text = (
        "2026-02-25T16:19:27.123Z pid 4121 at 16:19:27 on 2026-02-25 GET https://api.example.com:443/v1/o/77?k=v "
        "from 10.0.0.12:51234 and [::1]:8001 obj 0x7f3a2b1c commit a3f9c2e1b2 id 3f2a9c1e-1111-4222-8333-444455556666 "
        "file /Users/alice/bots/bot.log: HTTP 429 Too Many Requests, [Errno 111] Connection refused, "
        "exit code 137, killed by signal 9"
    )
    assert normalise(text) == (
        "<ts> pid <n> at <time> on <date> get https://<host>.example.com/… from <ip> and <ip> obj <hex> "
        "commit <hex> id <uuid> file bot.log: http 429 too many requests, [errno 111] connection refused, "
        "exit code 137, killed by signal 9"
    )


def test_normalise_leaves_ordinary_words_and_code_alone():
    assert normalise("  std::map   in ETH/daily  'main.py --mode conservative' ") == (
        "std::map in eth/daily 'main.py --mode conservative'"
    )


# Each pair is one failure line as it came on two occasions: only the objects of the service's domain
# (markets, orders, tickers, users, buckets, tables, keys, queues, hosts) differ.
SAME_FAILURE_OTHER_OBJECT = [
    (
        "TimeoutError: timed out placing order on market 'will-it-rain-2028'",
        "TimeoutError: timed out placing order on market 'will-the-fed-cut-rates-in-march'",
    ),
    ("order_id=ab12cd rejected: insufficient margin", "order_id=zq9 rejected: insufficient margin"),
    ("orderId=7781 rejected: insufficient margin", "orderId=ffe0-31 rejected: insufficient margin"),
    ("quote failed symbol=AAPL side=BUY", "quote failed symbol=MSFT side=SELL"),
    ("quote failed for BTC-USD after 3 s", "quote failed for ETH-PERP after 9 s"),
    ("no book for BTC/USDT", "no book for SOL/USDC"),
    ("no book for BTC-28MAR26-60000-C", "no book for ETH-27JUN25-3000-P"),
    ("permission denied for user alice@example.com", "permission denied for user bob.smith+bot@corp.example.org"),
    ("NoSuchBucket: bucket my-data-prod does not exist", "NoSuchBucket: bucket analytics-raw-eu does not exist"),
    ('relation "orders_2026_11" does not exist', 'relation "orders_2025_12" does not exist'),
    ("table orders_2026_11 is locked", "table orders_2025_12 is locked"),
    (
        'WRONGTYPE Operation against a key holding the wrong kind of value: key "sess:af31"',
        ('WRONGTYPE Operation against a key holding the wrong kind of value: key "sess:9bc0e"'),
    ),
    ("publish failed queue=orders.eu-west-1 error=timeout", "publish failed queue=fills.us-east-2 error=timeout"),
    ("market: will-it-rain-2028 closed unexpectedly", "market: btc-above-100k-friday closed unexpectedly"),
    (
        '{"level": "error", "msg": "order timed out", "market": "will-it-rain-2028", "symbol": "AAPL", "id": "a1"}',
        '{"level": "error", "msg": "order timed out", "market": "us-recession-2026", "symbol": "TSLA", "id": "zz"}',
    ),
    (
        "rejected order {'symbol': 'BTC', 'qty': 3, 'tif': 'GTC'}",
        "rejected order {'symbol': 'ETH', 'qty': 1, 'tif': 'IOC'}",
    ),
    ("connect to db-7.prod.example.com:5432 timed out", "connect to replica-b.prod.example.com:5432 timed out"),
    (
        "level=error msg=\"order failed market=x1 order_id=ab12 on 'BTC-USD'\" attempt=3",
        "level=error msg=\"order failed market=y2 order_id=cd34 on 'ETH-PERP'\" attempt=4",
    ),
    (
        '{"level": "error", "msg": "no book for \'will-it-rain-2028\' (symbol=AAPL)"}',
        '{"level": "error", "msg": "no book for \'us-recession-2026\' (symbol=TSLA)"}',
    ),
    (
        "POST https://clob-eu.polymarket.com/order failed: HTTP 429",
        "POST https://clob-us.polymarket.com/order failed: HTTP 429",
    ),
    (
        "ValueError: invalid literal for int() with base 10: 'abc123'",
        "ValueError: invalid literal for int() with base 10: 'x9'",
    ),
]


@pytest.mark.parametrize(("first", "second"), SAME_FAILURE_OTHER_OBJECT)
def test_the_same_failure_on_another_object_of_the_domain_normalises_to_the_same_text(first, second):
    assert normalise(first) == normalise(second)


# Each pair is two different failure modes, or one failure mode at two different places in the code: what
# tells them apart (an exception class, an errno name, a status, a field name, a function, a file) is kept.
DIFFERENT_FAILURES = [
    (
        "TimeoutError: timed out on market 'will-it-rain-2028'",
        "ConnectionRefusedError: refused on market 'will-it-rain-2028'",
    ),
    # A missing field of a record is a bug in the code that reads it: the field name is a name of the code.
    ("KeyError: 'price'", "KeyError: 'size'"),
    ("KeyError: 'best_bid'", "KeyError: 'best_ask'"),
    ("TypeError: 'NoneType' object is not subscriptable", "TypeError: 'int' object is not subscriptable"),
    ("got 'ECONNREFUSED' from the gateway", "got 'ETIMEDOUT' from the gateway"),
    ("socket error errno=ECONNRESET", "socket error errno=EPIPE"),
    ("order status=REJECTED", "order status=EXPIRED"),
    ('{"status": "REJECTED"}', '{"status": "CANCELED"}'),
    ("breaker state=closed", "breaker state=open"),
    ('{"code": -1021, "msg": "rejected"}', '{"code": -2010, "msg": "rejected"}'),
    ('{"error": "insufficient-balance"}', '{"error": "rate-limited"}'),
    ("reason=ORDER_WOULD_CROSS", "reason=POST_ONLY_REJECT"),
    ("method=GET failed", "method=POST failed"),
    ("unexpected 'GET' request", "unexpected 'POST' request"),
    ("ack=true", "ack=false"),
    ("caught 'ConnectionResetError'", "caught 'ConnectionAbortedError'"),
    ('  File "/srv/bot/bot.py", line 3, in place_order', '  File "/srv/bot/bot.py", line 3, in cancel_order'),
    ('  File "/srv/bot/bot.py", line 3, in place_order', '  File "/srv/bot/clob.py", line 3, in place_order'),
    ("request failed: HTTP 429", "request failed: HTTP 503"),
    ("level=error caller=worker.go:88 msg=stalled", "level=error caller=feed.go:88 msg=stalled"),
    ("worker exited with code 1", "worker exited with code 137"),
    ("killed signal=9", "killed signal=15"),
    ("OSError: [Errno 28] No space left on device", "OSError: [Errno 13] Permission denied"),
    ("connect to db.example.com timed out", "connect to cache.example.net timed out"),
    ("failed: out-of-memory", "failed: end-of-file"),
]


@pytest.mark.parametrize(("first", "second"), DIFFERENT_FAILURES)
def test_different_failure_modes_keep_different_text(first, second):
    assert normalise(first) != normalise(second)


def test_normalise_names_what_it_masked():
    text = (
        "ERROR place failed market='will-it-rain-2028' order_id=ab12cd symbol=AAPL pair BTC-USD "
        'user alice@example.com host db-7.prod.example.com bucket my-data-prod key "sess:af31" '
        "queue=orders.eu-west-1 status=REJECTED state=closed KeyError: 'price' in place_order (bot.py)"
    )
    assert normalise(text) == (
        "error place failed market='<id>' order_id=<id> symbol=<id> pair <id> "
        'user <email> host <host>.example.com bucket <id> key "<id>" '
        "queue=<id> status=rejected state=closed keyerror: 'price' in place_order (bot.py)"
    )


def test_normalise_keeps_quoted_phrases_file_names_and_exception_names():
    assert normalise("no process matches 'main.py --mode conservative'") == (
        "no process matches 'main.py --mode conservative'"
    )
    assert normalise('File "bot2.py", line 9, in <module>') == 'file "bot<n>.py", line <n>, in <module>'
    assert normalise("raised 'asyncio.exceptions.TimeoutError' and 'S3UploadFailedError'") == (
        "raised 'asyncio.exceptions.timeouterror' and 's<n>uploadfailederror'"
    )
    assert normalise("can't decode, it doesn't parse 'ab12'") == "can't decode, it doesn't parse '<id>'"
    assert normalise("TCP/IP stack and TLS/SSL and HTTP/2 and UTF-8 and retry-after") == (
        "tcp/ip stack and tls/ssl and http/<n> and utf-<n> and retry-after"
    )


def test_normalise_is_deterministic():
    line = "ERROR order_id=ab12cd symbol=AAPL market 'will-it-rain-2028' on db-7.prod.example.com"
    assert len({normalise(line) for _ in range(20)}) == 1


# A market-making bot timing out on its order call on two days: other markets, order ids, tickers, hosts
# and users; JSON log lines from one logger, logfmt from another, a traceback from asyncio.
TIMEOUT_TUESDAY = [
    '{"time": "2026-03-03T09:12:01Z", "level": "info", "msg": "quoting", "market": "will-it-rain-2028"}',
    'time=2026-03-03T09:12:05Z level=warn msg="slow ack" order_id=ab12cd symbol=AAPL venue=clob-eu.polymarket.com',
    '{"time": "2026-03-03T09:12:09Z", "level": "error", "msg": "order timed out", "market": "will-it-rain-2028", '
    '"orderId": "0x9f3e", "user": "alice@example.com"}',
    "Traceback (most recent call last):",
    '  File "/srv/mm/v3/bot.py", line 88, in place_order',
    "    await asyncio.wait_for(self.clob.post(order), 5)",
    "TimeoutError: order on market 'will-it-rain-2028' not acknowledged within 5 s (symbol=AAPL)",
]
TIMEOUT_FRIDAY = [
    '{"time": "2026-03-06T22:40:17Z", "level": "info", "msg": "quoting", "market": "btc-above-100k-friday"}',
    'time=2026-03-06T22:40:19Z level=warn msg="slow ack" order_id=zz81qp symbol=BTC-USD venue=clob-us.polymarket.com',
    '{"time": "2026-03-06T22:40:31Z", "level": "error", "msg": "order timed out", "market": "btc-above-100k-friday", '
    '"orderId": "0x11aa", "user": "bob@example.org"}',
    "Traceback (most recent call last):",
    '  File "/opt/mm-4.0.2/bot.py", line 91, in place_order',
    "    await asyncio.wait_for(self.clob.post(order), 5)",
    "TimeoutError: order on market 'btc-above-100k-friday' not acknowledged within 7 s (symbol=BTC-USD)",
]
# The same bot on the same market, but now the exchange refuses the connection.
REFUSED_SATURDAY = [
    '{"time": "2026-03-07T08:00:02Z", "level": "error", "msg": "order failed", "market": "will-it-rain-2028", '
    '"orderId": "0x9f3e", "user": "alice@example.com"}',
    "Traceback (most recent call last):",
    '  File "/srv/mm/v3/bot.py", line 88, in place_order',
    "    await asyncio.wait_for(self.clob.post(order), 5)",
    "ConnectionRefusedError: [Errno 111] Connection refused (symbol=AAPL)",
]


def test_signature_of_the_same_timeout_on_other_markets_orders_and_users_is_the_same():
    tuesday = signature(TIMEOUT_TUESDAY)
    assert tuesday == signature(TIMEOUT_FRIDAY)
    assert tuesday.startswith("timeouterror: order on market '<id>' not acknowledged within <n> s (symbol=<id>)")
    assert "will-it-rain" not in tuesday and "alice" not in tuesday
    assert bot_fingerprint(TIMEOUT_TUESDAY) == bot_fingerprint(TIMEOUT_FRIDAY)


def test_signature_of_a_refused_connection_on_the_same_market_is_different():
    assert signature(REFUSED_SATURDAY) != signature(TIMEOUT_TUESDAY)
    assert bot_fingerprint(REFUSED_SATURDAY) != bot_fingerprint(TIMEOUT_TUESDAY)


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
