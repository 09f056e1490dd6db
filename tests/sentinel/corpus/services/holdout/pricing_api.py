"""A pricing API run the way gunicorn runs a sync worker, with gunicorn's error log.

The arbiter's lines come first; then the worker boots, which loads ``config/settings.yaml`` (beside this
file, in the service's git work tree) with PyYAML and serves ``/health`` on ``port``. A settings file that
does not parse fails the worker's boot: gunicorn logs "Exception in worker process" with the traceback,
the worker exits, and the master shuts down with "Worker failed to boot." (exit 3).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from holdout_kit import Service

svc = Service()
log = svc.logger("gunicorn.error")
HERE = Path(__file__).resolve().parent


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def load_settings() -> dict[str, object]:
    with open(HERE / "config" / "settings.yaml") as f:
        settings = yaml.safe_load(f)
    if not isinstance(settings, dict):
        raise ValueError("config/settings.yaml: expected a mapping")
    return settings


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("repriced 412 instruments in 38 ms (stale=0 rejected=0)")
    if tick % 8 == 5:
        log.warning("Invalid request from ip=10.0.4.21: Invalid HTTP request line: ''")
    if tick % 11 == 7:
        log.debug("Closing connection.")


def on_term(signum: int, frame: object) -> None:
    log.info("Handling signal: term")
    log.info("Worker exiting (pid: %d)", os.getpid())
    log.info("Shutting down: Master")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
svc.history(routine)
port = int(svc["port"])
log.info("Starting gunicorn 22.0.0")
log.info("Listening at: http://127.0.0.1:%d (%d)", port, os.getpid())
log.info("Using worker: sync")
log.info("Booting worker with pid: %d", os.getpid())
try:
    settings = load_settings()
except Exception:
    log.error("Exception in worker process", exc_info=True)
    log.info("Worker exiting (pid: %d)", os.getpid())
    log.info("Shutting down: Master")
    log.info("Reason: Worker failed to boot.")
    sys.exit(3)
server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
log.info("pricing ready: %d markets, spread %s bps", len(settings.get("markets", [])), settings.get("spread_bps"))
tick = 0
while True:
    routine(tick)
    tick += 1
    time.sleep(svc.tick_seconds)
