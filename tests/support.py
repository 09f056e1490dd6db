"""Real, small servers and waiting helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Route:
    """What the loopback server answers on one path; mutate it during a test."""

    def __init__(self, status: int = 200, body: bytes = b"ok", content_type: str = "text/plain") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.delay_seconds = 0.0


class LoopbackHTTPServer:
    """A real HTTP server on 127.0.0.1 in a thread; ``routes[path]`` decides each answer."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.requests.append((self.command, self.path, dict(self.headers)))
                route = server.routes.get(self.path.split("?")[0], Route(404, b"not found"))
                if route.delay_seconds:
                    threading.Event().wait(route.delay_seconds)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(route.body)

            do_GET = do_POST = do_HEAD = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LoopbackHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class SilentServer:
    """Accepts TCP connections on loopback and never answers: the probe (or webhook) that hangs.

    ``port`` takes a given port, even one another server just left (SO_REUSEADDR); 0 picks a free one.
    """

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_forever, daemon=True)
        self._thread.start()

    def _accept_forever(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Wait for a condition rather than sleeping blindly; fail loudly when it never holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class EventLog:
    """Reads a daemon's JSON events from a file it writes to, so nothing blocks on a full pipe."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line still being written
        return out

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events() if e["event"] == name]


HORUS_RUN = [sys.executable, "-m", "horus", "run"]


def spawn_daemon(config: Path, state_dir: Path, events: Path, *extra: str) -> subprocess.Popen[bytes]:
    handle = events.open("ab")
    try:
        return subprocess.Popen(
            [*HORUS_RUN, "-c", str(config), "--state-dir", str(state_dir), "--log-format", "json", *extra],
            stdout=handle,
            stderr=handle,
        )
    finally:
        handle.close()


def stop_daemon(daemon: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM the daemon and wait for it to exit; its exit code (0 is a clean shutdown)."""
    daemon.send_signal(signal.SIGTERM)
    return daemon.wait(timeout=timeout)


def config_with_a_phone(tmp_path: Path, monitors: list[dict[str, Any]], *, group_seconds: float = 0.5) -> Path:
    """A daemon config (tmp_path/horus.json) whose notifications, every event through the outbox, go to a
    channel of the test's own: what a person would be sent, read back with :func:`notifications_sent`."""
    config = tmp_path / "horus.json"
    sent = tmp_path / "notifications.jsonl"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "notify": [{"name": "phone", "command": ["/bin/sh", "-c", f"cat >> {sent}; echo >> {sent}"]}],
                "notify_settings": {"group_seconds": group_seconds},
                "monitors": monitors,
            }
        )
    )
    return config


def notifications_sent(tmp_path: Path) -> str:
    path = tmp_path / "notifications.jsonl"
    return path.read_text() if path.exists() else ""


def stop_session(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started with ``start_new_session=True`` and everything in its session (a restart
    loop and the bot it runs), and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
