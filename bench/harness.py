"""Running the two watchdogs under measurement: Horus (`horus run`) and monit (`monit -I`).

Both run as real daemons in their own processes; psutil samples their CPU time and resident memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def quiet_sdk_log() -> Iterator[None]:
    """The SDK logs every command, mode change and order as a warning or info line: in a benchmark, one per
    sample and thousands of lines of noise."""
    sdk_log = logging.getLogger("horus_sdk")
    level = sdk_log.level
    sdk_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        sdk_log.setLevel(level)


def monit_binary() -> str | None:
    return shutil.which("monit")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def silent_listeners(count: int) -> Iterator[list[int]]:
    """Ports that accept connections (the kernel completes the handshake) and never answer."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            socks.append(sock)
        yield [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def load_targets(work: Path, tcp_ports: int = 50) -> Iterator[dict]:
    portfile = work / "targets.json"
    proc = subprocess.Popen([sys.executable, str(HERE / "targets.py"), str(portfile), "--tcp-ports", str(tcp_ports)])
    try:
        wait_for(portfile.exists, 30, "load targets")
        yield json.loads(portfile.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def horus_daemon(work: Path, config: dict) -> Iterator[subprocess.Popen]:
    path = work / "horus.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "horus",
            "run",
            "-c",
            str(path),
            "--state-dir",
            str(work / "horus-state"),
            "--stats-file",
            str(work / "horus-stats.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "horus.log", "wb"),  # noqa: SIM115 - the child holds it
    )
    try:
        yield proc
    finally:
        stop(proc)


def horus_stats(work: Path) -> dict:
    return json.loads((work / "horus-stats.json").read_text())


@contextlib.contextmanager
def monit_daemon(work: Path, cycle_seconds: int, services: str) -> Iterator[subprocess.Popen]:
    binary = monit_binary()
    if binary is None:
        raise RuntimeError("monit is not installed")
    rc = work / "monitrc"
    rc.write_text(
        f"set daemon {cycle_seconds}\n"
        f"set logfile {work / 'monit.log'}\n"
        f"set pidfile {work / 'monit.pid'}\n"
        f"set idfile {work / 'monit.id'}\n"
        f"set statefile {work / 'monit.state'}\n" + services
    )
    rc.chmod(0o600)  # monit refuses a control file others can read
    proc = subprocess.Popen([binary, "-c", str(rc), "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Usage:
    cpu_seconds: float
    wall_seconds: float
    rss_max_bytes: int
    # From /proc/<pid>/io over the window (None where there is no /proc): bytes the process sent to the
    # block layer (what wears a disk), and bytes it passed to write() (files, pipes, sockets alike).
    write_bytes: int | None = None
    wchar: int | None = None

    @property
    def cpu_share(self) -> float:
        """Share of one core: 1.0 is one core fully busy."""
        return self.cpu_seconds / self.wall_seconds


def measure(pid: int, seconds: float) -> Usage:
    """CPU time used by ``pid`` (and any children) over ``seconds``, and its largest resident set."""
    proc = psutil.Process(pid)

    def cpu() -> float:
        t = proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    rss_max = proc.memory_info().rss
    start_io = proc_io(pid)
    start_cpu, start = cpu(), time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(0.5)
        rss_max = max(rss_max, proc.memory_info().rss)
    wall, end_io = time.monotonic() - start, proc_io(pid)
    written = wchar = None
    if start_io is not None and end_io is not None:
        # A dirty page dropped before it reached the disk (a file deleted or truncated first) was never
        # written: the kernel counts it in cancelled_write_bytes.
        written = (end_io["write_bytes"] - end_io["cancelled_write_bytes"]) - (
            start_io["write_bytes"] - start_io["cancelled_write_bytes"]
        )
        wchar = end_io["wchar"] - start_io["wchar"]
    return Usage(cpu() - start_cpu, wall, rss_max, written, wchar)


def proc_io(pid: int) -> dict[str, int] | None:
    """``/proc/<pid>/io`` as numbers, or None (not Linux, or not ours to read)."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    return {key: int(value) for key, value in (line.split(": ", 1) for line in text.splitlines())}


def machine() -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": f"{os.uname().sysname} {os.uname().release}",
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "monit": _monit_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def _monit_version() -> str | None:
    binary = monit_binary()
    if binary is None:
        return None
    out = subprocess.run([binary, "-V"], capture_output=True, text=True).stdout.splitlines()
    return out[0].removeprefix("This is Monit version ").strip() if out else None
