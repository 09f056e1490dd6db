"""The trading control plane's two files: ``control.json`` (what to do) and ``status.json`` (what was done).

Horus and the operator write ``control.json``; the service (``horus_sdk.control.Control``) reads it and
writes ``status.json``. Both live in one directory, the service's control dir, and both survive a restart
of either side: a halt written while the bot was down is in force the moment it starts again. The SDK and
the daemon import this module, so the format is defined once. Every write is atomic (temp file, fsync,
rename).

Control file (``FORMAT_CONTROL``)::

    {"format": "horus-control/1", "seq": 7, "command": "halt", "reason": "exchange maintenance",
     "issued_by": "alice (horus control)", "issued_at": 1795227443.6, "expires_at": null}

``seq`` only grows: each new command takes the larger of the file's seq and the service's
``applied_seq``, plus one, under a lock, so two writers never issue the same seq. A command whose
``expires_at`` has passed before the service read it is refused, never applied late.

A command the service has not acknowledged yet is never lost by the next one: it moves to ``queued``
(oldest first, at most ``MAX_QUEUED``), and the service applies them all in seq order. So a halt written
while the bot was down, then a resume that expired before it came back, leaves the bot halted: the resume
is refused and the halt is not forgotten::

    {"format": "horus-control/1", "seq": 9, "command": "resume", …, "queued": [{"seq": 8, "command": "halt", …}]}

Status file (``FORMAT_STATUS``), written by the service at every change and at least every cycle::

    {"format": "horus-trading/1", "pid": 4121, "boot_id": "…", "started_at": …, "updated_at": …,
     "monotonic": …, "mode": "halted",
     "cause": {"source": "trip", "name": "failures_halt", "mode": "halted", "reason": "10 rejects …",
               "since": …, "latched": true, "until": null},
     "causes": [cause, …], "applied_seq": 7,
     "control": {"seq": 7, "command": "halt", "outcome": "applied", "reason": "…", "at": …},
     "control_error": null, "last_cycle_at": …, "last_cycle_monotonic": …,
     "broker": {"connected": true, "since": …, "reason": null},
     "counters": {"rejects": 3, "errors": 0, "permitted": 120, "denied": 4},
     "recent_failures": 3, "exposure": {"BTC-USD": 0.5}, "flatten": {…}, "daily_loss": {…},
     "stale_feeds": {"prices": 12.5}, "decision_log": "/srv/bot/control/decisions.jsonl"}

``control.outcome`` is ``applied`` or ``refused`` (it had expired), with why; a command with a seq the
service has already seen is ignored (it is in the decision log, not in ``control``).
``control_error`` says why ``control.json`` cannot be read now; the last good command stays in force.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import math
import os
import pwd
import stat
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from horus_sdk.formats import RefusedFileError, read_json, write_json_atomic

__all__ = [
    "AUTOMATIC_SOURCES",
    "COMMANDS",
    "COMMAND_MODES",
    "CONTROL_FILE",
    "CONTROL_MAX_BYTES",
    "DECISION_LOG_FILE",
    "FORMAT_CONTROL",
    "FORMAT_STATUS",
    "MAX_QUEUED",
    "MAX_REASON_CHARS",
    "STATUS_FILE",
    "STATUS_MAX_BYTES",
    "Command",
    "Mode",
    "control_path",
    "holding_trip",
    "issue_command",
    "read_command",
    "read_commands",
    "read_status",
    "status_path",
]

FORMAT_CONTROL = "horus-control/1"
FORMAT_STATUS = "horus-trading/1"
CONTROL_FILE = "control.json"
STATUS_FILE = "status.json"
DECISION_LOG_FILE = "decisions.jsonl"
# A command is a few hundred bytes; a status, a few KiB with many positions. Anything larger was not
# written by Horus or the SDK and is refused unread.
CONTROL_MAX_BYTES = 64 * 1024
STATUS_MAX_BYTES = 1024 * 1024
MAX_REASON_CHARS = 500
MAX_ISSUER_CHARS = 200
MAX_QUEUED = 16


class Mode(enum.StrEnum):
    """The trading modes, from the least to the most restrictive (see ``rank``)."""

    ACTIVE = "active"  # every order the strategy wants
    REDUCING = "reducing"  # only orders that reduce exposure
    RECONCILING = "reconciling"  # at start, until the service knows its true positions: no orders
    FLATTENING = "flattening"  # closing every position, then HALTED; only the flatten's own orders
    HALTED = "halted"  # no orders at all

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Mode.ACTIVE: 0, Mode.REDUCING: 1, Mode.RECONCILING: 2, Mode.FLATTENING: 3, Mode.HALTED: 4}

# What each command asks for. ``resume`` clears the operator's own command and every latched trip.
COMMAND_MODES: Mapping[str, Mode] = {
    "halt": Mode.HALTED,
    "reduce": Mode.REDUCING,
    "flatten": Mode.FLATTENING,
    "resume": Mode.ACTIVE,
}
COMMANDS = tuple(COMMAND_MODES)


# Causes the service set for itself: an automatic trip is a failure to report, an operator's halt is not.
AUTOMATIC_SOURCES = frozenset({"trip", "daily_loss"})


def holding_trip(causes: Any) -> dict[str, Any] | None:
    """Of the causes in a status.json, the automatic one that holds the bot where it is: the most restrictive
    (the oldest among equals); None when no trip holds it."""
    listed = causes if isinstance(causes, list) else []
    automatic = [c for c in listed if isinstance(c, dict) and c.get("source") in AUTOMATIC_SOURCES]
    return max(automatic, key=_rank_of, default=None)


def _rank_of(cause: dict[str, Any]) -> int:
    try:
        return Mode(str(cause.get("mode"))).rank
    except ValueError:
        return -1


def control_path(control_dir: str | os.PathLike[str]) -> Path:
    return Path(control_dir) / CONTROL_FILE


def status_path(control_dir: str | os.PathLike[str]) -> Path:
    return Path(control_dir) / STATUS_FILE


@dataclass(frozen=True)
class Command:
    """One operator (or Horus) command, as ``control.json`` holds it."""

    seq: int
    command: str
    reason: str
    issued_by: str
    issued_at: float
    expires_at: float | None = None

    @property
    def mode(self) -> Mode:
        return COMMAND_MODES[self.command]

    def expired(self, now_wall: float) -> bool:
        return self.expires_at is not None and now_wall >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_CONTROL,
            "seq": self.seq,
            "command": self.command,
            "reason": self.reason,
            "issued_by": self.issued_by,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = CONTROL_FILE) -> Command:
        """The command in ``data``; ValueError naming the field when it is not a valid one."""
        seq = data.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"{where}: seq must be a whole number of 1 or more, got {seq!r}")
        command = data.get("command")
        if command not in COMMAND_MODES:
            raise ValueError(f"{where}: command must be one of {', '.join(COMMANDS)}, got {command!r}")
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{where}: reason must be a non-empty text")
        issued_by = data.get("issued_by", "")
        if not isinstance(issued_by, str):
            raise ValueError(f"{where}: issued_by must be a text")
        issued_at = _time(data.get("issued_at"), f"{where}: issued_at")
        expires = data.get("expires_at")
        expires_at = None if expires is None else _time(expires, f"{where}: expires_at")
        return cls(
            seq=seq,
            command=str(command),
            reason=reason[:MAX_REASON_CHARS],
            issued_by=issued_by[:MAX_ISSUER_CHARS],
            issued_at=issued_at,
            expires_at=expires_at,
        )


def _time(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a time in seconds since the epoch, got {value!r}")
    return float(value)


def read_command(control_dir: str | os.PathLike[str], *, trusted_uids: Collection[int] | None = None) -> Command:
    """The command in force in ``control_dir``.

    A command decides whether real orders are sent, so it is believed only from a file no other user
    can have written: not writable by every user, and owned by one of ``trusted_uids`` (when given).
    Raises FileNotFoundError when there is none, ``RefusedFileError`` (an OSError) when the file is not a
    regular file, is too large or cannot be trusted, another OSError when it cannot be read, and
    ValueError when it is not a command.
    """
    return read_commands(control_dir, trusted_uids=trusted_uids)[-1]


def read_commands(control_dir: str | os.PathLike[str], *, trusted_uids: Collection[int] | None = None) -> list[Command]:
    """Every command in ``control.json``, oldest first: the ones still queued, then the newest.

    The same trust and errors as :func:`read_command`; one malformed queued command makes the whole file
    a ValueError, because a file that is half understood is not understood.
    """
    path = control_path(control_dir)
    st = os.lstat(path)
    if st.st_mode & stat.S_IWOTH:
        raise RefusedFileError(f"{path}: any user may write it (mode {stat.S_IMODE(st.st_mode):o}), not believed")
    if trusted_uids is not None and st.st_uid not in trusted_uids:
        owner = _user_name(st.st_uid)
        raise RefusedFileError(f"{path}: written by {owner}, who is not trusted to command this service")
    data = read_json(path, FORMAT_CONTROL, max_bytes=CONTROL_MAX_BYTES)
    queued = data.get("queued", [])
    if not isinstance(queued, list) or not all(isinstance(item, dict) for item in queued):
        raise ValueError(f"{path}: queued must be a list of commands")
    commands = [Command.from_json(item, f"{path}: queued[{i}]") for i, item in enumerate(queued[-MAX_QUEUED:])]
    newest = Command.from_json(data, str(path))
    return [*sorted([c for c in commands if c.seq < newest.seq], key=lambda c: c.seq), newest]


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def read_status(control_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The service's last status; OSError when it cannot be read, ValueError when it is not one."""
    return read_json(status_path(control_dir), FORMAT_STATUS, max_bytes=STATUS_MAX_BYTES)


def issue_command(
    control_dir: str | os.PathLike[str],
    command: str,
    reason: str,
    issued_by: str,
    *,
    expires_in: float | None = None,
    now_wall: float | None = None,
) -> Command:
    """Write a new command to ``control_dir/control.json`` with the next seq, and return it.

    The seq is one more than the larger of the current file's and the service's ``applied_seq``, taken
    under an exclusive lock on ``control.json.lock`` so that two writers (a heal and an operator) never
    give out the same one. A current file that cannot be read does not stop a new command: it is what
    replaces it. Raises ValueError for a bad command or reason, OSError when the file cannot be written.
    """
    if command not in COMMAND_MODES:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
    if not reason.strip():
        raise ValueError("a command needs a reason")
    if expires_in is not None and (not math.isfinite(expires_in) or expires_in <= 0):
        raise ValueError(f"expires_in must be a positive number of seconds, got {expires_in!r}")
    now = time.time() if now_wall is None else now_wall
    with _locked(control_dir):
        current = _current_commands(control_dir)
        applied = _applied_seq(control_dir)
        seq = max([applied, *(c.seq for c in current)]) + 1
        # What the service has not seen yet stays, so that nothing written for it is lost.
        queued = [c for c in current if c.seq > applied][-MAX_QUEUED:]
        issued = Command(
            seq=seq,
            command=command,
            reason=reason.strip()[:MAX_REASON_CHARS],
            issued_by=issued_by[:MAX_ISSUER_CHARS],
            issued_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        write_json_atomic(control_path(control_dir), {**issued.to_json(), "queued": [c.to_json() for c in queued]})
    return issued


@contextlib.contextmanager
def _locked(control_dir: str | os.PathLike[str]) -> Iterator[None]:
    lock_path = Path(control_dir) / f"{CONTROL_FILE}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _current_commands(control_dir: str | os.PathLike[str]) -> list[Command]:
    """The commands in the current file that may be carried over: none when it cannot be read, or when
    someone other than this user or root wrote it (queued in a new file, a stranger's command would look
    like this writer's own). The new command replaces them."""
    try:
        return read_commands(control_dir, trusted_uids={os.getuid(), 0})
    except (OSError, ValueError):
        return []


def _applied_seq(control_dir: str | os.PathLike[str]) -> int:
    """The highest seq the service has seen, applied or refused."""
    try:
        status = read_status(control_dir)
    except (OSError, ValueError):
        return 0
    last = status.get("control")
    seen = [status.get("applied_seq"), last.get("seq") if isinstance(last, dict) else None]
    return max([s for s in seen if isinstance(s, int) and not isinstance(s, bool) and s > 0], default=0)
