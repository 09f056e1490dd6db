"""Real processes for the process tests, each carrying a marker unique to its test.

A process the test spawns directly is a descendant of the test process, which plays Horus, and so is
never matched. Targets are therefore started *detached*: a launcher starts them in a new session and
exits, so they are reparented away from the test process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from horus.processes import ProcessIdentity

SLEEP = "import time; time.sleep(60)"

# Prints the name of every SIGTERM and SIGWINCH it receives, and exits on neither. SIGWINCH (28) is
# numbered above SIGTERM (15), so once a SIGWINCH has been noted, a SIGTERM sent before it would have
# been noted first: that is how a test proves a process was *not* sent SIGTERM, without sleeping.
NOTE_SIGNALS = """
import signal, time
def note(number, frame):
    print(signal.Signals(number).name, flush=True)
signal.signal(signal.SIGTERM, note)
signal.signal(signal.SIGWINCH, note)
print("ready", flush=True)
while True:
    time.sleep(60)
"""

IGNORE_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""

# A group leader that starts a worker, which joins the leader's process group, under another marker.
LEADER_WITH_WORKER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1] + "-worker"])
print("ready", flush=True)
time.sleep(60)
"""

# Starts a grandchild whose command line carries the same marker, and waits for it.
WITH_GRANDCHILD = """
import subprocess, sys
subprocess.run([sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]])
"""

# Starts a child that exits at once and is never waited for, so it stays a zombie.
ZOMBIE_PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "pass", sys.argv[1] + "-zombie"])
time.sleep(60)
"""

_LAUNCHER = """
import subprocess, sys
with open(sys.argv[1], "w") as out:
    child = subprocess.Popen(
        sys.argv[2:], start_new_session=True, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
    )
print(child.pid)
"""


@dataclass
class Detached:
    pid: int
    output: Path

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity.of(self.pid)

    def said(self, line: str) -> bool:
        return line in self.output.read_text().splitlines()

    def is_running(self) -> bool:
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


class ProcessSpawner:
    """Starts marked processes and kills whatever is left of them when the test ends."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._children: list[subprocess.Popen[bytes]] = []
        self._tracked: list[psutil.Process] = []

    @staticmethod
    def marker() -> str:
        return f"horus-test-{uuid.uuid4().hex}"

    def child(self, marker: str, code: str = SLEEP) -> subprocess.Popen[bytes]:
        """A direct child of the test process: a descendant of 'Horus'."""
        proc = subprocess.Popen([sys.executable, "-c", code, marker], stdin=subprocess.DEVNULL)
        self._children.append(proc)
        return proc

    def detached(self, marker: str, code: str = SLEEP) -> Detached:
        """A process that is no descendant of the test process, leading its own session and group."""
        output = self._directory / f"{uuid.uuid4().hex}.out"
        launched = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(output), sys.executable, "-c", code, marker],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        pid = int(launched.stdout)
        self.track(pid)
        assert os.getpid() not in [p.pid for p in psutil.Process(pid).parents()], "must not be our descendant"
        return Detached(pid, output)

    def track(self, pid: int) -> None:
        """Kill this process too at the end (only if its pid still belongs to it)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            self._tracked.append(psutil.Process(pid))

    def close(self) -> None:
        for proc in self._tracked:
            # psutil refuses to signal a pid that was reused by another process since.
            with contextlib.suppress(psutil.Error):
                proc.kill()
        for child in self._children:
            child.kill()
            child.wait(timeout=10)
