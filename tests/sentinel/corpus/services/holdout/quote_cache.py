"""A quote cache API: serves the latest quotes on its port and keeps them in Redis.

Parameters: ``port`` (its own), ``redis_port``. While Redis answers, each tick stores the quotes and the
HTTP port answers. When Redis refuses connections it retries three times, then shuts down (closing its
port) with redis-py's ConnectionError, as a service built on redis-py does.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from holdout_kit import Service

svc = Service()
log = svc.logger("quotecache.redis")
http_log = svc.logger("quotecache.http")


class RedisConnectionError(Exception):
    """redis-py's ConnectionError, as its traceback names it."""


RedisConnectionError.__module__ = "redis.exceptions"
RedisConnectionError.__qualname__ = RedisConnectionError.__name__ = "ConnectionError"


class RedisConnection:
    """A redis-py style connection: one socket, RESP commands, its error messages."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None

    def connect(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError as exc:
            raise RedisConnectionError(self._error_message(exc)) from exc

    def _error_message(self, exc: OSError) -> str:
        # redis-py: "Error {errno} connecting to {host}:{port}. {strerror}."
        return f"Error {exc.errno} connecting to {self.host}:{self.port}. {exc.strerror}."

    def command(self, *args: str) -> bytes:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        body = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
        try:
            self.sock.sendall(body)
            reply = self.sock.recv(512)
        except OSError as exc:
            self.sock.close()
            self.sock = None
            raise RedisConnectionError(f"Error while reading from {self.host}:{self.port} : {exc}") from exc
        if not reply:
            self.sock.close()
            self.sock = None
            raise RedisConnectionError("Connection closed by server.")
        return reply


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("cached 48 quotes in 2.1 ms (pipeline=1)")
    if tick % 5 == 1:
        log.info("redis pool: in_use=1 idle=4 errors=0 retries=0 timeouts=0")
    if tick % 7 == 2:
        log.warning("slow redis command: EVALSHA quote_merge took 152 ms (slowlog threshold 100 ms)")
    if tick % 6 == 4:
        http_log.warning(
            "client 127.0.0.1:%d went away before the response was sent: [Errno 104] Connection reset by peer",
            41000 + tick % 900,
        )


svc.history(routine)
server = ThreadingHTTPServer(("127.0.0.1", int(svc["port"])), Health)
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
http_log.info("listening on http://127.0.0.1:%s", svc["port"])
redis = RedisConnection("localhost", int(svc["redis_port"]))
tick = 0
failures = 0
while True:
    try:
        redis.command("SET", "quotes:ETH-PERP", "2211.5")
        failures = 0
        routine(tick)
    except RedisConnectionError as exc:
        failures += 1
        svc.failing()
        if failures <= 3:
            log.warning("redis unavailable (%s); retry %d/3 in 0.3 s", exc, failures)
            time.sleep(0.3)
            continue
        log.critical("cache backend unavailable after 3 retries, shutting down", exc_info=True)
        server.shutdown()
        server.server_close()
        http_log.info("stopped listening on port %s", svc["port"])
        sys.exit(1)
    tick += 1
    svc.sleep()
