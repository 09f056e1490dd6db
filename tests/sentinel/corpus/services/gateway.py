"""An HTTP gateway on ``port`` that logs its start and its failure to bind the way its framework does.

``style``: ``uvicorn`` (uvicorn's start-up lines and its bind error, on stderr), ``werkzeug`` (the Flask
development server's banner, access lines and its "Port ... is in use by another program"), or ``zap``
(a Go service's fatal line in ``log_file``). It exits with status 1 when the port is taken.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from service_kit import Kit

kit = Kit()
log = kit.log
style = kit["style"]
port = int(kit["port"])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if style == "werkzeug":
            stamp = time.strftime("%d/%b/%Y %H:%M:%S")
            sys.stderr.write(f'{self.client_address[0]} - - [{stamp}] "GET {self.path} HTTP/1.1" 200 -\n')
        elif style == "uvicorn":
            log.info('%s:%d - "GET %s HTTP/1.1" 200 OK', *self.client_address, self.path)

    def log_message(self, *args: object) -> None:
        pass


class Server(HTTPServer):
    allow_reuse_address = True


def bind_failed(exc: OSError) -> None:
    if style == "uvicorn":
        log.error("[Errno %d] error while attempting to bind on address ('127.0.0.1', %d): %s", exc.errno, port,
                  exc.strerror.lower() if exc.strerror else exc)  # fmt: skip
        log.info("Waiting for application shutdown.")
        log.info("Application shutdown complete.")
    elif style == "werkzeug":
        sys.stderr.write(
            "Address already in use\n"
            f"Port {port} is in use by another program. Either identify and stop that program, or start the server"
            " with a different port.\n"
        )
    else:
        log.critical(
            "server failed to start",
            extra={
                "error": f"listen tcp 127.0.0.1:{port}: bind: address already in use",
                "caller": "cmd/gateway/main.go:61",
            },
        )
    sys.exit(1)


def main() -> None:
    if style == "uvicorn":
        log.info("Started server process [%d]", os.getpid())
        log.info("Waiting for application startup.")
        log.info("Application startup complete.")
    try:
        server = Server(("127.0.0.1", port), Handler)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        bind_failed(exc)
        return
    if style == "uvicorn":
        log.info("Uvicorn running on http://127.0.0.1:%d (Press CTRL+C to quit)", port)
    elif style == "werkzeug":
        sys.stderr.write(
            " * Serving Flask app 'desk_gateway'\n * Debug mode: off\n"
            "WARNING: This is a development server. Do not use it in a production deployment. Use a production WSGI"
            " server instead.\n"
            f" * Running on http://127.0.0.1:{port}\nPress CTRL+C to quit\n"
        )
    else:
        log.info("gateway listening", extra={"addr": f"127.0.0.1:{port}", "caller": "cmd/gateway/main.go:58"})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for tick in kit.ticks():
        kit.tick_noise(tick)
        if style == "zap":
            log.info("routes reloaded", extra={"routes": 14, "caller": "router/reload.go:27"})


main()
