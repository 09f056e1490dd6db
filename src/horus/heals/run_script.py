"""The ``run_script`` heal: run your own repair command, with a deadline."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, model_validator

from horus import humanize
from horus.config.types import (
    AbsolutePath,
    CommandLine,
    PositiveSeconds,
    require_locatable_program,
    require_shell_for_strings,
)
from horus.errors import ExecError, HealError
from horus.execution import OUTPUT_TAIL_BYTES, run_command
from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus.redaction import whole_lines

# The runner's deadline sits a little past the script's own, so the script is killed by its own
# timeout (with a clear message and its children gone) rather than abandoned by the runner.
RUNNER_MARGIN_SECONDS = 5.0
OUTPUT_TAIL_LINES = 20
# sh exits 127 when the command it was given does not exist and 126 when it cannot execute it.
_SHELL_CANNOT_RUN = frozenset({126, 127})


class RunScriptOptions(HealOptions):
    action: Literal["run_script"]
    command: CommandLine
    shell: bool = False
    cwd: AbsolutePath | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: PositiveSeconds = 60.0

    @model_validator(mode="after")
    def _command_matches_shell(self) -> RunScriptOptions:
        require_shell_for_strings(self.command, self.shell)
        require_locatable_program(self.command, self.cwd)
        return self


class RunScriptHeal(Heal[RunScriptOptions]):
    """Run a command of your own to repair the service; it succeeds when the command exits 0.

    ``command`` is an argv list (``["/usr/local/bin/repair.sh", "--force"]``), or one string run
    by ``/bin/sh`` when ``shell: true``. ``cwd`` and ``env`` (added to Horus's own environment) are
    optional. A command still running after ``timeout_seconds`` (default 60) is killed together with
    every process it started, even in a new session; so is one still running when Horus itself was
    killed, by the next Horus. What a command that exited leaves running (a service it started) is left
    alone. The exit code, duration and last lines of output are recorded.
    """

    options_model = RunScriptOptions

    def timeout_seconds(self, default: float) -> float:
        return self.options.timeout_seconds + RUNNER_MARGIN_SECONDS

    async def run(self, ctx: HealContext) -> HealOutcome:
        opts = self.options
        try:
            result = await run_command(
                opts.command,
                timeout=opts.timeout_seconds,
                shell=opts.shell,
                cwd=None if opts.cwd is None else str(opts.cwd),
                env=opts.env or None,
                what="run_script heal",
            )
        except ExecError as exc:
            if not exc.permanent:
                limit = humanize.seconds(opts.timeout_seconds)
                raise HealError(f"script did not finish within {limit} and was killed") from exc
            raise HealError(f"script could not be started: {exc}", permanent=True) from exc

        took = humanize.seconds(result.duration_seconds)
        # Whole lines only, so that the runner's redaction sees every secret with its name.
        cut = len(result.output_tail.encode()) >= OUTPUT_TAIL_BYTES
        result = dataclasses.replace(result, output_tail=whole_lines(result.output_tail, cut=cut))
        details = {
            "exit_code": result.exit_code,
            "duration_seconds": round(result.duration_seconds, 3),
            "output_tail": _tail_lines(result.output_tail),
        }
        if not result.ok:
            said = result.last_line() or "no output"
            raise HealError(
                f"script exited {result.exit_code} after {took}: {said}",
                permanent=opts.shell and result.exit_code in _SHELL_CANNOT_RUN,
                details=details,
            )
        return HealOutcome(ok=True, summary=f"script exited 0 in {took}", details=details)


def _tail_lines(output: str) -> str:
    """The last lines of what the script printed (already capped in bytes by run_command)."""
    return "\n".join(output.rstrip().splitlines()[-OUTPUT_TAIL_LINES:])
