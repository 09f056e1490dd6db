"""The ``kill_process`` heal: stop a hung process so that its supervisor starts a fresh one.

Killing the wrong process loses someone money, so every signal goes through :func:`_deliver`, which
checks every safety rule again right before sending, and only to a pid whose start time is unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil
from pydantic import Field

from horus import humanize
from horus.clock import Clock
from horus.config.types import ProcessPatternOptions, SignalName, resolve_signal
from horus.errors import HealError, HealRefused
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus.log import get_logger
from horus.processes import (
    SHORT_CMDLINE,
    Liveness,
    ProcessIdentity,
    ServiceUser,
    Wrapping,
    anchored_pattern,
    describe_foreign,
    describe_wrappings,
    display_cmdline,
    group_members,
    liveness,
    match_processes,
    process_group_of,
    protected_pids,
    send_signal,
    signal_group,
    uid_of,
    user_name,
    wrappings,
)

__all__ = ["KillProcessHeal", "KillProcessOptions", "kill_processes", "refusal_now", "select_targets"]

# How long a process gets to disappear after SIGKILL; longer means it is stuck in the kernel.
KILL_WAIT_SECONDS = 5.0
# Look often at first (most processes exit within milliseconds), then less often over a long grace.
FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.1
# Room beyond the grace period for matching, the SIGKILL wait and a slow machine.
TIMEOUT_MARGIN_SECONDS = 15.0
LISTED_IN_REFUSAL = 10


class KillProcessOptions(HealOptions, ProcessPatternOptions):
    action: Literal["kill_process"]
    signal: SignalName = "SIGTERM"
    grace_seconds: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    max_matches: int = Field(default=1, ge=1)
    process_group: bool = False
    ignore_wrappers: bool = False
    user: ServiceUser | None = None


class KillProcessHeal(Heal[KillProcessOptions]):
    """Send ``signal`` (SIGTERM) to the process matching ``process_pattern``, then SIGKILL if it lingers.

    Meant for services that a supervisor starts again when they exit (launchd KeepAlive, systemd
    ``Restart=``, a ``while true`` loop): killing a hung process is how it gets a fresh start. The
    pattern is matched against full command lines exactly as ``process_alive`` does (a substring, or
    ``re.search`` with ``regex: true``). A process still running ``grace_seconds`` (10) after the
    signal is sent SIGKILL. With ``process_group: true`` the whole process group of each match is
    signalled, so workers it started stop with it.

    Only processes of one user are matched: ``user`` (a name or a numeric uid), by default the user Horus
    runs as, root included (a root Horus healing a service of another user says ``user: <that user>``).
    A process of another user whose command line holds the pattern is neither signalled nor counted
    against ``max_matches``, so no local user can shield a hung service by starting a look-alike. A
    process counts when its real and effective uid are both that user's; one whose owner cannot be read
    is not counted.

    What it never does:

    - Signal anything when more than ``max_matches`` (1) processes match: the heal is refused and the
      matches are listed, so a too-broad pattern cannot take other processes down with the target.
    - Signal Horus itself, the processes it was started from (its shell, terminal or supervisor),
      PID 1, or Horus's own subprocesses. This is checked again right before every signal.
    - Signal a pid that now belongs to another process. Each target is remembered by pid and start
      time and every signal, SIGKILL included, is sent only while both still agree; a target that
      exited meanwhile is skipped and the outcome says so.
    - Signal a process group that holds Horus, one of its ancestors or PID 1 (refused instead).

    When nothing matches, the heal fails without signalling: the service may be restarting.

    Wrappers and restart loops. Under ``sh -c 'while true; do python main.py --mode conservative; sleep
    5; done'`` the pattern ``main.py --mode conservative`` matches the shell too, so two processes match
    and the heal is refused. The refusal then says which match runs which ("pid 100 (sh -c while true;
    ...) is the parent of pid 101 (python main.py ...)") and how to name the service alone: a
    ``regex: true`` pattern anchored on the service's own command line, which it spells out when one
    exists (``^python main[.]py --mode conservative``), or ``ignore_wrappers: true``. With
    ``ignore_wrappers: true`` (off by default) a match that is the parent or an ancestor of another match
    is left alone and not counted, so only the innermost processes are signalled and the loop lives on
    to restart the service; ``max_matches`` still applies to what remains. Together with
    ``process_group: true`` the heal is refused when the service shares its process group with a wrapper
    it leaves alone, as a shell loop's child does: signalling the group would stop the loop too.
    `horus check` and `horus validate` print the same explanation as a warning when the pattern matches
    more than ``max_matches`` processes at that moment.
    """

    options_model = KillProcessOptions

    def timeout_seconds(self, default: float) -> float:
        # Cutting the grace period short would abandon the heal before its SIGKILL step.
        return max(default, self.options.grace_seconds + TIMEOUT_MARGIN_SECONDS)

    async def run(self, ctx: HealContext) -> HealOutcome:
        pattern = self.options.process_pattern
        matches = await asyncio.to_thread(select_targets, self.options)
        outcome = await kill_processes(
            matches,
            sig=resolve_signal(self.options.signal),
            grace_seconds=self.options.grace_seconds,
            process_group=self.options.process_group,
            clock=ctx.clock,
        )
        return dataclasses.replace(outcome, details={"pattern": pattern, **outcome.details})


def select_targets(options: KillProcessOptions) -> list[ProcessIdentity]:
    """The processes the heal would signal now. Raises HealRefused (permanent) when more than
    ``max_matches`` match, explaining any wrapper among them, and HealError when none does."""
    pattern = options.process_pattern
    try:
        uid = uid_of(options.user)
    except LookupError as exc:  # the user was deleted since the config was loaded
        raise HealError(f"{exc}; nothing was signalled", permanent=True) from exc
    try:
        found = match_processes(pattern, regex=options.regex, uid=uid)
        matches = found.ours
        wrapped = wrappings(matches) if len(matches) > 1 else []
    except (OSError, psutil.Error) as exc:
        raise HealError(f"cannot list processes: {exc}") from exc
    if not matches:
        message = f"no process matches {pattern!r}; nothing to kill"
        if found.others:
            message += (
                f"; not counting {describe_foreign(found.others)}: only processes of {user_name(uid)} are signalled"
            )
            if options.user is None:
                message += "; set user: to the service's user if it runs as another"
        raise HealError(message)
    if options.ignore_wrappers and wrapped:
        outers = {w.outer.pid for w in wrapped}
        matches = [m for m in matches if m.pid not in outers]
        if options.process_group:
            _refuse_group_shared_with_wrapper(matches, wrapped)
        wrapped = []
    if len(matches) > options.max_matches:
        raise HealRefused(_too_many(options, matches, wrapped))
    return matches


def refusal_now(options: KillProcessOptions) -> str | None:
    """Why the heal would be refused if it ran now because of what its pattern matches, or None.

    For `horus check` and `horus validate`: nothing matching now is not reported (the service may be
    down at the moment), only a pattern that names too many processes.
    """
    try:
        select_targets(options)
    except HealRefused as refused:
        return str(refused)
    except HealError:
        return None
    return None


def _too_many(options: KillProcessOptions, matches: list[ProcessIdentity], wrapped: list[Wrapping]) -> str:
    pattern, limit = options.process_pattern, options.max_matches
    listed = "; ".join(_describe(m) for m in matches[:LISTED_IN_REFUSAL])
    if len(matches) > LISTED_IN_REFUSAL:
        listed += f"; and {len(matches) - LISTED_IN_REFUSAL} more"
    message = (
        f"{len(matches)} processes match {pattern!r}, more than max_matches {limit}; nothing was signalled: {listed}"
    )
    if not wrapped:
        return message
    pairs = describe_wrappings(wrapped)
    outers = {w.outer.pid for w in wrapped}
    services = [m for m in matches if m.pid not in outers]
    wrappers = [m for m in matches if m.pid in outers]
    message += (
        f". {pairs}: a wrapper or restart loop whose own command line holds the pattern too, "
        "so the pattern names the loop as well as the service"
    )
    if len(services) > limit:
        return message + f". Without the wrappers {len(services)} processes still match: narrow the pattern"
    ways = []
    anchored = anchored_pattern(pattern, regex=options.regex, services=services, wrappers=wrappers)
    if anchored is not None:
        quoted = "'" + anchored.replace("'", "''") + "'"
        ways.append(f"anchor the pattern on the service's own command line: regex: true, process_pattern: {quoted}")
    ways.append("set ignore_wrappers: true to signal only the innermost match and leave the loop running")
    return (
        message + ". To select the service alone, " + "; or ".join(ways) + ". Raising max_matches would signal "
        "the loop too"
    )


def _refuse_group_shared_with_wrapper(targets: list[ProcessIdentity], wrapped: list[Wrapping]) -> None:
    for target in targets:
        for wrapping in wrapped:
            if wrapping.inner.pid != target.pid:
                continue
            try:
                shared = os.getpgid(target.pid) == os.getpgid(wrapping.outer.pid)
            except ProcessLookupError:
                continue
            if shared:
                raise HealRefused(
                    f"{_short(target)} shares its process group with {_short(wrapping.outer)}, the wrapper "
                    "ignore_wrappers leaves alone: with process_group: true signalling the group would stop "
                    "the wrapper too; nothing was signalled. Set process_group: false, or start the service "
                    "in a process group of its own"
                )


def _short(process: ProcessIdentity) -> str:
    return f"pid {process.pid} ({display_cmdline(process.cmdline, SHORT_CMDLINE)})"


@dataclass
class _Target:
    process: ProcessIdentity
    members: list[ProcessIdentity]  # what has to exit: the process itself, or every process in its group
    pgid: int | None = None  # set when the whole group is signalled
    signals: list[str] = field(default_factory=list)
    skipped: str | None = None  # why nothing was sent
    unverifiable: bool = False
    signalled_at: float | None = None
    escalated: bool = False
    exited_after: float | None = None  # seconds from the first signal until every member had gone

    @property
    def subject(self) -> str:
        if self.pgid is None:
            return _describe(self.process)
        count = len(self.members)
        return f"process group {self.pgid} ({count} process{'es' if count != 1 else ''}) of {_describe(self.process)}"

    @property
    def pronoun(self) -> str:
        return "it" if self.pgid is None else "the group"

    def still_running(self) -> bool:
        return any(liveness(m) in (Liveness.RUNNING, Liveness.UNKNOWN) for m in self.members)


async def kill_processes(
    targets: Sequence[ProcessIdentity],
    *,
    sig: signal.Signals,
    grace_seconds: float,
    clock: Clock,
    process_group: bool = False,
) -> HealOutcome:
    """Signal each recorded process (or its group), wait, and SIGKILL whatever outlives the grace period.

    Every safety rule of :class:`KillProcessHeal` except ``max_matches`` lives here, so it holds for
    any caller. Raises HealRefused before signalling anything, or HealError when a process may not be
    signalled (permanent) or survives SIGKILL.
    """
    plan = await asyncio.to_thread(_plan, targets, process_group)
    live = [t for t in plan if t.skipped is None]
    await asyncio.to_thread(_check_permission, live)

    anything_sent = False
    for target in live:
        if await asyncio.to_thread(_deliver, target, sig, anything_sent):
            target.signalled_at = clock.monotonic()
            anything_sent = True
        else:
            target.skipped, target.unverifiable = _not_running_reason(target)
    signalled = [t for t in live if t.skipped is None]
    await _wait_for_exit(signalled, grace_seconds, clock)

    lingering = [t for t in signalled if t.exited_after is None]
    if lingering:
        if sig is not signal.SIGKILL:
            for target in lingering:
                # False means it exited after all, between the last look and now.
                target.escalated = await asyncio.to_thread(_deliver, target, signal.SIGKILL, True)
        await _wait_for_exit(lingering, KILL_WAIT_SECONDS, clock)

    summary = ". ".join(_summary(t, sig, grace_seconds) for t in plan)
    details: dict[str, Any] = {
        "signal": sig.name,
        "grace_seconds": grace_seconds,
        "targets": [_details(t) for t in plan],
    }
    if any(t.unverifiable for t in plan):
        raise HealError(summary, permanent=True, details=details)
    if any(t.exited_after is None for t in signalled):
        raise HealError(summary, details=details)
    return HealOutcome(ok=True, summary=summary, details=details)


def _plan(targets: Sequence[ProcessIdentity], process_group: bool) -> list[_Target]:
    """Check every target against the safety rules before anything is signalled."""
    protected = protected_pids()
    plan: list[_Target] = []
    groups: set[int] = set()
    pids: set[int] = set()
    for process in targets:
        if process.pid in protected:
            raise HealRefused(f"{_describe(process)} {_PROTECTED}; nothing was signalled")
        if process.pid in pids:
            continue
        pids.add(process.pid)
        state = liveness(process)
        if state is not Liveness.RUNNING:
            plan.append(_Target(process, [process], skipped=_REASONS[state], unverifiable=_unknown(state)))
            continue
        if not process_group:
            plan.append(_Target(process, [process]))
            continue
        pgid = process_group_of(process)
        if pgid is None:
            plan.append(_Target(process, [process], skipped=_REASONS[Liveness.EXITED]))
            continue
        if pgid in groups:
            continue  # another match is in the same group, which is signalled once
        members = group_members(pgid)
        problem = _unsafe_group(process, pgid, members, protected)
        if problem:
            raise HealRefused(f"{problem}; nothing was signalled")
        groups.add(pgid)
        plan.append(_Target(process, members, pgid=pgid))
    return plan


def _check_permission(targets: list[_Target]) -> None:
    """Signal 0 to every target first, so a permission problem stops the heal before anything is sent."""
    for target in targets:
        try:
            if target.pgid is None:
                send_signal(target.process, 0)
            else:
                signal_group(target.pgid, 0)
        except PermissionError as exc:
            raise _permission_error(target) from exc


def _deliver(target: _Target, sig: signal.Signals, anything_sent: bool) -> bool:
    """Send one signal after checking every safety rule again; False when the target is gone."""
    protected = protected_pids()
    if target.process.pid in protected:
        raise _refusal(f"{_describe(target.process)} {_PROTECTED}", anything_sent)
    try:
        if target.pgid is None:
            if not send_signal(target.process, sig):
                return False
        else:
            # A group id cannot be reused while one of its members lives, so find a recorded member
            # that is verifiably still running and still in the group before signalling the group.
            if not any(process_group_of(m) == target.pgid for m in target.members):
                return False
            members = group_members(target.pgid)
            problem = _unsafe_group(target.process, target.pgid, members, protected)
            if problem:
                raise _refusal(problem, anything_sent)
            # Processes the target started since it was matched get the signal too: wait for them.
            known = {(m.pid, m.create_time): m for m in [*target.members, *members]}
            target.members = sorted(known.values(), key=lambda m: m.pid)
            if not signal_group(target.pgid, sig):
                return False
    except PermissionError as exc:
        raise _permission_error(target) from exc
    target.signals.append(sig.name)
    extra = {} if target.pgid is None else {"pgid": target.pgid, "group_pids": [m.pid for m in target.members]}
    get_logger().info(
        "kill_process.signal_sent",
        pid=target.process.pid,
        signal=sig.name,
        create_time=target.process.create_time,
        **extra,
    )
    return True


async def _wait_for_exit(targets: list[_Target], timeout: float, clock: Clock) -> None:
    """Poll until every target has exited (a zombie has) or ``timeout`` seconds have passed."""
    started = clock.monotonic()
    interval = FIRST_POLL_SECONDS
    while True:
        # A few /proc reads per target: cheap enough to do on the event loop between sleeps.
        for target in targets:
            if target.exited_after is None and not target.still_running():
                assert target.signalled_at is not None
                target.exited_after = clock.monotonic() - target.signalled_at
        remaining = timeout - (clock.monotonic() - started)
        if all(t.exited_after is not None for t in targets) or remaining <= 0:
            return
        await clock.sleep(min(interval, remaining))
        interval = min(interval * 2, MAX_POLL_SECONDS)


_PROTECTED = "is Horus itself, one of the processes it was started from, or PID 1, and is never signalled"

_REASONS = {
    Liveness.EXITED: "it had already exited",
    Liveness.REUSED: "it had already exited and its pid now belongs to another process",
    Liveness.UNKNOWN: "it cannot be inspected, so Horus cannot verify that its pid still belongs to it",
}


def _unknown(state: Liveness) -> bool:
    return state is Liveness.UNKNOWN


def _not_running_reason(target: _Target) -> tuple[str, bool]:
    if target.pgid is not None:
        return "its process group had already exited", False
    state = liveness(target.process)
    if state is Liveness.RUNNING:  # it was not running a moment ago: a pid cannot come back
        state = Liveness.EXITED
    return _REASONS[state], _unknown(state)


def _unsafe_group(
    process: ProcessIdentity, pgid: int, members: list[ProcessIdentity], protected: frozenset[int]
) -> str | None:
    where = f"{_describe(process)} is in process group {pgid}"
    if pgid == os.getpgrp():
        return f"{where}, Horus's own; signalling it would signal Horus"
    if pgid in (0, 1):
        return f"{where}, which belongs to init or the kernel"
    for member in members:
        if member.pid in protected:
            return f"{where}, which also holds {_describe(member)}, a process that {_PROTECTED}"
    return None


def _refusal(message: str, anything_sent: bool) -> HealError:
    if anything_sent:
        return HealError(f"{message}; stopped after signalling earlier targets", permanent=True)
    return HealRefused(f"{message}; nothing was signalled")


def _permission_error(target: _Target) -> HealError:
    return HealError(
        f"not permitted to signal {target.subject}{_owner(target.process)}; "
        "run Horus as the same user as the process, or as root",
        permanent=True,
    )


def _owner(process: ProcessIdentity) -> str:
    try:
        return f", which belongs to {psutil.Process(process.pid).username()}"
    except (psutil.Error, KeyError):  # the name is a courtesy; the error is the permission
        return ""


def _describe(process: ProcessIdentity) -> str:
    return f"pid {process.pid} ({display_cmdline(process.cmdline)})"


def _summary(target: _Target, sig: signal.Signals, grace_seconds: float) -> str:
    if target.skipped is not None:
        return f"{target.subject} was not signalled: {target.skipped}"
    text = f"sent {sig.name} to {target.subject}"
    if target.escalated:
        text += f"; {target.pronoun} did not exit within {humanize.seconds(grace_seconds)}; sent SIGKILL"
    if target.exited_after is None:
        if signal.SIGKILL.name not in target.signals:
            return f"{text}; {target.pronoun} is still running"
        return (
            f"{text}; {target.pronoun} is still running {humanize.seconds(KILL_WAIT_SECONDS)} after SIGKILL "
            "(stuck in the kernel, e.g. on a hung disk or network mount)"
        )
    if target.escalated:
        return f"{text}; {target.pronoun} exited"
    if target.exited_after < 0.001:
        return f"{text}; {target.pronoun} exited at once"
    return f"{text}; {target.pronoun} exited after {humanize.seconds(target.exited_after)}"


def _details(target: _Target) -> dict[str, Any]:
    exited = target.exited_after is not None or (target.skipped is not None and not target.unverifiable)
    entry: dict[str, Any] = {
        "pid": target.process.pid,
        "create_time": target.process.create_time,
        "cmdline": display_cmdline(target.process.cmdline),
        "signals": list(target.signals),
        "exited": exited,
        "exited_after_seconds": None if target.exited_after is None else round(target.exited_after, 3),
        "skipped": target.skipped,
    }
    if target.pgid is not None:
        entry["pgid"] = target.pgid
        entry["group_pids"] = [m.pid for m in target.members]
    return entry
