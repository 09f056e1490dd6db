"""The ``runner_restart`` heal: ask the service's runner to restart its instance, and wait for its answer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any, Literal

from horus import humanize
from horus.checks.runner import describe_instance, runner_stopped_by_signal, same_process
from horus.config.types import AbsolutePath, PositiveSeconds
from horus.errors import HealError, HealRefused
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus_sdk.runner_files import RunnerPaths, new_request, read_result, read_runner_state

__all__ = ["RunnerRestartHeal", "RunnerRestartOptions"]

# The engine's deadline sits past the wait for the runner's answer, so the heal says "no answer" in its own
# words rather than being abandoned.
RUNNER_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.1


class RunnerRestartOptions(HealOptions):
    action: Literal["runner_restart"]
    # None only until the config fills in the monitor's ``runner`` (see MonitorConfig).
    dir: AbsolutePath | None = None
    timeout_seconds: PositiveSeconds = 60.0


class RunnerRestartHeal(Heal[RunnerRestartOptions]):
    """Ask the runner (``horus_sdk.runner``) whose state dir is ``dir`` (by default the monitor's ``runner``)
    to restart the service's instance, by a ``restart`` request in its ``requests/``, and wait up to
    ``timeout_seconds`` (default 60) for its answer in ``results/``. It succeeds only when the runner says the
    restart is done; the runner does it its own way (a new instance, promoted once ready), so there is never a
    moment with two instances trading. The request names the monitor (``horus heal NAME``) and the failing
    check's reason.

    It is refused, touching nothing, when the runner itself is not running: nobody would answer, and the
    runner's own supervisor (launchd, systemd) is what restarts it. A request not answered in time is
    withdrawn when the runner has not taken it yet.
    """

    options_model = RunnerRestartOptions

    def timeout_seconds(self, default: float) -> float:
        return self.options.timeout_seconds + RUNNER_MARGIN_SECONDS

    async def run(self, ctx: HealContext) -> HealOutcome:
        state_dir = self.options.dir
        if state_dir is None:
            raise HealRefused("no runner state dir: set dir, or runner on the monitor")
        try:
            state = await asyncio.to_thread(read_runner_state, state_dir)
        except FileNotFoundError:
            raise HealRefused(
                f"no runner.json in {state_dir}: no runner runs there to answer a restart request"
            ) from None
        except (OSError, ValueError) as exc:
            raise HealRefused(f"the runner's state cannot be believed, so no request was written: {exc}") from exc
        runner_pid = state.get("pid")
        if not await asyncio.to_thread(same_process, runner_pid, state.get("process_start")):
            raise HealRefused(
                f"the runner (pid {runner_pid}) is not running: nobody would answer a restart request; its "
                "supervisor must start it again"
            )
        frozen = await asyncio.to_thread(runner_stopped_by_signal, runner_pid)
        if frozen is not None:
            raise HealRefused(f"{frozen}; no restart request was written")
        before = state.get("active")
        details: dict[str, Any] = {"runner_pid": runner_pid, "state_dir": str(state_dir)}
        if isinstance(before, dict):
            details["active_before"] = describe_instance(before)
        try:
            request_id = await asyncio.to_thread(
                new_request, state_dir, "restart", requested_by=f"horus heal {ctx.monitor}", reason=ctx.reason
            )
        except OSError as exc:
            raise HealError(f"cannot write the restart request: {exc}", details=details) from exc
        details["request"] = request_id
        started = time.monotonic()
        deadline = started + self.options.timeout_seconds
        while True:
            try:
                result = await asyncio.to_thread(read_result, state_dir, request_id)
            except (OSError, ValueError) as exc:
                unreadable = f"the runner's answer to request {request_id} cannot be read: {exc}"
                raise HealError(unreadable, details=details) from exc
            if result is not None:
                break
            if time.monotonic() >= deadline:
                details["withdrawn"] = await asyncio.to_thread(_withdraw, state_dir, request_id)
                raise HealError(
                    f"the runner (pid {runner_pid}) did not answer restart request {request_id} within "
                    f"{humanize.seconds(self.options.timeout_seconds)}"
                    + ("; the request was withdrawn" if details["withdrawn"] else ""),
                    details=details,
                )
            await asyncio.sleep(POLL_SECONDS)
        details["waited_seconds"] = round(time.monotonic() - started, 3)
        outcome = result.get("outcome")
        reason = str(result.get("reason") or "").strip()
        details["outcome"] = outcome
        if reason:
            details["reason"] = reason
        if outcome != "done":
            raise HealError(
                f"the runner (pid {runner_pid}) did not restart the instance: {outcome or 'no outcome'}"
                + (f": {reason}" if reason else ""),
                details=details,
            )
        summary = f"the runner (pid {runner_pid}) restarted the instance"
        with contextlib.suppress(OSError, ValueError):
            after = (await asyncio.to_thread(read_runner_state, state_dir)).get("active")
            if isinstance(after, dict):
                details["active_after"] = describe_instance(after)
                summary += f": {describe_instance(after)} is active"
        return HealOutcome(ok=True, summary=summary, details=details)


def _withdraw(state_dir: os.PathLike[str], request_id: str) -> bool:
    """Remove a request the runner has not taken; False when it is gone already (taken, or never there)."""
    try:
        os.unlink(RunnerPaths.of(state_dir).request(request_id))
    except OSError:
        return False
    return True
