"""A Go quote mirror (stand-in) logging with zap's production encoder: every tick it GETs ``/v1/quotes``
with a client timeout (``client_timeout``), three attempts per sync, and writes ``state_file`` after each success.

Timeouts are real (a socket timeout on the loopback API); they are worded as Go's net/http words a
client timeout: ``context deadline exceeded (Client.Timeout exceeded while awaiting headers)``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from holdout_kit import Service

svc = Service()
log = svc.logger("mirror")
URL = f"http://127.0.0.1:{svc['api_port']}/v1/quotes"
state = Path(svc["state_file"])
CLIENT_TIMEOUT = float(svc.get("client_timeout", 0.5))
TIMEOUT_TEXT = f'Get "{URL}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'


def get() -> bytes:
    try:
        with urllib.request.urlopen(URL, timeout=CLIENT_TIMEOUT) as answer:
            return bytes(answer.read())
    except TimeoutError as exc:
        raise RuntimeError(TIMEOUT_TEXT) from exc


def sync() -> int:
    for attempt in (1, 2, 3):
        try:
            get()
            return attempt
        except RuntimeError as exc:
            if attempt < 3:
                log.warning(
                    "sync slow, retrying", extra={"attempt": attempt, "error": str(exc), "caller": "mirror/sync.go:118"}
                )
    raise RuntimeError(TIMEOUT_TEXT)


def routine(tick: int) -> None:
    if tick % 2 == 0:
        log.info("sync ok", extra={"quotes": 512, "attempt": 1, "caller": "mirror/sync.go:131"})
    if tick % 9 == 4:
        # A slow answer now and then, recovered on the next attempt: routine on this link.
        log.warning("sync slow, retrying", extra={"attempt": 1, "error": TIMEOUT_TEXT, "caller": "mirror/sync.go:118"})
        log.info("sync ok", extra={"quotes": 512, "attempt": 2, "caller": "mirror/sync.go:131"})
    if tick % 5 == 2:
        log.info("mirror stats", extra={"synced": 60, "failed": 0, "timeouts": 0, "caller": "mirror/stats.go:40"})


svc.history(routine)
log.info("quote mirror starting", extra={"source": URL, "caller": "cmd/mirror/main.go:52"})
tick = 0
while True:
    try:
        sync()
        state.write_text(json.dumps({"last_success": time.time()}))
        routine(tick)
    except RuntimeError as exc:
        svc.failing()
        log.error(
            "sync failed",
            extra={
                "attempts": 3,
                "error": str(exc),
                "caller": "mirror/sync.go:142",
                "stack": "main.(*Mirror).sync\n\t/src/mirror/sync.go:142\nmain.(*Mirror).Run\n\t/src/mirror/run.go:27",
            },
        )
    tick += 1
    svc.sleep()
