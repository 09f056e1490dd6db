"""The ``process_alive`` check: is the process that does the work running at all?"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import psutil
from pydantic import Field

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import ProcessPatternOptions
from horus.errors import ProbeError
from horus.processes import (
    ForeignProcess,
    ProcessIdentity,
    ServiceUser,
    anchored_pattern,
    describe_foreign,
    describe_wrappings,
    display_cmdline,
    match_processes,
    uid_of,
    user_name,
    wrappings,
)

# A reason names at most this many pids; fifty gunicorn workers do not need fifty numbers.
PIDS_IN_REASON = 10
PROCESSES_IN_DETAILS = 20


class ProcessAliveOptions(CheckOptions, ProcessPatternOptions):
    type: Literal["process_alive"]
    min_count: int = Field(default=1, ge=1)
    ignore_wrappers: bool = False
    user: ServiceUser | None = None


class ProcessAliveCheck(Check[ProcessAliveOptions]):
    """Healthy when at least ``min_count`` processes match ``process_pattern``.

    The pattern is looked for in each process's full command line (``main.py --mode conservative``
    matches ``python3 main.py --mode conservative``): as a plain substring, or as a regular expression
    (``re.search``) with ``regex: true``. Horus itself, the processes it was started from, PID 1,
    Horus's own subprocesses (health commands often mention the pattern), zombies, and processes whose
    command line Horus may not read are never counted.

    Only processes of one user count: ``user`` (a name or a numeric uid), by default the user Horus runs
    as, root included (a root Horus watching a service of another user says ``user: <that user>``). Any
    local user can start a process whose command line holds the pattern; counting it would keep a dead
    service looking alive. A process counts when its real and effective uid are both that user's; one
    whose owner cannot be read is not counted. Matching processes of other users are named in the reason
    ("not counting pid 4121 of mallory") but never counted.

    A process that is alive may still be hung: pair this with a heartbeat such as ``log_staleness``.

    A restart loop (``sh -c 'while true; do python main.py; sleep 5; done'``) whose command line holds the
    pattern is counted too, and it stays alive while the service it restarts is down: anchor the pattern
    on the service's own command line. `horus check` and `horus validate` warn when a match runs another.
    With ``ignore_wrappers: true`` (off by default: a gunicorn master runs its workers and matches too)
    a match seen running another match is not counted, and stays uncounted while its service is down;
    a wrapper first seen while its service was already down cannot be told apart, and is counted.
    """

    options_model = ProcessAliveOptions

    def __init__(self, options: ProcessAliveOptions) -> None:
        super().__init__(options)
        # Wrappers seen running the service, by pid and start time; pruned to those still matching.
        self._wrappers: set[tuple[int, float]] = set()

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        pattern = self.options.process_pattern
        minimum = self.options.min_count
        try:
            uid = uid_of(self.options.user)
        except LookupError as exc:  # the user was deleted since the config was loaded
            raise ProbeError(str(exc)) from exc
        try:
            found = await asyncio.to_thread(match_processes, pattern, regex=self.options.regex, uid=uid)
        except (OSError, psutil.Error) as exc:
            raise ProbeError(f"cannot list processes: {exc}") from exc
        matches = found.ours
        ignored: list[ProcessIdentity] = []
        if self.options.ignore_wrappers:
            matches, ignored = await asyncio.to_thread(self._without_wrappers, matches)
        count = len(matches)
        details: dict[str, Any] = {
            "pattern": pattern,
            "user": user_name(uid),
            "count": count,
            "pids": [m.pid for m in matches],
            "processes": [
                {"pid": m.pid, "cmdline": display_cmdline(m.cmdline)} for m in matches[:PROCESSES_IN_DETAILS]
            ],
        }
        note = ""
        if ignored:
            details["wrappers"] = [m.pid for m in ignored]
            note = "; not counting " + ", ".join(f"pid {m.pid}, a wrapper" for m in ignored[:PIDS_IN_REASON])
        if found.others:
            details["other_users_pids"] = [o.identity.pid for o in found.others[:PROCESSES_IN_DETAILS]]
            note += _foreign_note(found.others, uid, hint=count < minimum and self.options.user is None)
        if count == 0:
            return CheckResult.unhealthy(f"no process matches {pattern!r}{note}", **details)
        reason = (
            f"{count} {'process matches' if count == 1 else 'processes match'} {pattern!r} ({_pids(matches)}){note}"
        )
        if count < minimum:
            return CheckResult.unhealthy(f"{reason}, minimum {minimum}", **details)
        return CheckResult.healthy(reason, **details)

    def _without_wrappers(self, matches: list[ProcessIdentity]) -> tuple[list[ProcessIdentity], list[ProcessIdentity]]:
        keys = {(m.pid, m.create_time) for m in matches}
        seen_now = {(w.outer.pid, w.outer.create_time) for w in wrappings(matches)} if len(matches) > 1 else set()
        self._wrappers = {key for key in self._wrappers if key in keys} | seen_now
        counted = [m for m in matches if (m.pid, m.create_time) not in self._wrappers]
        return counted, [m for m in matches if (m.pid, m.create_time) in self._wrappers]


def _foreign_note(others: list[ForeignProcess], uid: int, *, hint: bool) -> str:
    note = f"; not counting {describe_foreign(others)}: only processes of {user_name(uid)} count"
    if hint:
        # Most likely after an upgrade, or with a root Horus: the service runs as a user of its own.
        note += "; set user: to the service's user if it runs as another"
    return note


def _pids(matches: list[ProcessIdentity]) -> str:
    shown = ", ".join(str(m.pid) for m in matches[:PIDS_IN_REASON])
    more = len(matches) - PIDS_IN_REASON
    label = "pid" if len(matches) == 1 else "pids"
    return f"{label} {shown}" + (f" and {more} more" if more > 0 else "")


def wrappers_now(options: ProcessAliveOptions) -> str | None:
    """A warning when one process matching the pattern now runs another (a wrapper or restart loop),
    so the check would count the wrapper while the service is down; None when there is no such pair."""
    if options.ignore_wrappers:
        return None
    try:
        matches = match_processes(options.process_pattern, regex=options.regex, uid=uid_of(options.user)).ours
        wrapped = wrappings(matches) if len(matches) > 1 else []
    except (OSError, psutil.Error, LookupError):
        return None
    if not wrapped:
        return None
    outers = {w.outer.pid for w in wrapped}
    advice = "anchor the pattern on the service's own command line"
    anchored = anchored_pattern(
        options.process_pattern,
        regex=options.regex,
        services=[m for m in matches if m.pid not in outers],
        wrappers=[m for m in matches if m.pid in outers],
    )
    if anchored is not None:
        advice += ": regex: true, process_pattern: '" + anchored.replace("'", "''") + "'"
    return (
        f"process_pattern {options.process_pattern!r} matches a wrapper as well as the service: "
        f"{describe_wrappings(wrapped)}. The wrapper stays alive while the service it runs is down, so this "
        f"check would still count it; {advice}, or set ignore_wrappers: true"
    )
