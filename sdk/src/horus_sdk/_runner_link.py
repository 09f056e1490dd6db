"""The instance's side of its channel to the runner (see :mod:`horus_sdk.runner` for the protocol).

The runner gives each instance one end of a socketpair (its fd in ``HORUS_RUNNER_FD``). A thread reads the
runner's orders into flags the Control consults at its cycle boundaries; ``send`` tells the runner what
the instance did. Nothing here raises into the bot: a runner that went away is a flag (``gone``), and the
Control ends the instance at its next boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from typing import Any

from horus_sdk.runner_files import ENV_CHANNEL_FD, ENV_HANDOVER_TIMEOUT, ENV_LEASE, ENV_VERSION

logger = logging.getLogger("horus_sdk")

MAX_LINE_BYTES = 64 * 1024
DEFAULT_HANDOVER_TIMEOUT = 10.0
WAIT_STEP_SECONDS = 0.005  # how often an async wait looks at the flags: a few ms of the handover gap at most


class RunnerLink:
    """The channel to this instance's runner, and what the runner has asked for so far."""

    def __init__(self, sock: socket.socket, *, lease_path: str, version: str | None, handover_timeout: float) -> None:
        self.lease_path = lease_path
        self.version = version
        self.handover_timeout = handover_timeout
        self._sock = sock
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self.promote = threading.Event()
        self.gone = threading.Event()
        self._handover_wanted = False
        self._stop_wanted = False
        self._released = False
        self._verdict: str | None = None
        self._thread = threading.Thread(target=self._read, name="horus-runner-link", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls) -> RunnerLink | None:
        """The link when this process was started by a runner (``HORUS_RUNNER_FD`` set), else None.

        Raises ValueError when the environment names a channel that is not one: a bot that was meant to
        run under a runner must not quietly trade on its own."""
        fd_text = os.environ.get(ENV_CHANNEL_FD)
        if not fd_text:
            return None
        lease_path = os.environ.get(ENV_LEASE)
        if not lease_path:
            raise ValueError(f"{ENV_CHANNEL_FD} is set but {ENV_LEASE} is not: the runner gave no lease")
        try:
            fd = int(fd_text)
            sock = socket.socket(fileno=fd)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{ENV_CHANNEL_FD}={fd_text!r} is not a channel to this process's runner: {exc}") from exc
        # Not for a subprocess the bot starts: only this process speaks for itself.
        os.environ.pop(ENV_CHANNEL_FD, None)
        try:
            timeout = float(os.environ.get(ENV_HANDOVER_TIMEOUT, DEFAULT_HANDOVER_TIMEOUT))
        except ValueError:
            timeout = DEFAULT_HANDOVER_TIMEOUT
        if not (math.isfinite(timeout) and timeout > 0):
            timeout = DEFAULT_HANDOVER_TIMEOUT
        return cls(sock, lease_path=lease_path, version=os.environ.get(ENV_VERSION), handover_timeout=timeout)

    # -- what the runner asked --------------------------------------------------------------------------

    @property
    def handover_wanted(self) -> bool:
        """Release at the next cycle boundary: a handover, a stop, or the runner is gone."""
        with self._state_lock:
            return self._handover_wanted or self.gone.is_set()

    @property
    def exit_after_release(self) -> bool:
        """No verdict to wait for after releasing: it was a stop, or there is no runner to give one."""
        with self._state_lock:
            return self._stop_wanted or self.gone.is_set()

    def mark_released(self) -> None:
        with self._state_lock:
            self._released, self._verdict = True, None

    def mark_holding(self) -> None:
        with self._state_lock:
            self._released = self._handover_wanted = False
            self._verdict = None

    async def wait_for_promotion(self) -> bool:
        """True once the runner promotes this standby; False when the runner went away or asked it to stop
        first (a runner that is stopping never promotes it)."""
        while not self.promote.is_set():
            with self._state_lock:
                stop_wanted = self._stop_wanted
            if stop_wanted or self.gone.is_set():
                return False
            await asyncio.sleep(WAIT_STEP_SECONDS)
        return True

    async def wait_for_verdict(self) -> str:
        """After releasing: "exit" or "resume"; "exit" too when the runner went away or said nothing in
        twice the handover timeout (an instance without the lease has nothing left to do)."""
        deadline = time.monotonic() + 2 * self.handover_timeout
        while time.monotonic() < deadline and not self.gone.is_set():
            with self._state_lock:
                if self._verdict is not None:
                    return self._verdict
            await asyncio.sleep(WAIT_STEP_SECONDS)
        return "exit"

    # -- telling the runner -----------------------------------------------------------------------------

    def send(self, event: str, **fields: Any) -> bool:
        """One event to the runner; False (never an exception) when it cannot be told."""
        line = json.dumps({"event": event, **fields}, separators=(",", ":"), default=str).encode() + b"\n"
        try:
            with self._send_lock:
                self._sock.sendall(line)
        except OSError:
            self.gone.set()
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    # -- the reader thread --------------------------------------------------------------------------------

    def _read(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self._handle(line)
                if len(pending) > MAX_LINE_BYTES:
                    logger.error("runner.link_line_too_long bytes=%d (dropped)", len(pending))
                    pending = b""
        except OSError:
            pass
        finally:
            self.gone.set()

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            op = message.get("op") if isinstance(message, dict) else None
        except ValueError:
            op = None
        with self._state_lock:
            if op == "promote":
                self.promote.set()
            elif op == "handover":
                self._handover_wanted = True
            elif op == "stop":
                self._handover_wanted = self._stop_wanted = True
            elif op == "resume":
                if self._released:
                    self._verdict = "resume"
                elif not self._stop_wanted:
                    self._handover_wanted = False  # the handover was called off before this boundary
            elif op == "exit":
                if self._released:
                    self._verdict = "exit"
                else:
                    self._handover_wanted = self._stop_wanted = True
            else:
                logger.warning("runner.unknown_message %r", line[:200])
