"""A positions API behind gunicorn's logs: every request checks a connection out of SQLAlchemy's QueuePool.

Errors go to gunicorn's error log (``[time] [pid] [LEVEL] message``), requests to its access log (the
common log format gunicorn writes). A database error answers 502, as the desk's proxy expects. Parameters:
``port``, ``database_url``, ``access_log``, ``pool_timeout``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from holdout_kit import Service
from sqlalchemy import create_engine, exc, text

svc = Service()
log = svc.logger("gunicorn.error")
engine = create_engine(svc["database_url"], pool_size=5, max_overflow=10, pool_timeout=svc["pool_timeout"])


class AccessFormatter(logging.Formatter):
    """gunicorn's default access_log_format: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(record.created))
        return record.getMessage().replace("[%(t)s]", f"[{stamp}]")


access = logging.getLogger("gunicorn.access")
access_handler = logging.FileHandler(svc["access_log"])
access_handler.setFormatter(AccessFormatter())
for back_dating in svc.handler.filters:
    access_handler.addFilter(back_dating)
access.handlers[:] = [access_handler]
access.setLevel(logging.INFO)
access.propagate = False


def access_line(path: str, status: int, size: int, agent: str) -> None:
    access.info(f'127.0.0.1 - - [%(t)s] "GET {path} HTTP/1.1" {status} {size} "-" "{agent}"')


def routine(tick: int) -> None:
    if tick == 0:
        log.info("Starting gunicorn 21.2.0")
        log.info("Listening at: http://127.0.0.1:%d (%d)", svc["port"], os.getpid())
        log.info("Using worker: gthread")
        log.info("Booting worker with pid: %d", os.getpid() + 1)
    access_line("/v1/positions?account=acct-7", 200, 118, "Mozilla/5.0 (X11; Linux x86_64) desk-dashboard/4.2")
    access_line("/healthz", 200, 30, "kube-probe/1.29")
    if tick % 6 == 2:
        log.info(
            "db pool: Pool size: 5  Connections in pool: 4 Current Overflow: -4 Current Checked out connections: 1"
        )
    if tick % 10 == 7:
        log.warning("slow query (812 ms): SELECT account, market, qty, avg_px FROM positions WHERE account = 'acct-7'")
    if tick % 15 == 9:
        # A dashboard tab closed before its answer was written: harmless, logged with its traceback.
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            log.exception("Error handling request /v1/positions?account=acct-7")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, body = self.answer()
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            return
        access_line(self.path, status, len(payload), self.headers.get("User-Agent", "-"))

    def answer(self) -> tuple[int, object]:
        try:
            with engine.connect() as conn:
                if self.path.startswith("/healthz"):
                    conn.execute(text("SELECT 1")).scalar()
                    return 200, {"status": "ok", "db": "ok"}
                rows = conn.execute(
                    text("SELECT account, market, qty, avg_px FROM positions WHERE account = 'acct-7'")
                ).all()
                return 200, {"positions": rows}
        except exc.SQLAlchemyError:
            log.exception("Exception on %s [GET]", self.path.split("?")[0])
            return 502, {"error": "database unavailable"}

    def log_message(self, format: str, *args: object) -> None:
        pass  # requests are written to the access log by do_GET


svc.history(routine)
server = ThreadingHTTPServer(("127.0.0.1", svc["port"]), Handler)
server.daemon_threads = True
log.info("Booting worker with pid: %d", os.getpid())
server.serve_forever()
