"""The ``runner`` check: the service's runner (``horus_sdk.runner``) is alive, and so is its trading instance."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

import psutil

from horus import humanize
from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import AbsolutePath, PositiveSeconds
from horus_sdk.formats import RefusedFileError
from horus_sdk.runner_files import RunnerPaths, process_start_token, read_runner_state

__all__ = [
    "RunnerCheck",
    "RunnerOptions",
    "describe_instance",
    "last_reload",
    "runner_instance",
    "runner_stopped_by_signal",
    "same_process",
    "wall_time",
]

# States in which the runner has, on purpose, no instance trading.
_STATES_WITHOUT_ACTIVE = ("backoff", "gave_up", "stopping", "stopped")


class RunnerOptions(CheckOptions):
    type: Literal["runner"]
    # None only until the config fills in the monitor's ``runner`` (see MonitorConfig).
    dir: AbsolutePath | None = None
    trading_within_seconds: PositiveSeconds = 120.0


class RunnerCheck(Check[RunnerOptions]):
    """Reads ``runner.json`` in the runner's state dir ``dir`` (by default the monitor's ``runner``) and is
    healthy when the runner process is alive, its active instance is alive and that instance is trading.

    A process counts as alive only when both its pid and its start time (``process_start``) are the ones the
    runner wrote: a pid the system gave to another process since is not the runner, nor its instance. No
    command line is matched. Unhealthy, with the reason, when:

    - ``runner.json`` is missing, not a runner's account (damaged, not a regular file, too large), or could have
      been written by another user (a path Horus cannot look at, such as permission denied, is a probe error);
    - the runner process is gone (nothing restarts the service's instances any more);
    - there is no active instance: the runner is in ``backoff`` after a crash, or ``gave_up`` after too many
      (the reason gives the runner's ``state_reason`` and how the last instance exited); while it is
      ``starting`` an instance (at its start, after a crash's backoff, at a restart request) it is judged like
      an active instance that has not traded yet, below;
    - the active instance's process is gone;
    - the active instance has not started trading ``trading_within_seconds`` (default 120) after it started;
      before that the check cannot judge yet.

    The details carry the runner's and the instances' pids, versions and epoch, its state and its last reload.
    Pair it with a ``trading`` check on the bot's control dir, or set ``runner:`` on the monitor, which
    follows the runner (reloads, crash restarts) whatever the check.
    """

    options_model = RunnerOptions
    inline = True

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        return await asyncio.to_thread(self.probe_inline, ctx)

    def probe_inline(self, ctx: ProbeContext) -> CheckResult:
        state_dir = self.options.dir
        if state_dir is None:
            return CheckResult.unhealthy("no runner state dir: set dir, or runner on the monitor")
        path = RunnerPaths.of(state_dir).state
        try:
            state = read_runner_state(state_dir)
        except FileNotFoundError:
            return CheckResult.unhealthy(f"no {path.name} in {path.parent}: the runner has not started here")
        except (RefusedFileError, ValueError) as exc:
            return CheckResult.unhealthy(f"{path.name} cannot be believed: {exc}")
        # Any other OSError (permission denied, a path through a regular file) is Horus not seeing, not the runner
        # failing: it goes up as a probe error, which never heals.
        return judge(state, now_wall=ctx.clock.wall(), trading_within=self.options.trading_within_seconds)


def judge(state: Mapping[str, Any], *, now_wall: float, trading_within: float) -> CheckResult:
    """The verdict on one ``runner.json``."""
    details = runner_details(state)
    runner_pid = state.get("pid")
    if not same_process(runner_pid, state.get("process_start")):
        return CheckResult.unhealthy(
            f"the runner (pid {runner_pid}) is gone: nothing runs or restarts the service's instances", **details
        )
    frozen = runner_stopped_by_signal(runner_pid)
    if frozen is not None:
        return CheckResult.unhealthy(frozen, **details)
    active = state.get("active")
    runner_state = str(state.get("state") or "unknown")
    standby = state.get("standby")
    standby = standby if isinstance(standby, Mapping) else None
    starting = not isinstance(active, Mapping) and runner_state == "starting"
    if starting and standby is not None and same_process(standby.get("pid"), standby.get("process_start")):
        return _not_trading_yet(
            standby,
            f"the runner (pid {runner_pid}) is starting: its instance ({describe_instance(standby)})",
            "has not taken the lease yet",
            now_wall=now_wall,
            trading_within=trading_within,
            details=details,
        )
    if not isinstance(active, Mapping):
        why = str(state.get("state_reason") or "").strip()
        exit_text = describe_exit(state.get("last_exit"))
        reason = f"the runner (pid {runner_pid}) has no active instance: state {runner_state}"
        reason += f" ({why})" if why else ""
        reason += f"; the last instance {exit_text}" if exit_text else ""
        return CheckResult.unhealthy(reason, **details)
    if not same_process(active.get("pid"), active.get("process_start")):
        return CheckResult.unhealthy(
            f"the active instance ({describe_instance(active)}) is gone; "
            f"the runner (pid {runner_pid}) is {runner_state}",
            **details,
        )
    if not active.get("trading_since"):
        return _not_trading_yet(
            active,
            f"the active instance ({describe_instance(active)})",
            "has not started trading yet",
            now_wall=now_wall,
            trading_within=trading_within,
            details=details,
        )
    reason = f"the runner (pid {runner_pid}) is {runner_state}; {describe_instance(active)} is trading"
    if standby is not None:
        reason += f"; standby {describe_instance(standby)}"
    return CheckResult.healthy(reason, **details)


def same_process(pid: Any, process_start: Any) -> bool:
    """True when ``pid`` is, now, the very process that started at ``process_start``, and it has not exited.

    A process that died and was not reaped yet (a zombie) keeps its pid and start time: a runner that is stopped
    or hung reaps nothing, so its dead instance would otherwise pass for one that trades."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not process_start:
        return False
    if process_start_token(pid) != str(process_start):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess is one
        return False
    except psutil.Error:
        return True  # not ours to look at further: its pid and start time are what there is to go by


def _not_trading_yet(
    instance: Mapping[str, Any],
    subject: str,
    waiting: str,
    *,
    now_wall: float,
    trading_within: float,
    details: dict[str, Any],
) -> CheckResult:
    """An instance alive but not trading yet: not judged until ``trading_within`` after it started."""
    started = wall_time(instance.get("started_at"))
    age = now_wall - started if started is not None else None
    if age is not None and age > trading_within:
        return CheckResult.unhealthy(
            f"{subject} started {humanize.duration(age)} ago and has not traded yet, "
            f"limit {humanize.duration(trading_within)}",
            **details,
        )
    return CheckResult.unknown(
        f"{subject} {waiting}",
        recheck_in=max(0.5, trading_within - age) if age is not None else None,
        **details,
    )


def wall_time(value: Any) -> float | None:
    """A time (seconds since the epoch) read from ``runner.json``, or None when the value is not one: json reads
    NaN and Infinity, and a time made of them can be neither shown nor compared."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def runner_stopped_by_signal(pid: Any) -> str | None:
    """Why the live runner ``pid`` does nothing now, when it is stopped (SIGSTOP, Ctrl-Z in the terminal it runs in,
    a debugger); None when it runs. Such a runner restarts, reloads and answers nothing, like one that is gone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:
        return None
    if status not in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return None
    return (
        f"the runner (pid {pid}) is stopped by a signal (SIGSTOP, Ctrl-Z in its terminal, or a debugger): it "
        f"restarts, reloads and answers nothing until it is continued (kill -CONT {pid})"
    )


def describe_instance(instance: Mapping[str, Any]) -> str:
    """``pid 4121, version 3f2a1b0c9d8e, epoch 12``."""
    parts = [f"pid {instance.get('pid')}"]
    if instance.get("version"):
        parts.append(f"version {str(instance['version'])[:12]}")
    if instance.get("epoch") is not None:
        parts.append(f"epoch {instance['epoch']}")
    return ", ".join(parts)


def describe_exit(last_exit: Any) -> str:
    """How an instance ended, from ``runner.json``'s ``last_exit``, or "" when it says nothing."""
    if not isinstance(last_exit, Mapping):
        return ""
    parts = []
    if last_exit.get("pid") is not None:
        parts.append(f"pid {last_exit['pid']}")
    if last_exit.get("signal") is not None:
        text = f"was killed by signal {last_exit['signal']}"
    elif last_exit.get("code") is not None:
        text = f"exited with code {last_exit['code']}"
    elif last_exit.get("returncode") is not None:
        text = f"exited with code {last_exit['returncode']}"
    else:
        text = "exited"
    at = wall_time(last_exit.get("at"))
    if at is not None:
        text += f" {humanize.duration(max(0.0, time.time() - at))} ago"
    return f"({', '.join(parts)}) {text}" if parts else text


def last_reload(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest entry of ``runner.json``'s ``reloads``, or None."""
    reloads = state.get("reloads")
    if isinstance(reloads, list) and reloads and isinstance(reloads[-1], dict):
        return reloads[-1]
    return None


def _instance(instance: Any) -> dict[str, Any] | None:
    if not isinstance(instance, Mapping):
        return None
    keys = ("pid", "version", "epoch", "started_at", "trading_since")
    return {key: instance.get(key) for key in keys}


def runner_details(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a result says of the runner: its pids, versions, epoch, state and last reload."""
    active = state.get("active")
    return {
        "runner_pid": state.get("pid"),
        "state": state.get("state"),
        "state_reason": state.get("state_reason"),
        "active": _instance(active),
        "standby": _instance(state.get("standby")),
        "epoch": active.get("epoch") if isinstance(active, Mapping) else None,
        "previous_version": state.get("previous_version"),
        "restarts": state.get("restarts"),
        "last_exit": state.get("last_exit"),
        "last_reload": last_reload(state),
        "instance": runner_instance(state),
    }


def runner_instance(state: Mapping[str, Any]) -> str:
    """What the engine counts a service's restarts by under a runner: a new runner, or the runner restarting a
    crashed instance. A hot reload (a new active pid on purpose) is neither."""
    return f"runner {state.get('pid')}@{state.get('process_start')} restarts {state.get('restarts')}"
