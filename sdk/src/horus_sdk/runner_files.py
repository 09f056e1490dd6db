"""The files of a runner's state dir: what the runner (``horus_sdk.runner``) writes and Horus reads.

The runner is the service's main process: it starts the service's instances, hands trading from one to the
next at a reload, and keeps its account of them here. The runner, the SDK's ``Control`` (through the
lease), the daemon and ``horus reload`` import this module, so the format is defined once::

    STATE_DIR/                 created 0o700
      runner.json              horus-runner/1: the runner's account, rewritten atomically at every change
      runner.lock              held (flock) by the one runner of this state dir for its whole life
      lease                    the lease's lock file: the one instance holding an flock on it may trade
      lease.json               horus-lease/1: the last epoch handed out (it only grows) and who took it
      requests/ID.json         horus-runner-request/1: "reload" or "restart", asked by `horus reload` or a heal
      results/ID.json          horus-runner-result/1: how that request ended
      versions/VERSION/        a copy of the source of each version kept, which its instances run from
      logs/service.log         the instances' stdout and stderr (rotated: service.log.1 …)

``runner.json``::

    {"format": "horus-runner/1", "name": "bot", "pid": 4100, "process_start": "…", "started_at": …,
     "updated_at": …, "state": "running", "state_reason": "…",
     "active": {"pid": 4121, "process_start": "…", "version": "3f2a…", "epoch": 12, "started_at": …,
                "trading_since": …},
     "standby": null, "previous_version": "9c1e…", "restarts": 0, "last_exit": null,
     "reloads": [{"id": "…", "trigger": "watch", "requested_by": "…", "from_version": "…", "to_version": "…",
                  "from_epoch": 11, "to_epoch": 12, "started_at": …, "finished_at": …,
                  "outcome": "done", "stage": "probation", "reason": "…", "gap_ms": 41.5}]}

``state``: ``starting``, ``running``, ``reloading``, ``backoff`` (the instance crashed; it restarts after a
pause), ``gave_up`` (it crashed too often: the runner waits for a new version or a restart request),
``stopping``, ``stopped``. ``process_start`` identifies a process for all time with its pid (see
:func:`process_start_token`): a pid alone may have been reused. A reload's ``outcome``: ``done``,
``failed`` (the running version kept trading; ``stage`` and ``reason`` say where and why; at stage
``probation``: the new version failed its probation and the rollback failed too; at ``stop``: the runner was
stopped before the reload finished),
``rolled_back`` (the new version failed its probation and the previous one came back), ``unchanged``
(nothing to reload). ``gap_ms``: from the old instance's last cycle to the new one's first.

A request is believed only from a file no other user can have written (owned by the runner's user or
root, not writable by group or others); everything is read with a bound.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from horus_sdk.formats import RefusedFileError, read_json, write_json_atomic

__all__ = [
    "FORMAT_LEASE",
    "FORMAT_REQUEST",
    "FORMAT_RESULT",
    "FORMAT_RUNNER",
    "REQUEST_OPS",
    "RunnerPaths",
    "describe_reload",
    "new_request",
    "process_start_token",
    "read_request",
    "read_result",
    "read_runner_state",
    "refuse_unless_private",
]

FORMAT_RUNNER = "horus-runner/1"
FORMAT_LEASE = "horus-lease/1"
FORMAT_REQUEST = "horus-runner-request/1"
FORMAT_RESULT = "horus-runner-result/1"
REQUEST_OPS = ("reload", "restart")
RUNNER_MAX_BYTES = 1024 * 1024
REQUEST_MAX_BYTES = 16 * 1024
RESULT_MAX_BYTES = 256 * 1024
MAX_REASON_CHARS = 2000

# The environment a runner gives each instance it starts: how it reaches the runner and where the lease is.
ENV_CHANNEL_FD = "HORUS_RUNNER_FD"
ENV_LEASE = "HORUS_RUNNER_LEASE"
ENV_VERSION = "HORUS_RUNNER_VERSION"
ENV_HANDOVER_TIMEOUT = "HORUS_RUNNER_HANDOVER_TIMEOUT"


@dataclass(frozen=True)
class RunnerPaths:
    """Where each file of one runner's state dir is."""

    root: Path

    @classmethod
    def of(cls, state_dir: str | os.PathLike[str]) -> RunnerPaths:
        return cls(Path(state_dir))

    @property
    def state(self) -> Path:
        return self.root / "runner.json"

    @property
    def runner_lock(self) -> Path:
        return self.root / "runner.lock"

    @property
    def lease(self) -> Path:
        return self.root / "lease"

    @property
    def lease_record(self) -> Path:
        return self.root / "lease.json"

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def request(self, request_id: str) -> Path:
        return self.requests / f"{_checked_id(request_id)}.json"

    def result(self, request_id: str) -> Path:
        return self.results / f"{_checked_id(request_id)}.json"


def _checked_id(request_id: str) -> str:
    if not (0 < len(request_id) <= 64 and request_id.replace("-", "").isalnum()):
        raise ValueError(f"not a request id: {request_id!r}")
    return request_id


def read_runner_state(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``runner.json``: OSError when it cannot be read or trusted (RefusedFileError), ValueError when it
    is not one."""
    path = RunnerPaths.of(state_dir).state
    refuse_unless_private(path)
    return read_json(path, FORMAT_RUNNER, max_bytes=RUNNER_MAX_BYTES)


def new_request(state_dir: str | os.PathLike[str], op: str, *, requested_by: str, reason: str = "") -> str:
    """Ask the runner for ``op`` ("reload" or "restart"); returns the request's id, whose result
    :func:`read_result` reads once the runner has answered. Raises OSError when it cannot be written."""
    if op not in REQUEST_OPS:
        raise ValueError(f"a runner request is one of {', '.join(REQUEST_OPS)}, not {op!r}")
    paths = RunnerPaths.of(state_dir)
    request_id = f"{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
    paths.requests.mkdir(mode=0o700, exist_ok=True)
    data = {
        "format": FORMAT_REQUEST,
        "id": request_id,
        "op": op,
        "requested_by": requested_by[:200],
        "requested_at": time.time(),
        "reason": reason[:MAX_REASON_CHARS],
    }
    write_json_atomic(paths.request(request_id), data)
    return request_id


def read_request(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One request file, checked: OSError (RefusedFileError when another user could have written it),
    ValueError when it is not a request."""
    refuse_unless_private(path)
    data = read_json(path, FORMAT_REQUEST, max_bytes=REQUEST_MAX_BYTES)
    if data.get("op") not in REQUEST_OPS:
        raise ValueError(f"{path}: op must be one of {', '.join(REQUEST_OPS)}, got {data.get('op')!r}")
    if not isinstance(data.get("id"), str):
        raise ValueError(f"{path}: no id")
    _checked_id(data["id"])
    return data


def read_result(state_dir: str | os.PathLike[str], request_id: str) -> dict[str, Any] | None:
    """The runner's answer to a request, or None while there is none yet."""
    path = RunnerPaths.of(state_dir).result(request_id)
    with contextlib.suppress(FileNotFoundError):
        refuse_unless_private(path)
        return read_json(path, FORMAT_RESULT, max_bytes=RESULT_MAX_BYTES)
    return None


def refuse_unless_private(path: str | os.PathLike[str]) -> None:
    """Raise RefusedFileError unless ``path`` is owned by this user or root and no one else may write it."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        # Whoever can write the directory can point a link anywhere: only the file itself is believed.
        raise RefusedFileError(f"{os.fspath(path)}: a symbolic link, not the runner's own file (not believed)")
    if st.st_uid not in (os.getuid(), 0):
        raise RefusedFileError(f"{os.fspath(path)}: owned by uid {st.st_uid}, not by this user (not believed)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        raise RefusedFileError(f"{os.fspath(path)}: others may write it (mode {mode:o}), not believed")


def process_start_token(pid: int) -> str | None:
    """When process ``pid`` started, as a token that tells it from a later process with the same pid;
    None when there is no such process (or it cannot be read).

    Linux: the start time in clock ticks since boot, from /proc; elsewhere ``ps -o lstart=``."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read(4096)
        except OSError:
            return None
        # The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
        fields = raw[raw.rfind(b")") + 2 :].split()
        return fields[19].decode() if len(fields) > 19 else None
    import subprocess

    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, timeout=5, check=False, text=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe_reload(entry: dict[str, Any]) -> str:
    """One sentence for a reload entry of ``runner.json`` (or a result's ``reload``), for people: the CLI,
    notifications and the incident timeline all say it the same way."""
    before, after = _short(entry.get("from_version")), _short(entry.get("to_version"))
    outcome = entry.get("outcome")
    reason = str(entry.get("reason") or "").strip()
    if outcome == "done":
        gap = entry.get("gap_ms")
        gap_text = f", gap {gap:.0f} ms" if isinstance(gap, int | float) else ""
        epochs = f", epoch {entry.get('from_epoch')} → {entry.get('to_epoch')}" if entry.get("to_epoch") else ""
        return f"reloaded {before} → {after}{epochs}{gap_text}"
    if outcome == "failed" and entry.get("stage") == "probation":
        return f"{after} failed its probation and could not be rolled back to {before}: {reason or 'no reason given'}"
    if outcome == "failed" and entry.get("stage") == "stop":
        return f"reload to {after} called off: {reason or 'no reason given'}"
    if outcome == "failed":
        stage = entry.get("stage") or "reload"
        return f"reload to {after} failed at {stage}: {reason or 'no reason given'}; {before} is still trading"
    if outcome == "rolled_back":
        return f"{after} failed its probation and was rolled back to {before}: {reason or 'no reason given'}"
    if outcome == "unchanged":
        return f"nothing to reload: {after} is already running"
    return f"reload to {after}: {outcome or 'in progress'}{': ' + reason if reason else ''}"


def _short(version: Any) -> str:
    return f"version {str(version)[:12]}" if version else "no version"
