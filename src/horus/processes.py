"""Finding the processes a pattern names, and signalling exactly those processes and no others.

Shared by the ``process_alive`` check and the ``kill_process`` heal, so both see the same processes.

A pid alone is not an identity: pids are reused. A process is a :class:`ProcessIdentity` (pid plus
start time), and :func:`send_signal` signals a pid only while its start time still equals the recorded
one. Horus never matches itself, its ancestors (the shell, terminal or supervisor that started it),
PID 1, or its own descendants (health-check subprocesses, whose command lines often hold the pattern).

A process's command line is what its owner chose to write, so any local user can start one that holds a
service's pattern. Matching is therefore limited to one user's processes (the service's user, by default
the user Horus runs as); what other users run is never counted, never signalled, and only listed so that
a reason can say why a running process was not counted.

Everything here calls psutil synchronously; async callers wrap enumeration in ``asyncio.to_thread``.
"""

from __future__ import annotations

import enum
import functools
import os
import pwd
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import psutil
from pydantic import BeforeValidator

from horus.log import redact_url

__all__ = [
    "ForeignProcess",
    "Liveness",
    "Matches",
    "ProcessIdentity",
    "ServiceUser",
    "Wrapping",
    "anchored_pattern",
    "describe_foreign",
    "describe_wrappings",
    "display_cmdline",
    "find_matching",
    "group_members",
    "liveness",
    "match_processes",
    "pid_exists",
    "process_group_of",
    "protected_pids",
    "send_signal",
    "signal_group",
    "uid_of",
    "user_name",
    "validate_pattern",
    "validate_user",
    "wrappings",
]


@dataclass(frozen=True)
class ProcessIdentity:
    """One process for all time: its pid, psutil's start time, and its full command line."""

    pid: int
    create_time: float
    cmdline: str

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The process that has ``pid`` now; raises ``psutil.NoSuchProcess`` when there is none."""
        proc = psutil.Process(pid)
        try:
            argv = proc.cmdline()
        except psutil.AccessDenied:
            argv = []
        return cls(pid, proc.create_time(), " ".join(argv))


class Liveness(enum.Enum):
    RUNNING = "running"
    EXITED = "exited"  # gone, or a zombie waiting to be reaped: it will never run again
    REUSED = "reused"  # the original exited and its pid now belongs to a different process
    UNKNOWN = "unknown"  # the pid cannot be inspected, so it cannot be verified either


def validate_pattern(pattern: str, *, regex: bool) -> str:
    """Check a ``process_pattern`` option at config time; raises ValueError with a reason."""
    if not pattern.strip():
        raise ValueError("must not be empty")
    if regex:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.search("") is not None:
            # "main.py|" or "^" would match every process on the machine.
            raise ValueError("this regular expression matches an empty command line, so it matches every process")
    return pattern


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists now (one of another user's counts: signal 0 is refused, not lost)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def protected_pids() -> frozenset[int]:
    """Horus itself, every ancestor of it, and PIDs 0 and 1: never matched, never signalled."""
    pid = os.getpid()
    protected = {0, 1, pid}
    # Follow ppid links rather than psutil's parents(), which stops early when a parent's start time
    # looks odd; a parent that exits reparents us at once, so every ppid read is of a live process.
    while pid > 1:
        try:
            pid = psutil.Process(pid).ppid()
        except psutil.Error:
            break
        if pid in protected:
            break
        protected.add(pid)
    return frozenset(protected)


# The largest uid Linux allows; (uid_t)-1 is "no uid" to the kernel.
MAX_UID = 2**32 - 2


def validate_user(value: object) -> str | int:
    """Check a ``user`` option at config time (a user name, or a numeric uid); raises ValueError with a reason.

    A name must exist here, since a misspelt name would match nothing, for ever. A uid need not: services in
    containers often run as a uid with no passwd entry.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ValueError("must be a user name or a numeric uid")
    if isinstance(value, str) and not value.isdigit():
        try:
            pwd.getpwnam(value)
        except KeyError:
            raise ValueError("no such user on this machine") from None
        return value
    uid = int(value)
    if not 0 <= uid <= MAX_UID:
        raise ValueError(f"a uid is 0..{MAX_UID}")
    return uid


ServiceUser = Annotated[str | int, BeforeValidator(validate_user)]
"""The ``user`` option of process_alive and kill_process: whose processes the pattern may name."""


def uid_of(user: str | int | None) -> int:
    """The uid ``user`` names; None is the user Horus runs as. Raises LookupError when a name no longer exists."""
    if user is None:
        return os.geteuid()
    if isinstance(user, int):
        return user
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise LookupError(f"no user named {user!r} on this machine") from None


@functools.lru_cache(maxsize=64)
def user_name(uid: int) -> str:
    """``uid``'s name, or the number itself when it has none. Remembered: a flood of datagrams or processes
    from one uid costs one lookup."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@dataclass(frozen=True)
class ForeignProcess:
    """A process whose command line matches a pattern but that runs as another user than the wanted one."""

    identity: ProcessIdentity
    uid: int  # its effective uid: the user it acts as


@dataclass(frozen=True)
class Matches:
    """What a pattern names now: ``ours`` (the wanted user's processes, sorted by pid), and ``others``,
    matching processes of other users, which are never counted nor signalled."""

    ours: list[ProcessIdentity]
    others: list[ForeignProcess]


def find_matching(pattern: str, *, regex: bool = False, uid: int | None = None) -> list[ProcessIdentity]:
    """Processes of user ``uid`` (None: the user Horus runs as) whose full command line contains ``pattern``
    (or ``re.search``-es it), sorted by pid. See :func:`match_processes`."""
    return match_processes(pattern, regex=regex, uid=uid).ours


def match_processes(pattern: str, *, regex: bool = False, uid: int | None = None) -> Matches:
    """Processes whose full command line contains ``pattern`` (or ``re.search``-es it), split by owner.

    A process is user ``uid``'s (None: the user Horus runs as) when its real and its effective uid are both
    ``uid``: one that merely acts as that user through a setuid program, or was started by that user and
    now acts as another, is not. A process whose owner cannot be read is left out entirely. Excludes Horus,
    its ancestors, PID 1, its descendants, zombies and processes whose command line cannot be read.
    Processes that appear or vanish while the list is read are handled silently.
    """
    wanted = os.geteuid() if uid is None else uid
    matches: Callable[[str], bool]
    if regex:
        compiled = re.compile(pattern)
        matches = lambda text: compiled.search(text) is not None  # noqa: E731
    else:
        matches = lambda text: pattern in text  # noqa: E731
    protected = protected_pids()
    own_pid = os.getpid()
    ours: list[ProcessIdentity] = []
    others: list[ForeignProcess] = []
    for pid in psutil.pids():
        if pid in protected:
            continue
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                argv = proc.cmdline()
                create_time = proc.create_time()
                uids = proc.uids()
        except psutil.Error:  # gone, a zombie, or not ours to read (its owner included)
            continue
        if not argv:  # kernel threads
            continue
        cmdline = " ".join(argv)
        if not matches(cmdline) or _is_descendant(pid, own_pid):
            continue
        identity = ProcessIdentity(pid, create_time, cmdline)
        if uids.real == wanted and uids.effective == wanted:
            ours.append(identity)
        else:
            others.append(ForeignProcess(identity, uids.effective))
    ours.sort(key=lambda identity: identity.pid)
    others.sort(key=lambda foreign: foreign.identity.pid)
    return Matches(ours, others)


# A reason names at most this many processes of other users.
FOREIGN_LISTED = 5


def describe_foreign(others: Sequence[ForeignProcess]) -> str:
    """``pid 4121 of mallory, pid 4130 of 1002 and 3 more``: which users' processes were not counted."""
    listed = ", ".join(f"pid {o.identity.pid} of {user_name(o.uid)}" for o in others[:FOREIGN_LISTED])
    if len(others) > FOREIGN_LISTED:
        listed += f" and {len(others) - FOREIGN_LISTED} more"
    return listed


@dataclass(frozen=True)
class Wrapping:
    """Two matches of one pattern where ``outer`` runs ``inner``: a restart loop (``sh -c 'while true; do
    python main.py; done'``), a ``nohup``/``timeout``/``env`` wrapper or a launcher script whose own command
    line holds the pattern too."""

    outer: ProcessIdentity
    inner: ProcessIdentity
    parent: bool  # outer is inner's parent, not a further ancestor

    @property
    def relation(self) -> str:
        return "the parent" if self.parent else "an ancestor"


# Deeper chains than this are not followed: real wrappers nest two or three levels.
MAX_ANCESTRY_DEPTH = 64


def wrappings(matches: Sequence[ProcessIdentity]) -> list[Wrapping]:
    """Every pair of ``matches`` in which one is an ancestor of the other, innermost first per process.

    An ancestor counts only while its start time is the one recorded in ``matches``, so a reused pid is
    never taken for a wrapper. Processes that exit while the chains are read are left out.
    """
    by_pid = {m.pid: m for m in matches}
    found: list[Wrapping] = []
    for inner in matches:
        current, depth = inner.pid, 0
        try:
            while current > 1 and depth < MAX_ANCESTRY_DEPTH:
                current = psutil.Process(current).ppid()
                depth += 1
                outer = by_pid.get(current)
                if outer is not None and psutil.Process(current).create_time() == outer.create_time:
                    found.append(Wrapping(outer, inner, parent=depth == 1))
        except psutil.Error:  # a process of the chain exited: what was found so far stands
            continue
    return found


# Command lines inside the explanation of a wrapper are cut shorter than in a list of matches.
SHORT_CMDLINE = 60
WRAPPINGS_LISTED = 10


def describe_wrappings(wrapped: Sequence[Wrapping]) -> str:
    """``pid 100 (sh -c while true; do python ma…) is the parent of pid 101 (python main.py …)``; ..."""
    pairs = "; ".join(f"{_short(w.outer)} is {w.relation} of {_short(w.inner)}" for w in wrapped[:WRAPPINGS_LISTED])
    if len(wrapped) > WRAPPINGS_LISTED:
        pairs += f"; and {len(wrapped) - WRAPPINGS_LISTED} more such pairs"
    return pairs


def _short(process: ProcessIdentity) -> str:
    return f"pid {process.pid} ({display_cmdline(process.cmdline, SHORT_CMDLINE)})"


def anchored_pattern(
    pattern: str, *, regex: bool, services: Sequence[ProcessIdentity], wrappers: Sequence[ProcessIdentity]
) -> str | None:
    """A ``regex: true`` pattern anchored at the start of the services' own command line, such as
    ``^python main[.]py --mode conservative``, that matches every one of ``services`` and none of
    ``wrappers`` now; None when there is no such pattern to offer.

    Metacharacters are written as one-character classes (``[.]``) rather than with backslashes, so the
    suggestion can be pasted into YAML, TOML or JSON as it is.
    """
    compiled = re.compile(pattern) if regex else None
    prefixes = set()
    for service in services:
        if compiled is not None:
            found = compiled.search(service.cmdline)
            start = found.start() if found else -1
        else:
            start = service.cmdline.find(pattern)
        if start < 0:
            return None
        prefixes.add(service.cmdline[:start])
    if len(prefixes) != 1:
        return None
    prefix = prefixes.pop()
    if display_cmdline(prefix) != " ".join(prefix.split()):
        return None  # the prefix holds something display_cmdline masks: never repeat a secret
    candidate = "^" + _literal(prefix) + (f"(?:{pattern})" if regex else _literal(pattern))
    anchored = re.compile(candidate)
    if all(anchored.search(s.cmdline) for s in services) and not any(anchored.search(w.cmdline) for w in wrappers):
        return candidate
    return None


def _literal(text: str) -> str:
    out = []
    for char in text:
        if char in ".*+?{}()|$":
            out.append(f"[{char}]")
        elif char in "[]\\^":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _is_descendant(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is on ``pid``'s chain of parents; unsure counts as yes, to leave it alone."""
    for _attempt in range(2):
        chain = {pid}
        current = pid
        try:
            while current > 1:
                current = psutil.Process(current).ppid()
                if current == ancestor:
                    return True
                if current in chain:
                    return False
                chain.add(current)
            return False
        except psutil.NoSuchProcess:
            if current == pid:
                return True  # the candidate itself is gone: nothing to match either way
            # A process in the chain exited and its children were reparented: walk the new chain.
            continue
        except psutil.Error:
            return True
    return True


def liveness(identity: ProcessIdentity) -> Liveness:
    """Whether the recorded process is still running; a zombie has exited."""
    try:
        proc = psutil.Process(identity.pid)
        if proc.create_time() != identity.create_time:
            return Liveness.REUSED
        if proc.status() == psutil.STATUS_ZOMBIE:
            return Liveness.EXITED
    except psutil.NoSuchProcess:  # ZombieProcess is one too
        return Liveness.EXITED
    except psutil.AccessDenied:
        return Liveness.UNKNOWN
    return Liveness.RUNNING


def send_signal(identity: ProcessIdentity, sig: int) -> bool:
    """Send ``sig`` only while ``identity.pid`` is still that process; False when nothing was sent.

    Signal 0 tests permission without delivering anything. Raises PermissionError when the process
    may not be signalled. On Linux the check and the send are one step: a pidfd pins the process,
    so a pid reused between the check and the send is never hit.
    """
    if sys.platform == "linux":
        try:
            pidfd = os.pidfd_open(identity.pid)
        except ProcessLookupError:
            return False
        except OSError:  # no pidfd_open here (kernel < 5.3, or a seccomp filter)
            return _check_then_kill(identity, sig)
        try:
            # The pidfd was opened after the identity was recorded, so if the pid still shows the
            # recorded start time now, the pidfd is that process.
            if liveness(identity) is not Liveness.RUNNING:
                return False
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return False
            except OSError:  # blocked by a seccomp filter; a real permission error repeats below
                return _check_then_kill(identity, sig)
            return True
        finally:
            os.close(pidfd)
    return _check_then_kill(identity, sig)


def _check_then_kill(identity: ProcessIdentity, sig: int) -> bool:
    # Without pidfds, a pid could in theory be reused between the check and the kill; it would need
    # the whole pid space to wrap within microseconds.
    if liveness(identity) is not Liveness.RUNNING:
        return False
    try:
        os.kill(identity.pid, sig)
    except ProcessLookupError:
        return False
    return True


def process_group_of(identity: ProcessIdentity) -> int | None:
    """The process group id of the recorded process, or None when it is no longer running."""
    try:
        pgid = os.getpgid(identity.pid)
    except ProcessLookupError:
        return None
    # Verified after reading, so a pid reused in between is noticed.
    return pgid if liveness(identity) is Liveness.RUNNING else None


def group_members(pgid: int) -> list[ProcessIdentity]:
    """Every process in process group ``pgid``, sorted by pid."""
    members: list[ProcessIdentity] = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            members.append(ProcessIdentity.of(pid))
        except (ProcessLookupError, psutil.Error):
            continue
    return sorted(members, key=lambda identity: identity.pid)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every process in group ``pgid``; False when the group no longer exists.

    The caller verifies first that a recorded member still belongs to ``pgid``: a group id cannot be
    reused while any member of the group is alive.
    """
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


_SECRET_ARGUMENT = re.compile(
    r"(?i)(--?[\w.-]*(?:token|secret|passw(?:or)?d|key|auth|credential)[\w.-]*)(=|\s+)(?!-)(\S+)"
)
DISPLAY_LIMIT = 160


def display_cmdline(cmdline: str, limit: int = DISPLAY_LIMIT) -> str:
    """A command line fit for a log line or a notification: secrets masked, long ones shortened."""
    shown = " ".join(_SECRET_ARGUMENT.sub(r"\1\2***", redact_url(cmdline)).split())  # one line, always
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
