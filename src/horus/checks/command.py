"""The ``command`` check: the service's own health script, or any program, says whether it is healthy."""

from __future__ import annotations

import dataclasses
import signal
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.config.types import (
    AbsolutePath,
    CommandLine,
    PositiveSeconds,
    require_locatable_program,
    require_shell_for_strings,
)
from horus.errors import ExecError, ProbeError
from horus.execution import OUTPUT_TAIL_BYTES, run_command
from horus.redaction import whole_lines

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
    def _command_means_one_thing(self) -> Self:
        require_shell_for_strings(self.command, self.shell)
        require_locatable_program(self.command, self.cwd)
        return self


class CommandCheck(Check[CommandOptions]):
    """Healthy when ``command`` exits 0; any other exit is unhealthy, with the last line of its output.

    ``command`` is an argv list (``["/usr/local/bin/healthcheck", "--quick"]``), or one string run by
    ``/bin/sh`` when ``shell: true``. Standard output and standard error are read together. ``env``
    adds to Horus's own environment; ``cwd`` sets the working directory (absolute, or under ``~``), and
    a program named by a relative path (``./health.sh``) needs it. The verdict is the exit status: a
    background process the command leaves holding its output does not hold it up, and is killed with
    whatever else the command left running (even in a new session). A command still running at
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
                what="command check",
                # A probe has nothing to leave behind: what it left running would pile up, run after run.
                leftovers="end",
            )
        except ExecError as exc:
            raise ProbeError(str(exc)) from exc

        # Whole lines only, so that the runner's redaction sees every secret with its name.
        output = whole_lines(result.output_tail, cut=len(result.output_tail.encode()) >= OUTPUT_TAIL_BYTES)
        last = _clip(dataclasses.replace(result, output_tail=output).last_line())
        details: dict[str, Any] = {
            "exit_code": result.exit_code,
            "duration_ms": round(result.duration_seconds * 1000, 1),
            "output_tail": whole_lines(output, MAX_DETAIL_OUTPUT),
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
