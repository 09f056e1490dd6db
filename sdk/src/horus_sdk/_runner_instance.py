"""One instance of the service, as the runner sees it: its process, its channel and its output.

Each instance gets three reader threads: one for its channel (events, bounded lines, into a queue the runner's
main thread waits on) and one for each of stdout and stderr (appended to the service log, the last lines kept
to explain a crash). The runner's main thread alone decides what happens; the threads only carry bytes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from horus_sdk.runner_files import ENV_CHANNEL_FD, ENV_HANDOVER_TIMEOUT, ENV_LEASE, ENV_VERSION, process_start_token

MAX_LINE_BYTES = 64 * 1024
TAIL_LINES = 20
EOF_EVENT = "_eof"


class ServiceLog:
    """``logs/service.log``, rotated by size into ``service.log.1`` … ``.N``; shared by every instance."""

    def __init__(self, path: Path, *, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        data = line.encode("utf-8", "replace")
        # A full disk must not take the runner (and so the service) down: the line is lost, nothing else.
        with self._lock, contextlib.suppress(OSError):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def _rotate(self) -> None:
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.keep > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()


@dataclass
class Instance:
    """A started instance: its process, the runner's end of its channel and what it has said."""

    proc: subprocess.Popen[bytes]
    channel: socket.socket
    version: str
    snapshot: Path
    started_at: float
    process_start: str | None
    events: queue.Queue[tuple[float, dict[str, Any]]] = field(default_factory=queue.Queue)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    epoch: int | None = None
    trading_since: float | None = None
    trading_monotonic: float | None = None
    exit_seen_monotonic: float | None = None
    tripped: dict[str, Any] | None = None
    said_hello: bool = False  # its Control started: it speaks the runner's protocol
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, op: str) -> bool:
        """Send ``{"op": op}``; False when the instance is gone (its channel closed)."""
        line = json.dumps({"op": op}).encode() + b"\n"
        with self._send_lock:
            try:
                self.channel.sendall(line)
            except OSError:
                return False
        return True

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        if self.exit_seen_monotonic is None:
            self.exit_seen_monotonic = time.monotonic()
        return False

    def record(self) -> dict[str, Any]:
        """This instance's entry in runner.json."""
        return {
            "pid": self.pid,
            "process_start": self.process_start,
            "version": self.version,
            "epoch": self.epoch,
            "started_at": self.started_at,
            "trading_since": self.trading_since,
        }

    def signal_group(self, signum: int) -> None:
        """Signal the instance's whole session (it was started as its own session leader), so a child it
        spawned goes with it; never a process that is already reaped (its pid may be someone else's)."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        self.alive()
        return True

    def terminate(self, *, term_grace: float = 5.0) -> None:
        """TERM, then KILL after ``term_grace`` seconds; returns once the process is reaped."""
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        if not self.wait_exit(term_grace):
            self.kill()

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.proc.wait()
        self.alive()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.close()

    def describe_exit(self) -> str:
        """'exited with code 3' or 'was killed by signal SIGKILL', then its last output."""
        code = self.proc.returncode
        if code is None:
            text = "is still running"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            text = f"was killed by {name}"
        else:
            text = f"exited with code {code}"
        return text + self.describe_tail()

    def describe_tail(self) -> str:
        # A copy first (one C call, which no other thread interleaves): the output thread may still be appending.
        lines = [line for line in tuple(self.tail) if line.strip()][-5:]
        if not lines:
            return ""
        return "; its last output: " + " | ".join(line.strip()[:300] for line in lines)


def start_instance(
    command: list[str],
    *,
    version: str,
    snapshot: Path,
    lease: Path,
    handover_timeout: float,
    extra_env: dict[str, str],
    log: ServiceLog,
) -> Instance:
    """Start one instance of ``command`` in ``snapshot`` as a standby; raises OSError when it cannot start."""
    runner_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env.update(extra_env)
    env[ENV_CHANNEL_FD] = str(child_end.fileno())
    env[ENV_LEASE] = str(lease)
    env[ENV_VERSION] = version
    env[ENV_HANDOVER_TIMEOUT] = str(handover_timeout)
    try:
        proc = subprocess.Popen(
            command,
            cwd=snapshot,
            env=env,
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except BaseException:
        runner_end.close()
        raise
    finally:
        # Only the child may hold its end: were the runner to keep it, the child would never see EOF.
        child_end.close()
    instance = Instance(
        proc=proc,
        channel=runner_end,
        version=version,
        snapshot=snapshot,
        started_at=time.time(),
        process_start=process_start_token(proc.pid),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    for stream, label in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(
            target=_copy_output,
            args=(stream, instance, log, label),
            name=f"horus-runner-{label}-{proc.pid}",
            daemon=True,
        ).start()
    threading.Thread(
        target=_read_channel, args=(instance,), name=f"horus-runner-channel-{proc.pid}", daemon=True
    ).start()
    return instance


def _copy_output(stream: IO[bytes], instance: Instance, log: ServiceLog, label: str) -> None:
    prefix = f"[{instance.version[:12]} {instance.pid} {label}] "
    with contextlib.suppress(OSError, ValueError):
        while True:
            raw = stream.readline(MAX_LINE_BYTES)
            if not raw:
                break
            text = raw.decode("utf-8", "replace").rstrip("\n")
            instance.tail.append(text)
            log.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {prefix}{text}\n")
    with contextlib.suppress(OSError):
        stream.close()


def _read_channel(instance: Instance) -> None:
    """Events from the instance, each line bounded; a line that is not a JSON object is dropped (logged by
    nobody: the instance is the runner's child, but its channel is still input, not a fact)."""
    reader = instance.channel.makefile("rb")
    with contextlib.suppress(OSError, ValueError):
        while True:
            raw = reader.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            received = time.monotonic()
            if len(raw) > MAX_LINE_BYTES:
                # Too long: skip the rest of that line rather than hold it.
                while raw and not raw.endswith(b"\n"):
                    raw = reader.readline(MAX_LINE_BYTES)
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                instance.events.put((received, event))
    instance.events.put((time.monotonic(), {"event": EOF_EVENT}))
