"""A second local user, and processes that run as it, for the tests where another user must not steer Horus.

The user is created once per machine (idempotently) and kept: creating and deleting users on every run
would be slower and leave the passwd file churning. Tests that need it skip, with the reason, when it
cannot be had (not root, no useradd, a read-only /etc).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

OTHER_USER = "horus-test-other"

# Started in a session of its own by a launcher that exits, so it is not a descendant of the test process
# (which plays Horus, whose descendants are never matched). /bin/sh rather than this venv's Python: the
# other user may not be allowed to read the interpreter's directory. ``sh -c SCRIPT MARKER`` puts the
# marker in sh's own command line as $0; "; exit" keeps sh from exec-ing sleep (which would drop it).
_LAUNCHER = """
import subprocess, sys
child = subprocess.Popen(
    ["setpriv", *sys.argv[1:]],
    start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    cwd="/",
)
print(child.pid)
"""
SLEEP = "import time; time.sleep(60)"


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int


def other_user() -> OtherUser:
    """The second user, created if missing; skips the calling test when that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a process of another user can only be started as root")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run a process as another user")
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip(f"needs useradd to create the user {OTHER_USER}")
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # Exit 9: another test run created it in the meantime.
        if created.returncode not in (0, 9):
            pytest.skip(f"cannot create the user {OTHER_USER}: {created.stderr.strip()}")
        entry = pwd.getpwnam(OTHER_USER)
    return OtherUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def process_of(user: OtherUser, marker: str, *, effective_root: bool = False) -> Iterator[int]:
    """A process of ``user`` whose command line holds ``marker``, detached from the test; its pid.

    With ``effective_root`` its real uid is ``user``'s and its effective uid root's, as a setuid-root
    program run by ``user`` has (Python here: sh would drop the effective uid at once).
    """
    if effective_root:
        ids = [f"--ruid={user.uid}", "--euid=0", f"--rgid={user.gid}", "--egid=0"]
        argv = [sys.executable, "-c", SLEEP, marker]
    else:
        ids = [f"--reuid={user.uid}", f"--regid={user.gid}"]
        argv = ["sh", "-c", "sleep 60; exit 0", marker]
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *ids, "--clear-groups", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    pid = int(launched.stdout)
    try:
        _wait_for_exec(pid)
        yield pid
    finally:
        # The launcher made it a group leader: its sleep goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _wait_for_exec(pid: int) -> None:
    """Until setpriv has exec-ed its program, the command line is setpriv's, which holds the marker too."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            raise AssertionError(f"the process of {OTHER_USER} (pid {pid}) exited at once") from None
        if argv and argv[0] != b"setpriv":
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not exec its program within 10 s")
