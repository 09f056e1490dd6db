"""A synchronous poller: every tick it calls an upstream API and writes what it got.

Parameters: ``client`` (requests, httpx, urllib, botocore, google); ``url``, or ``url_file`` (a
service-discovery file read every tick) and ``path``; ``timeout``; ``verify`` (a CA bundle for TLS);
``output``: ``artifacts`` in ``out_dir``, or ``status_file``, rewritten after each success; ``errors``:
``exception`` (logged with its traceback), ``line`` (one line with the error's text) or ``silent``
(swallowed); ``exit_on_error``; ``health_port``, where ``/health`` answers 200 while polls succeed and 503
once the last success is older than ``stale_after``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service_kit import Kit

kit = Kit()
log = kit.log
last_success = time.monotonic()


def fetch(url: str) -> Any:
    client = kit.get("client", "requests")
    timeout = float(kit.get("timeout", 1.0))
    if client == "requests":
        import requests

        response = requests.get(url, timeout=timeout, verify=kit.get("verify", True))
        response.raise_for_status()
        return response.json()
    if client == "httpx":
        import httpx

        with httpx.Client(timeout=timeout) as http:
            return json.loads(http.get(url).raise_for_status().content)
    if client == "urllib":
        import urllib.request

        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    if client == "botocore":
        import botocore.session

        kinesis = botocore.session.get_session().create_client("kinesis", endpoint_url=url)
        operation = kit.get("operation", "put_records")
        if operation == "get_records":
            return kinesis.get_records(ShardIterator="AAAAAAAAAAH0b3Jz", Limit=100)
        return kinesis.put_records(StreamName="fills", Records=[{"Data": b"e30=", "PartitionKey": "ETH-PERP"}])
    if client == "google":
        from google.api_core import rest

        return rest.call("POST", url, {"values": [["ETH-PERP", 2211.5]]})
    raise ValueError(f"unknown client {client}")


def target() -> str:
    if kit.get("url_file"):
        return Path(kit["url_file"]).read_text().strip() + kit.get("path", "")
    return str(kit["url"])


def request_context(tick: int) -> dict[str, Any]:
    """What the team logs with every failed call (JSON formats show it, before the exception)."""
    return {
        "method": "POST" if kit.get("client") in ("botocore", "google") else "GET",
        "attempt": 1,
        "request_id": f"req-{tick:06d}-7c1e9a4b2f",
        "headers": {"User-Agent": "desk-poller/4.12.0 python-requests/2.34", "Accept": "application/json",
                    "X-Client-Session": "b3f1c0de-9a52-4e7b-8d21-55aa0c7e1f90", "X-Trace-Id": f"trace-{tick:08x}"},
        "params": {"markets": ["ETH-PERP", "BTC-PERP", "SOL-PERP", "ARB-PERP", "OP-PERP"], "depth": 20},
    }  # fmt: skip


def write_output(tick: int, answer: Any) -> None:
    if kit.get("output", "artifacts") == "artifacts":
        out = Path(kit["out_dir"]) / f"poll-{tick:05d}.json"
        out.write_text(json.dumps(answer))
    else:
        status = Path(kit["status_file"])
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tick": tick, "at": time.time()}))
        tmp.replace(status)


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        age = time.monotonic() - last_success
        healthy = age < float(kit.get("stale_after", 1.0))
        body = json.dumps({"status": "ok" if healthy else "degraded", "last_success_age": round(age, 1)}).encode()
        code = 200 if healthy else 503
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if kit.get("log_format") == "uvicorn":
            phrase = "OK" if code == 200 else "Service Unavailable"
            client = f"{self.client_address[0]}:{self.client_address[1]}"
            log.info('%s - "GET %s HTTP/1.1" %d %s', client, self.path, code, phrase)

    def log_message(self, *args: object) -> None:
        pass


def serve_health() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(kit["health_port"])), Health)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if kit.get("log_format") == "uvicorn":
        log.info("Started server process [%d]", __import__("os").getpid())
        log.info("Waiting for application startup.")
        log.info("Application startup complete.")
        log.info("Uvicorn running on http://127.0.0.1:%d (Press CTRL+C to quit)", int(kit["health_port"]))


def main() -> None:
    global last_success
    if kit.get("health_port"):
        serve_health()
    log.info("poller started, polling every %.1f s", kit.tick_seconds)
    for tick in kit.ticks():
        try:
            answer = fetch(target())
        except Exception as exc:
            errors = kit.get("errors", "exception")
            if errors == "exception":
                log.exception("poll %d failed", tick, extra={"request": request_context(tick)})
            elif errors == "line":
                log.error("poll %d failed: %s", tick, exc, extra={"request": request_context(tick)})
            # "silent": the error is swallowed, as too much code does
            if kit.get("exit_on_error"):
                sys.exit(1)
            continue
        last_success = time.monotonic()
        write_output(tick, answer)
        log.info("poll %d: %d bytes in answer", tick, len(json.dumps(answer)))
        kit.tick_noise(tick)


main()
