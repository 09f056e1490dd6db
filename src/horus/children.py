"""Every process Horus starts is Horus's to end: a registry of the programs it runs, kept in the state dir.

Each program run through :func:`horus.execution.run_command` is recorded (pid, start time, monitor, what it
is for) the moment it is started, and forgotten once it and what it left behind are gone. Its environment
carries a marker, ``HORUS_RUN=<random token>``, that every descendant inherits, so what escapes its process
group (``setsid``, a double fork, a re-parenting to init) can still be found:

- on a timeout or a cancellation, the program, its process group, its descendants and every process with its
  marker are killed;
- when a Horus was killed while a program ran, the next Horus on the same state dir ends (SIGTERM, then
  SIGKILL after a grace) whatever is left of it: the recorded process only when both its pid and its start
  time still match (a reused pid is never signalled), and every process that carries the run's marker. Each
  is logged as ``execution.reaped``.

A process that clears its own environment (``env -i``, ``sudo``) loses the marker; it is still ended with its
process group, and on a timeout as a descendant of the program.

Why a marker rather than PR_SET_CHILD_SUBREAPER: it works the same on Linux and macOS, in the daemon and in
``horus check``, and across a restart of Horus; a subreaper would also make Horus the parent of every orphan
it adopted (a service a repair script started), which it would then have to reap itself, or a dead service
would linger as a zombie that looks alive.

The record is ``children.json`` in the state dir, rewritten atomically (a temporary file renamed over it).
It is not fsynced: it only has to outlive Horus, not the machine, and after a reboot nothing it names runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from horus.log import get_logger

__all__ = ["MARKER", "Run", "forget", "reap_earlier", "record", "use"]

log = get_logger("horus.execution")

MARKER = "HORUS_RUN"
FILE_NAME = "children.json"
# The record names the programs running at one moment: a few hundred at most. A bigger file is not ours.
MAX_FILE_BYTES = 4 * 1024 * 1024
# How long a program left by an earlier Horus has to end on SIGTERM before it is killed.
REAP_GRACE_SECONDS = 2.0
# psutil's start times are rounded differently by different calls; a reused pid starts much later.
_SAME_START_SECONDS = 0.05


@dataclass(frozen=True)
class Run:
    """One program Horus started, and the Horus that started it."""

    token: str
    pid: int | None  # None until it is started
    create_time: float | None
    monitor: str | None
    what: str
    program: str
    started_at: float
    horus_pid: int
    horus_create_time: float


class _Registry:
    """The runs of this process, and where they are written (nowhere until :func:`use` is called)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, Run] = {}
        # Runs of another Horus that is still alive, found in the file: kept in it, never touched.
        self.foreign: dict[str, Run] = {}
        self.path: Path | None = None
        self.write_failed = False

    def write(self) -> None:
        """Rewrite the file from memory; called with ``lock`` held."""
        if self.path is None:
            return
        entries = [asdict(r) for r in (*self.foreign.values(), *self.runs.values())]
        data = json.dumps({"version": 1, "runs": entries}, separators=(",", ":")).encode()
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            # A full disk must not fail a check or a heal: the run is still tracked in memory and ended
            # on its timeout; only its reaping by a later Horus is lost. Said once, not on every run.
            if not self.write_failed:
                log.warning("execution.record_unwritable", path=str(self.path), error=exc.strerror or str(exc))
            self.write_failed = True
        else:
            self.write_failed = False


_registry = _Registry()
_selves: dict[int, psutil.Process] = {}


def _me() -> psutil.Process:
    """This process (looked up again in a forked child, whose pid differs)."""
    pid = os.getpid()
    if pid not in _selves:
        _selves[pid] = psutil.Process(pid)
    return _selves[pid]


def new_token() -> str:
    return secrets.token_hex(16)


def record(token: str, *, what: str, program: str) -> Run:
    """Note a program about to be started, before it is: should Horus die the moment after, its marker
    still lets the next Horus find it."""
    run = Run(
        token=token,
        pid=None,
        create_time=None,
        monitor=_current_monitor(),
        what=what,
        program=program,
        started_at=time.time(),
        horus_pid=_me().pid,
        horus_create_time=_me().create_time(),
    )
    with _registry.lock:
        _registry.runs[token] = run
        _registry.write()
    return run


def started(token: str, pid: int) -> Run:
    """Add the pid and start time of a program just started (before anything else is awaited)."""
    create_time: float | None
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None  # it has already ended; its marker still finds what it left
    with _registry.lock:
        run = dataclasses.replace(_registry.runs[token], pid=pid, create_time=create_time)
        _registry.runs[token] = run
        _registry.write()
    return run


def forget(token: str) -> None:
    """The run and what it left are gone (or were handed off on purpose): no later Horus reaps them."""
    with _registry.lock:
        if _registry.runs.pop(token, None) is not None:
            _registry.write()


def live_tokens() -> frozenset[str]:
    with _registry.lock:
        return frozenset(_registry.runs)


def use(state_dir: Path) -> list[Run]:
    """Record runs in ``state_dir`` from now on; return the runs an earlier, dead Horus left in it."""
    path = state_dir / FILE_NAME
    found = _load(path)
    left: list[Run] = []
    with _registry.lock:
        _registry.path = path
        _registry.foreign = {}
        for run in found:
            if run.token in _registry.runs:
                continue
            if _horus_alive(run):
                _registry.foreign[run.token] = run
            else:
                left.append(run)
        _registry.write()
    return left


def reap_earlier(state_dir: Path, *, grace: float = REAP_GRACE_SECONDS) -> int:
    """End what an earlier Horus on ``state_dir`` started and left running; return how many processes."""
    left = use(state_dir)
    if not left:
        return 0
    by_token = {run.token: run for run in left}
    targets: dict[str, list[psutil.Process]] = {run.token: [] for run in left}
    for run in left:
        root = None if run.pid is None else _same_process(run.pid, run.create_time)
        if root is not None:
            targets[run.token].append(root)
    for proc, token in marked(by_token):
        if all(p.pid != proc.pid for p in targets[token]):
            targets[token].append(proc)
    everything = [p for procs in targets.values() for p in procs]
    how = end(everything, grace=grace)
    for token, procs in targets.items():
        run = by_token[token]
        if procs:
            log.warning(
                "execution.reaped",
                monitor=run.monitor,
                what=run.what,
                program=run.program,
                pids=sorted(p.pid for p in procs),
                signal=max((how.get(p.pid, "SIGTERM") for p in procs), key=("SIGTERM", "SIGKILL").index),
                started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started_at)),
                note="left running by an earlier Horus that did not stop cleanly",
            )
    return len(everything)


def marked(tokens: Iterable[str], *, since: float | None = None) -> list[tuple[psutil.Process, str]]:
    """Every other process whose environment carries one of ``tokens``, with its token.

    ``since`` (a start time) skips older processes without reading their environment, which keeps the
    look after every run cheap: a run's descendants cannot have started before it.
    """
    wanted = set(tokens)
    found: list[tuple[psutil.Process, str]] = []
    if not wanted:
        return found
    for proc in psutil.process_iter():
        if proc.pid == _me().pid:
            continue
        try:
            if since is not None and proc.create_time() < since - _SAME_START_SECONDS:
                continue
            token = proc.environ().get(MARKER)
        except psutil.Error:
            continue  # gone, a zombie, or another user's: not ours to read, nor to end
        if token in wanted:
            found.append((proc, token))
    return found


def tree_of(pid: int) -> list[psutil.Process]:
    """``pid``'s descendants now, while the tree still holds them (parents still alive)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def end(procs: Iterable[psutil.Process], *, grace: float) -> dict[int, str]:
    """SIGTERM each process, SIGKILL what is left after ``grace`` (at once when ``grace`` is 0).

    psutil checks each process's start time before signalling it, so a pid reused since it was found is
    never signalled. Returns the signal that ended each pid.
    """
    procs = list({p.pid: p for p in procs}.values())
    how: dict[int, str] = {}
    if grace > 0:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
                how[p.pid] = "SIGTERM"
        _, procs = psutil.wait_procs(procs, timeout=grace)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
            how[p.pid] = "SIGKILL"
    return how


def _same_process(pid: int, create_time: float | None) -> psutil.Process | None:
    if create_time is None:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _SAME_START_SECONDS:
            return None  # the pid now belongs to another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def _horus_alive(run: Run) -> bool:
    if run.horus_pid == _me().pid:
        return abs(run.horus_create_time - _me().create_time()) <= _SAME_START_SECONDS
    return _same_process(run.horus_pid, run.horus_create_time) is not None


def _current_monitor() -> str | None:
    # The engine binds the monitor to structlog's context around heals; best effort elsewhere.
    import structlog

    monitor = structlog.contextvars.get_contextvars().get("monitor")
    return monitor if isinstance(monitor, str) else None


def _load(path: Path) -> list[Run]:
    """The runs in ``path``; a missing file is none, a damaged one is moved aside and said."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("execution.record_unreadable", path=str(path), error=exc.strerror or str(exc))
        return []
    try:
        st = os.fstat(fd)
        ours = stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES
        raw = os.read(fd, MAX_FILE_BYTES + 1) if ours else None
    finally:
        os.close(fd)
    runs: list[Run] | None = None
    if raw is not None and len(raw) <= MAX_FILE_BYTES:
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            runs = [_run_from(entry) for entry in json.loads(raw)["runs"]]
    if runs is None:
        aside = path.with_name(f"{FILE_NAME}.damaged")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.warning(
            "execution.record_damaged",
            path=str(path),
            moved_to=str(aside),
            note="programs an earlier Horus left running cannot be ended",
        )
        return []
    return runs


def _run_from(entry: Any) -> Run:
    def number(key: str) -> float:
        value = entry[key]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(key)
        return float(value)

    create_time = entry["create_time"]
    monitor = entry["monitor"]
    token = entry["token"]
    pid = None if entry["pid"] is None else int(number("pid"))
    # Only what Horus itself writes: a blank or short token would match processes it never started.
    if not isinstance(token, str) or len(token) != 32 or token.strip("0123456789abcdef") or (pid or 2) <= 1:
        raise ValueError("not a run Horus recorded")
    return Run(
        token=token,
        pid=pid,
        create_time=None if create_time is None else number("create_time"),
        monitor=None if monitor is None else str(monitor),
        what=str(entry["what"]),
        program=str(entry["program"]),
        started_at=number("started_at"),
        horus_pid=int(number("horus_pid")),
        horus_create_time=number("horus_create_time"),
    )
