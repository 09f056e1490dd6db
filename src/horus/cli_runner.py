"""``horus reload NAME``: ask NAME's runner (``horus_sdk.runner``) to hand trading to the current version of the
service's source, wait for its answer and say how the reload went; and the runner's line in ``horus status``.

It needs only the runner (the monitor's ``runner:`` state dir), not a running Horus daemon. Exit 0 when the new
version trades (or there was nothing to reload); 1 when the reload failed or was rolled back, the runner is not
running, or it did not answer in time (said: still queued, or taken and not answered yet); 2 for a usage
error (no such monitor, or it has no runner).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from horus import humanize
from horus.checks.runner import runner_stopped_by_signal, same_process, wall_time
from horus.config.models import HorusConfig
from horus_sdk.runner_files import (
    RunnerPaths,
    describe_reload,
    new_request,
    process_start_token,
    read_result,
    read_runner_state,
)

__all__ = ["DEFAULT_RELOAD_TIMEOUT_SECONDS", "RunnerUnavailable", "register_reload", "runner_status"]

EXIT_PROBLEM = 1
EXIT_USAGE = 2
# A reload runs a preflight, starts the new version, waits for it to be ready (60 s by default) and hands over
# at a cycle boundary: three minutes leave room for all of it with the runner's default limits.
DEFAULT_RELOAD_TIMEOUT_SECONDS = 180.0
POLL_SECONDS = 0.1
# Outcomes after which the version that trades is one the operator wanted: the command succeeded.
SUCCESSFUL_OUTCOMES = ("done", "unchanged")


class RunnerUnavailable(Exception):
    """The runner's account cannot be had or believed, or the runner is not running; the message says why."""


def register_reload(main: click.Group, load: Callable[[Path], HorusConfig], config_option: Any) -> None:
    """Add ``horus reload`` to ``main``; ``load`` reads a config or exits 2 with its errors."""

    @main.command()
    @config_option
    @click.argument("name")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0.1, max=24 * 3600),
        default=DEFAULT_RELOAD_TIMEOUT_SECONDS,
        show_default=True,
        help="How long to wait for the runner's answer, in seconds.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the runner's answer (its result file) as JSON.")
    def reload(config_path: Path, name: str, timeout: float, as_json: bool) -> None:
        """Hot-reload the service NAME: its runner checks the current source, starts it as a standby and hands
        trading over at a cycle boundary, keeping the running version if anything goes wrong.

        NAME's monitor must name its runner (`runner:` the runner's --state-dir). A Horus daemon need not run.
        """
        config = load(config_path)
        monitor = next((m for m in config.monitors if m.name == name), None)
        if monitor is None:
            click.echo(f"{config_path}: no monitor named {name!r}", err=True)
            sys.exit(EXIT_USAGE)
        state_dir = monitor.runner
        if state_dir is None:
            click.echo(
                f"{config_path}: monitor {name!r} has no runner: set `runner:` to the state dir of the horus-runner "
                "it runs under (its --state-dir) to reload it",
                err=True,
            )
            sys.exit(EXIT_USAGE)
        try:
            state = live_runner_state(state_dir)
        except RunnerUnavailable as exc:
            click.echo(f"{name}: cannot reload: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        try:
            request_id = new_request(state_dir, "reload", requested_by=f"{_user()} (horus reload)")
        except (OSError, ValueError) as exc:
            where = RunnerPaths.of(state_dir).requests
            click.echo(f"{name}: cannot write the reload request into {where}: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        click.echo(
            f"{name}: asked the runner (pid {state['pid']}) to reload (request {request_id}); "
            f"waiting up to {humanize.seconds(timeout)} for its answer",
            err=True,
        )
        try:
            result = _wait_for_result(state_dir, request_id, timeout)
        except KeyboardInterrupt:
            click.echo(f"{name}: stopped waiting. {_still_pending(state_dir, request_id)}", err=True)
            sys.exit(EXIT_PROBLEM)
        except (OSError, ValueError) as exc:
            click.echo(f"{name}: the runner's answer to request {request_id} cannot be believed: {exc}", err=True)
            sys.exit(EXIT_PROBLEM)
        if result is None:
            click.echo(
                f"{name}: the runner did not answer within {humanize.seconds(timeout)}"
                f"{_runner_gone_note(state_dir)}. {_still_pending(state_dir, request_id)}",
                err=True,
            )
            sys.exit(EXIT_PROBLEM)
        succeeded = result.get("outcome") in SUCCESSFUL_OUTCOMES
        if as_json:
            click.echo(json.dumps(strict_json(result), indent=2, default=str))
        else:
            click.echo(f"{name}: {describe_result(result, time.time())}", err=not succeeded)
        if not succeeded:
            sys.exit(EXIT_PROBLEM)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _wait_for_result(state_dir: Path, request_id: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        result = read_result(state_dir, request_id)
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _still_pending(state_dir: Path, request_id: str) -> str:
    paths = RunnerPaths.of(state_dir)
    if paths.request(request_id).exists():
        return (
            f"The request is still queued ({paths.request(request_id)}): the runner will still act on it, "
            f"and its answer will be in {paths.result(request_id)}"
        )
    return (
        f"The runner has taken the request and is still acting on it; its answer will be in {paths.result(request_id)}"
    )


def _runner_gone_note(state_dir: Path) -> str:
    try:
        live_runner_state(state_dir)
    except RunnerUnavailable as exc:
        return f" ({exc})"
    return ""


def describe_result(result: dict[str, Any], now: float) -> str:
    """One sentence for a runner's answer to a reload request; for "done", when its probation ends."""
    entry = result.get("reload")
    if isinstance(entry, dict):
        sentence = describe_reload(entry)
    elif result.get("outcome") == "unchanged":
        sentence = "nothing to reload: the running version is the current one"
    else:
        reason = str(result.get("reason") or "").strip() or "no reason given"
        sentence = f"the runner answered the reload request with {result.get('outcome') or 'no outcome'}: {reason}"
    if result.get("outcome") == "done":
        until = wall_time(result.get("probation_until"))
        if until is None and isinstance(entry, dict):
            until = wall_time(entry.get("probation_until"))
        if until is not None:
            sentence += (
                f"; on probation until {_utc_time(until)} ({humanize.duration(max(0.0, until - now))} from now): "
                "if it crashes or trips by then, the runner brings the previous version back"
            )
    return sentence


def live_runner_state(state_dir: Path) -> dict[str, Any]:
    """``runner.json`` of a runner that is running now (its pid and process start match a live process);
    RunnerUnavailable, with a sentence, otherwise."""
    state = runner_state(state_dir)
    problem = _runner_not_running(state)
    if problem is not None:
        raise RunnerUnavailable(problem)
    return state


def runner_state(state_dir: Path) -> dict[str, Any]:
    """``runner.json``, whether or not its runner still runs; RunnerUnavailable, with a sentence, when it cannot
    be read or believed."""
    try:
        return read_runner_state(state_dir)
    except FileNotFoundError:
        if not state_dir.is_dir():
            raise RunnerUnavailable(
                f"the runner state dir {state_dir} does not exist (no horus-runner has run with that --state-dir)"
            ) from None
        raise RunnerUnavailable(f"no runner.json in {state_dir}: no horus-runner has started with it") from None
    except (OSError, ValueError) as exc:
        raise RunnerUnavailable(f"runner.json cannot be read or believed: {exc}") from None


def _runner_not_running(state: dict[str, Any]) -> str | None:
    pid = _pid(state.get("pid"))
    if pid is None:
        return "runner.json names no runner pid, so there is no runner to ask"
    if not same_process(pid, state.get("process_start")):
        token = process_start_token(pid)
        if token is None:
            return f"the runner is not running (its pid {pid} has exited)"
        if token != str(state.get("process_start")):
            return f"the runner is not running (pid {pid} is now another process: it started at another time)"
        return f"the runner is not running (its pid {pid} has exited and waits to be reaped by its parent)"
    frozen = runner_stopped_by_signal(pid)
    if frozen is not None:
        return frozen
    if state.get("state") in ("stopping", "stopped"):
        return f"the runner is {state['state']} and takes no more requests"
    return None


def _pid(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def runner_status(state_dir: Path, now: float) -> tuple[str, dict[str, Any]]:
    """The runner's line for ``horus status`` and its object for ``--json``, from runner.json read now.

    Never raises for what is in the state dir: a runner.json that cannot be read is a sentence on the line."""
    try:
        state = runner_state(state_dir)
    except RunnerUnavailable as exc:
        return str(exc), {"dir": str(state_dir), "readable": False, "problem": str(exc)}
    not_running = _runner_not_running(state)
    facts: dict[str, Any] = {
        "dir": str(state_dir),
        "readable": True,
        "running": not_running is None,
        "problem": not_running,
        "pid": state.get("pid"),
        "state": state.get("state"),
        "state_reason": state.get("state_reason"),
        "updated_at": state.get("updated_at"),
        "active": _instance(state.get("active")),
        "standby": _instance(state.get("standby")),
        "previous_version": state.get("previous_version"),
        "restarts": state.get("restarts"),
        "last_reload": None,
    }
    # The last reload that did something: a "nothing to reload" asked for after it would hide what changed.
    reloads = state.get("reloads")
    entries = [r for r in reloads if isinstance(r, dict)] if isinstance(reloads, list) else []
    last = next((r for r in reversed(entries) if r.get("outcome") != "unchanged"), None)
    if last is not None:
        facts["last_reload"] = {**last, "summary": describe_reload(last)}
    return _runner_line(facts, now), strict_json(facts)


# A runner writes a few levels; deeper is junk, cut short rather than risk the interpreter's recursion limit.
_MAX_DEPTH = 32


def strict_json(value: Any, depth: int = 0) -> Any:
    """``value`` with every NaN and Infinity (which json reads from a runner's files, but which are not JSON and
    which a reader such as jq refuses) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list) and depth >= _MAX_DEPTH:
        return "(nested too deeply)"
    if isinstance(value, dict):
        return {key: strict_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [strict_json(item, depth + 1) for item in value]
    return value


def _instance(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {
        "pid": value.get("pid"),
        "alive": same_process(value.get("pid"), value.get("process_start")),
        "version": value.get("version"),
        "epoch": value.get("epoch"),
        "started_at": value.get("started_at"),
        "trading_since": value.get("trading_since"),
    }


def _runner_line(facts: dict[str, Any], now: float) -> str:
    state = str(facts["state"] or "state unknown")
    # Why it is not trading is worth its length; "running" needs no explanation.
    if facts["state"] in ("backoff", "gave_up") and facts["state_reason"]:
        state += f" ({facts['state_reason']})"
    if facts["problem"] is not None:
        line = f"{facts['problem']}; runner.json last said {state}, {_ago(facts['updated_at'], now)}"
    else:
        line = f"{state} (runner pid {facts['pid']})"
    active = facts["active"]
    if active is not None:
        line += f"; active pid {active['pid']}{_instance_words(active)}"
        trading_since = wall_time(active["trading_since"])
        if trading_since is not None:
            line += f", trading for {humanize.duration(max(0.0, now - trading_since))}"
    elif facts["problem"] is None:
        line += "; no active instance"
    standby = facts["standby"]
    if standby is not None:
        line += f"; standby pid {standby['pid']}{_instance_words(standby)}"
    last = facts["last_reload"]
    if last is not None:
        when = wall_time(last.get("finished_at"))
        line += f"; last reload {_ago(when if when is not None else last.get('started_at'), now)}: {last['summary']}"
    else:
        line += "; no reload yet"
    return line


def _instance_words(instance: dict[str, Any]) -> str:
    words = f" version {str(instance['version'])[:12]}" if instance["version"] else ""
    if instance["epoch"] is not None:
        words += f" epoch {instance['epoch']}"
    return words if instance["alive"] else f"{words} (exited)"


def _ago(value: Any, now: float) -> str:
    when = wall_time(value)
    if when is None:
        return "at an unknown time"
    return f"{humanize.duration(max(0.0, now - when))} ago"


def _utc_time(wall: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(wall))
