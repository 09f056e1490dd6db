"""Run one check or one heal under a hard timeout, turning every way it can end into a value.

Nothing a plugin does can escape this boundary: a hung probe becomes a timed-out result, a crashed
probe becomes a probe error, a failed heal becomes a failed outcome. The engine never sees an
exception from a plugin and never waits on one longer than its timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from horus import humanize
from horus.checks.base import Check, CheckResult, ProbeContext
from horus.errors import ExecError, HealError, ProbeError
from horus.heals.base import Heal, HealContext, HealOutcome
from horus.log import get_logger

__all__ = ["CheckRun", "run_check", "run_heal", "run_inline"]

log = get_logger("horus.engine")


@dataclasses.dataclass(frozen=True)
class CheckRun:
    result: CheckResult
    duration_seconds: float


async def run_check(check: Check, ctx: ProbeContext, *, timeout: float) -> CheckRun:
    started = time.monotonic()
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            result = await check.probe(ctx)
    except TimeoutError:
        if not deadline.expired():
            result = CheckResult.error(f"probe failed: {_describe_timeout()}")
        elif check.timeout_means_unhealthy:
            result = CheckResult.unhealthy(f"no answer within {humanize.seconds(timeout)}")
        else:
            result = CheckResult.error(f"probe did not finish within {humanize.seconds(timeout)}")
    except Exception as exc:
        result = _probe_broke(check, exc)
    return CheckRun(result, time.monotonic() - started)


def run_inline(check: Check, ctx: ProbeContext) -> CheckRun:
    """Run an inline check (on the filesystem thread, which the scheduler times out from outside)."""
    started = time.monotonic()
    try:
        result = check.probe_inline(ctx)
    except Exception as exc:
        result = _probe_broke(check, exc)
    return CheckRun(result, time.monotonic() - started)


def _probe_broke(check: Check, exc: Exception) -> CheckResult:
    """A probe that raised says nothing about the service: a probe error, logged when unexpected."""
    if isinstance(exc, ProbeError | ExecError):
        return CheckResult.error(str(exc))
    log.exception("check.crashed", check=check.type)
    return CheckResult.error(f"probe crashed: {type(exc).__name__}: {exc}")


async def run_heal(heal: Heal, ctx: HealContext, *, timeout: float) -> HealOutcome:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await heal.run(ctx)
    except TimeoutError:
        if deadline.expired():
            return HealOutcome(ok=False, summary=f"did not finish within {humanize.seconds(timeout)}")
        return HealOutcome(ok=False, summary=f"failed: {_describe_timeout()}")
    except HealError as exc:
        return HealOutcome(ok=False, summary=str(exc), details=exc.details, permanent=exc.permanent)
    except ExecError as exc:
        return HealOutcome(ok=False, summary=str(exc), permanent=exc.permanent)
    except Exception as exc:
        log.exception("heal.crashed", action=heal.action, monitor=ctx.monitor)
        return HealOutcome(ok=False, summary=f"heal crashed: {type(exc).__name__}: {exc}")


def _describe_timeout() -> str:
    return "an operation inside it timed out"
