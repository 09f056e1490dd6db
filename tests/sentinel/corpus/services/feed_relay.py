"""A tick relay that logs like the Go service it replaced: zap JSON lines, Go's error texts.

Every tick it GETs ``url`` with a ``timeout`` and appends the answer to ``ticks_file``. A failure is logged
as a Go http.Client reports it (``Get "URL": context deadline exceeded (Client.Timeout exceeded while
awaiting headers)``, ``dial tcp HOST:PORT: connect: connection refused``), in the ``error`` field.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from pathlib import Path

from service_kit import Kit

kit = Kit()
log = kit.log


def go_error(url: str, exc: OSError) -> str:
    parts = urllib.parse.urlsplit(url)
    if isinstance(exc, TimeoutError | socket.timeout):
        return f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    if isinstance(exc, ConnectionRefusedError):
        return f'Get "{url}": dial tcp {parts.hostname}:{parts.port}: connect: connection refused'
    return f'Get "{url}": {exc}'


def fetch(url: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=float(kit.get("timeout", 0.4)))
    try:
        conn.request("GET", parts.path)
        return conn.getresponse().read()
    finally:
        conn.close()


def main() -> None:
    url = kit["url"]
    ticks = Path(kit["ticks_file"])
    log.info("relay started", extra={"upstream": url, "caller": "relay/main.go:44"})
    for tick in kit.ticks():
        try:
            body = fetch(url)
        except OSError as exc:
            log.error("fetch ticks failed", extra={"error": go_error(url, exc), "attempt": tick})
            continue
        with ticks.open("a") as out:
            out.write(json.dumps({"tick": tick, "bytes": len(body)}) + "\n")
        log.info("relayed ticks", extra={"count": 12, "latency_ms": 3})
        kit.tick_noise(tick)


main()
