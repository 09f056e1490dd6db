"""A real shell restart loop, as users run their bots: ``sh -c 'while true; do python ... ; sleep 1; done'``.

The loop's own command line holds the service's arguments, so a pattern on them matches both. The loop
is started detached (a launcher starts it in a new session and exits), so it is no descendant of the
test process, which plays Horus and whose descendants are never matched.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import uuid

import psutil

from tests.support import wait_until_sync

_LAUNCHER = """
import subprocess, sys
child = subprocess.Popen(sys.argv[1:], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid)
"""


class RestartLoop:
    """``sh -c 'while true; do python -c SLEEP MARKER --mode conservative; sleep 1; done'``."""

    def __init__(self) -> None:
        self.marker = f"horus-loop-{uuid.uuid4().hex}"
        self.pattern = f"{self.marker} --mode conservative"
        argv = [sys.executable, "-c", "import time; time.sleep(60)", self.marker, "--mode", "conservative"]
        service = shlex.join(argv)
        script = f"while true; do {service}; sleep 1; done"
        launched = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, "/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        self.shell = psutil.Process(int(launched.stdout))
        self.first_service = self.wait_for_service()

    def service(self) -> psutil.Process | None:
        """The loop's current python child, if it is running."""
        with contextlib.suppress(psutil.Error):
            for child in self.shell.children():
                if self.marker in " ".join(child.cmdline()):
                    return child
        return None

    def wait_for_service(self, other_than: int | None = None) -> psutil.Process:
        found: list[psutil.Process] = []

        def started() -> bool:
            child = self.service()
            if child is not None and child.pid != other_than:
                found.append(child)
                return True
            return False

        wait_until_sync(started, timeout=20)
        return found[-1]

    def close(self) -> None:
        # The shell leads its own session and group, which holds its current child too.
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if self.shell.is_running():
                os.killpg(self.shell.pid, signal.SIGKILL)
