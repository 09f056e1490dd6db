"""The ``command`` check: the service's own health script, or any program, says whether it is healthy."""

from __future__ import annotations

import signal
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import AbsolutePath, CommandLine, PositiveSeconds, require_shell_for_strings
from horus.errors import ExecError, ProbeError
from horus.execution import run_command

# Enough of the last line to explain a failure in a notification, not a page of stack trace.
MAX_REASON_LINE = 200
# The tail kept in details for incidents and post-mortems.
MAX_DETAIL_OUTPUT = 2000


class CommandOptions(CheckOptions):
    type: Literal["command"]
    command: CommandLine
    shell: bool = False
    cwd: AbsolutePath | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _shell_matches_command(self) -> Self:
        require_shell_for_strings(self.command, self.shell)
        if isinstance(self.command, list) and self.cwd is None:
            _require_locatable_program(self.command[0])
        return self


def _require_locatable_program(program: str) -> None:
    """A program named with a slash is found from the working directory, which for a daemon under launchd
    or systemd is "/"; so unless ``cwd`` says where it is, it must be absolute. A bare name is looked up
    on PATH, as in a shell."""
    if program.startswith("~"):
        raise ValueError(f"command[0] {program!r}: ~ is not expanded in a program path; write it in full")
    if "/" in program and not program.startswith("/"):
        raise ValueError(
            f"command[0] is a relative program path {program!r}: give an absolute path, "
            "or set cwd to the directory it is relative to"
        )


class CommandCheck(Check[CommandOptions]):
    """Healthy when ``command`` exits 0; any other exit is unhealthy, with the last line of its output.

    ``command`` is an argv list (``["/usr/local/bin/healthcheck", "--quick"]``), or one string run by
    ``/bin/sh`` when ``shell: true``. Standard output and standard error are read together. ``env``
    adds to Horus's own environment; ``cwd`` sets the working directory (absolute, or under ``~``), and
    a program named by a relative path (``./health.sh``) needs it. A command still running at
    the timeout is unhealthy, and it is killed together with every process it started. A program that
    is missing or not executable is an error in the check, not a reason to heal.
    """

    options_model = CommandOptions
    timeout_means_unhealthy = True

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        options = self.options
        cwd = options.cwd
        try:
            result = await run_command(
                options.command,
                shell=options.shell,
                cwd=None if cwd is None else str(cwd),
                env=options.env or None,
            )
        except ExecError as exc:
            raise ProbeError(str(exc)) from exc

        last = _clip(result.last_line())
        details: dict[str, Any] = {
            "exit_code": result.exit_code,
            "duration_ms": round(result.duration_seconds * 1000, 1),
            "output_tail": result.output_tail[-MAX_DETAIL_OUTPUT:],
        }
        outcome = _outcome(result.exit_code)
        reason = f"{outcome}: {last}" if last else outcome
        if result.ok:
            return CheckResult.healthy(reason, **details)
        return CheckResult.unhealthy(reason, **details)


def _outcome(exit_code: int) -> str:
    # asyncio reports a program killed by a signal as the negated signal number.
    if exit_code >= 0:
        return f"exit {exit_code}"
    try:
        return f"killed by {signal.Signals(-exit_code).name}"
    except ValueError:
        return f"killed by signal {-exit_code}"


def _clip(line: str) -> str:
    return line if len(line) <= MAX_REASON_LINE else line[: MAX_REASON_LINE - 1] + "…"
