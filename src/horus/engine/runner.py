"""Run one check or one heal under a hard timeout, turning every way it can end into a value.

Nothing a plugin does can escape this boundary: a hung probe becomes a timed-out result, a crashed
probe becomes a probe error, a failed heal becomes a failed outcome. The engine never sees an
exception from a plugin and never waits on one longer than its timeout.

It is also where a plugin's words enter Horus, so every reason, summary, detail, piece of evidence and
traceback is redacted here (:mod:`horus.redaction`): the logs, databases, notifications, post-mortems
and command line downstream only ever hold masked text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import os
import pwd
import time
import traceback
from typing import Any

from horus import humanize
from horus.checks.base import Check, CheckResult, ProbeContext
from horus.errors import ExecError, HealError, HealRefused, ProbeError
from horus.heals.base import Heal, HealContext, HealOutcome
from horus.log import get_logger
from horus.redaction import redact, redact_tree

__all__ = ["CheckRun", "collect_evidence", "describe_os_error", "run_check", "run_heal", "run_inline"]

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
    return CheckRun(_redacted(result), time.monotonic() - started)


def run_inline(check: Check, ctx: ProbeContext) -> CheckRun:
    """Run an inline check (on the filesystem thread, which the scheduler times out from outside)."""
    started = time.monotonic()
    try:
        result = check.probe_inline(ctx)
    except Exception as exc:
        result = _probe_broke(check, exc)
    return CheckRun(_redacted(result), time.monotonic() - started)


def collect_evidence(check: Check, since_wall: float | None) -> dict[str, Any]:
    """What the service left behind since ``since_wall`` (:meth:`Check.evidence`: a crash record's summary,
    written by the service), redacted. Reads files: call it off the event loop."""
    return dict(redact_tree(check.evidence(since_wall)))


def _redacted(result: CheckResult) -> CheckResult:
    return dataclasses.replace(result, reason=redact(result.reason), details=redact_tree(result.details))


def _log_crash(event: str, exc: Exception, **fields: Any) -> None:
    # The traceback is formatted here rather than by log.exception, so that the secrets an exception's
    # message or a frame's line may hold are masked like everything else.
    text = "".join(traceback.format_exception(exc))
    log.error(event, **fields, exception=redact(text))


def _probe_broke(check: Check, exc: Exception) -> CheckResult:
    """A probe that raised says nothing about the service: a probe error, logged when unexpected.

    An OSError is the world, not a bug (a path through a regular file, a name too long, a directory
    Horus may not enter): it becomes a reason in words, and the daemon logs it as ``check.error``
    like any probe error. Only a real bug gets ``check.crashed`` with its traceback.
    """
    if isinstance(exc, ProbeError | ExecError):
        return CheckResult.error(str(exc))
    if isinstance(exc, OSError):
        separator = " " if exc.filename is not None else ": "
        return CheckResult.error(f"cannot observe{separator}{describe_os_error(exc)}")
    _log_crash("check.crashed", exc, check=check.type)
    return CheckResult.error(f"probe crashed: {type(exc).__name__}: {exc}")


# What an errno means to an operator deciding what to fix; others fall back to the system's own words.
_ERRNO_WORDS = {
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a path component is not a directory",
    errno.EISDIR: "is a directory, not a file",
    errno.ELOOP: "a loop of symbolic links, or too many in a row",
    errno.EIO: "input/output error (a failing disk or a lost network mount?)",
    errno.ESTALE: "stale file handle (a network mount that went away?)",
    errno.EMFILE: "too many open files in Horus",
    errno.ENFILE: "too many open files on this system",
}
# Linux's limits (macOS has the same NAME_MAX); a longer name cannot exist, whatever the filesystem.
NAME_MAX = 255
PATH_MAX = 4096
# Longer names are shortened in reasons, so that one line still says what is wrong.
_SHOWN_NAME = 40


def describe_os_error(exc: OSError) -> str:
    """``/srv/x/file.txt/bot.log: a path component is not a directory (ENOTDIR)``: the path, the
    problem in words, and the errno name to search for."""
    code = exc.errno
    if code is None or code not in errno.errorcode:
        text = exc.strerror or str(exc) or type(exc).__name__
    else:
        if code in (errno.EACCES, errno.EPERM):
            words = "permission denied" if code == errno.EACCES else "operation not permitted"
            text = f"{words} (Horus runs as {_running_as()})"
        elif code == errno.ENAMETOOLONG:
            text = _too_long(exc.filename)
        else:
            text = _ERRNO_WORDS.get(code) or _lowercase_first(exc.strerror or os.strerror(code))
        text = f"{text} ({errno.errorcode[code]})"
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return text
    return " -> ".join(_shown_path(p) for p in paths) + f": {text}"


def _too_long(filename: object) -> str:
    raw = os.fsencode(filename) if isinstance(filename, str | bytes) else b""
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"a name in the path is too long: {len(longest)} bytes, the system allows {NAME_MAX}"
    if len(raw) > PATH_MAX:
        return f"the path is too long: {len(raw)} bytes, the system allows {PATH_MAX}"
    return "a name is too long in the path or in a symbolic link it follows"


def _shown_path(filename: object) -> str:
    if isinstance(filename, bytes):
        filename = os.fsdecode(filename)
    if not isinstance(filename, str):
        return str(filename)
    half = _SHOWN_NAME // 2
    return "/".join(
        part if len(part) <= _SHOWN_NAME else f"{part[:half]}…{part[-half:]}" for part in filename.split("/")
    )


def _lowercase_first(text: str) -> str:
    return text[:1].lower() + text[1:]


@functools.cache
def _running_as() -> str:
    uid = os.geteuid()
    try:
        return f"uid {uid}, {pwd.getpwuid(uid).pw_name}"
    except KeyError:  # a uid with no name, as in many containers
        return f"uid {uid}"


async def run_heal(heal: Heal, ctx: HealContext, *, timeout: float) -> HealOutcome:
    outcome = await _run_heal(heal, ctx, timeout=timeout)
    return dataclasses.replace(outcome, summary=redact(outcome.summary), details=redact_tree(outcome.details))


async def _run_heal(heal: Heal, ctx: HealContext, *, timeout: float) -> HealOutcome:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await heal.run(ctx)
    except TimeoutError:
        if deadline.expired():
            return HealOutcome(ok=False, summary=f"did not finish within {humanize.seconds(timeout)}")
        return HealOutcome(ok=False, summary=f"failed: {_describe_timeout()}")
    except HealRefused as exc:
        return HealOutcome(ok=False, summary=str(exc), details=exc.details, permanent=exc.permanent, refused=True)
    except HealError as exc:
        return HealOutcome(ok=False, summary=str(exc), details=exc.details, permanent=exc.permanent)
    except ExecError as exc:
        return HealOutcome(ok=False, summary=str(exc), permanent=exc.permanent)
    except OSError as exc:
        # The world, not a bug (as for checks): said in words; whether a retry helps is not known.
        return HealOutcome(ok=False, summary=f"cannot heal: {describe_os_error(exc)}")
    except Exception as exc:
        _log_crash("heal.crashed", exc, action=heal.action, monitor=ctx.monitor)
        return HealOutcome(ok=False, summary=f"heal crashed: {type(exc).__name__}: {exc}")


def _describe_timeout() -> str:
    return "an operation inside it timed out"
