"""A partner feed fetcher logging to syslog (rsyslog's file format): it fetches
``https://localhost:<api_port>/feed`` over TLS every tick, verifying the certificate against the partner's
CA (``ca_file``), and saves each answer into ``out_dir``.

The TLS handshake and verification are real (the standard library's ssl module): a certificate issued for
another host name fails with ssl's own CERTIFICATE_VERIFY_FAILED message.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("partner-feed")
URL = f"https://localhost:{svc['api_port']}/feed"
out = Path(svc["out_dir"])
context = ssl.create_default_context(cafile=svc["ca_file"])


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("feed batch saved: 120 records, 0 gaps, 0 duplicates")
    if tick % 7 == 4:
        log.warning("peer did not resume the TLS session; full handshake (resumptions=0)")
    if tick % 9 == 2:
        log.info("certificate of localhost valid for another 211 days")


svc.history(routine)
log.info("partner feed starting, source %s", URL)
tick = 0
while True:
    try:
        with urllib.request.urlopen(URL, context=context, timeout=2.0) as answer:
            (out / f"feed-{tick:06d}.json").write_bytes(answer.read())
        routine(tick)
    except urllib.error.URLError as exc:
        svc.failing()
        log.error("fetch of %s failed: %s", URL, exc)
        time.sleep(0.3)
    tick += 1
    svc.sleep()
