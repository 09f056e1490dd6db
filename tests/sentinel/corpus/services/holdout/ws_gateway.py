"""A Node.js websocket gateway (stand-in) logging with pino: it listens on ``port`` on every address, as
``server.listen(port)`` does, and answers ``/healthz``.

The bind is real: when another process holds the port, the bind fails with EADDRINUSE and the gateway
logs the error as Node describes it (``listen EADDRINUSE: address already in use :::8080``, with its
``code``, ``errno``, ``syscall``) at pino's fatal level, then exits 1, as an unhandled 'error' event does.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from holdout_kit import Service

svc = Service()
log = svc.logger("gateway")
PORT = int(svc["port"])


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"ok","connections":14}'
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def routine(tick: int) -> None:
    if tick % 3 == 0:
        log.info("ws stats", extra={"connections": 14, "messagesOut": 1840 + tick, "errors": 0, "dropped": 0})
    if tick % 5 == 2:
        err = {
            "type": "Error",
            "message": "aborted",
            "stack": "Error: aborted\n    at connResetException (node:internal/errors:787:14)\n"
            "    at abortIncoming (node:_http_server:793:17)\n    at Socket.socketOnClose (node:_http_server:787:3)",
            "code": "ECONNRESET",
        }
        log.error("request errored", extra={"reqId": f"req-{tick % 97:x}", "err": err})
    if tick % 7 == 4:
        log.warning("client closed connection before upgrade", extra={"remoteAddress": "::ffff:10.0.3.17"})


svc.history(routine)
try:
    server = DualStackServer(("::", PORT), Handler)
except OSError as exc:
    code = {98: "EADDRINUSE", 13: "EACCES"}.get(exc.errno or 0, "EUNKNOWN")
    message = f"listen {code}: {'address already in use' if code == 'EADDRINUSE' else exc.strerror} :::{PORT}"
    stack = (
        f"Error: {message}\n    at Server.setupListenHandle [as _listen2] (node:net:1872:16)\n"
        "    at listenInCluster (node:net:1920:12)\n    at Server.listen (node:net:2008:7)\n"
        "    at Object.<anonymous> (/srv/gateway/dist/server.js:41:8)\n"
        "    at Module._compile (node:internal/modules/cjs/loader:1256:14)"
    )
    err = {
        "type": "Error",
        "message": message,
        "stack": stack,
        "code": code,
        "errno": -(exc.errno or 0),
        "syscall": "listen",
        "address": "::",
        "port": PORT,
    }
    log.critical("server failed to start", extra={"err": err})
    sys.exit(1)
log.info(f"Server listening at http://[::]:{PORT}")
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
tick = 0
while True:
    routine(tick)
    tick += 1
    svc.sleep()
