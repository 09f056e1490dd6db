"""An ingest service: a worker thread parses batches, the main thread serves ``/health`` on ``health_port``.

It limits its own address space (``memory_limit_mb``, RLIMIT_AS) to protect the host. After the healthy
period the worker preallocates a buffer for a batch far larger than that: MemoryError, logged, and the
thread is gone. ``/health`` then answers 503, and its access lines keep coming.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service_kit import Kit

kit = Kit()
log = kit.log
worker_alive = True
last_batch = time.monotonic()


def ingest() -> None:
    global worker_alive, last_batch
    try:
        for tick in kit.ticks():
            size = 64 * 1024
            if not kit.healthy():
                kit.failing()
                size = int(kit["big_batch_bytes"])
            buffer = bytearray(size)
            last_batch = time.monotonic()
            log.info("batch %d ingested (%d bytes)", tick, len(buffer))
            kit.tick_noise(tick)
    except MemoryError:
        log.exception("ingest worker died")
        worker_alive = False


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        healthy = worker_alive and time.monotonic() - last_batch < 1.0
        body = json.dumps({"worker": "running" if worker_alive else "dead"}).encode()
        self.send_response(200 if healthy else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        log.info("GET /health %d", 200 if healthy else 503)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    limit = int(kit["memory_limit_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    server = ThreadingHTTPServer(("127.0.0.1", int(kit["health_port"])), Health)
    threading.Thread(target=ingest, name="ingest", daemon=True).start()
    log.info("ingest service listening on 127.0.0.1:%d", int(kit["health_port"]))
    server.serve_forever(poll_interval=0.05)


main()
