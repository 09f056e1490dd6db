"""A pre-fork HTTP server run the way gunicorn runs one: an arbiter that boots workers and logs like it.

The arbiter binds ``port``, writes its pid to ``pid_file``, forks ``workers`` workers that accept on the
shared socket and answer ``/health``, and boots a new worker whenever one dies, saying how it died.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

from service_kit import Kit

kit = Kit()
log = kit.log


def serve(listener: socket.socket) -> None:
    log.info("Booting worker with pid: %d", os.getpid())
    time.sleep(float(kit.get("app_load_seconds", 0.3)))  # importing the application
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            body = b'{"status":"ok"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def boot(listener: socket.socket) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            serve(listener)
        finally:
            os._exit(0)
    return pid


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(kit["port"])))
    listener.listen(64)
    log.info("Starting gunicorn 21.2.0")
    log.info("Listening at: http://127.0.0.1:%d (%d)", int(kit["port"]), os.getpid())
    log.info("Using worker: sync")
    with open(kit["pid_file"], "w") as out:
        out.write(str(os.getpid()))
    workers = {boot(listener) for _ in range(int(kit.get("workers", 2)))}
    tick = 0
    while True:
        time.sleep(kit.tick_seconds)
        kit.tick_noise(tick)
        tick += 1
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            workers.discard(pid)
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                name = signal.Signals(sig).name
                if sig == signal.SIGKILL:
                    log.error("Worker (pid:%d) was sent SIGKILL! Perhaps out of memory?", pid)
                else:
                    log.error("Worker (pid:%d) was sent %s!", pid, name)
            else:
                log.info("Worker exiting (pid: %d)", pid)
            workers.add(boot(listener))
        sys.stderr.flush()


main()
