"""What the launchd, systemd and Docker checks and heals share: naming rules and running the tool.

Checks and heals both talk to the same management tools (``launchctl``, ``systemctl``, ``docker``).
The naming rules live here once, so a check and the heal paired with it always address the same
service, and the tool is run the same way everywhere: through :func:`horus.execution.run_command`,
with no timeout of its own (the runner bounds it by cancelling, which kills the tool's process
group), and with :class:`~horus.errors.ExecError` translated at this boundary: to
:class:`~horus.errors.ProbeError` for a check, to :class:`~horus.errors.HealError` for a heal.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from horus.errors import ExecError, HealError, ProbeError
from horus.execution import CommandResult, run_command
from horus.heals.base import HealOutcome

__all__ = [
    "SystemdUnit",
    "ToolArgument",
    "probe_tool",
    "resolve_launchd_domain",
    "run_heal_tool",
    "systemd_unit_name",
]

# How many of a failed tool's last output lines go into the heal error.
FAILURE_LINES = 2


def _not_an_option(value: str) -> str:
    # These names are passed to the tool as arguments; one starting with "-" would be read as a flag.
    if value.startswith("-"):
        raise ValueError(f"must not start with '-', got {value!r}")
    return value


ToolArgument = Annotated[str, Field(min_length=1), AfterValidator(_not_an_option)]
"""A name handed to a management tool (a label, unit or container): non-empty, never a flag."""


def resolve_launchd_domain(domain: str | None) -> str:
    """The launchd domain to address: ``domain`` when given, else ``system`` for root, ``gui/<uid>``."""
    if domain is not None:
        return domain
    # Resolved when used, not when the config is loaded, so it follows the user Horus really runs as.
    return "system" if os.geteuid() == 0 else f"gui/{os.getuid()}"


def systemd_unit_name(unit: str) -> str:
    """``nginx`` -> ``nginx.service``; a name that already has a type suffix is left alone."""
    return unit if "." in unit else f"{unit}.service"


SystemdUnit = Annotated[ToolArgument, AfterValidator(systemd_unit_name)]
"""A systemd unit name; ``nginx`` is stored as ``nginx.service``."""


async def probe_tool(argv: Sequence[str]) -> CommandResult:
    """Run a management tool for a check; a tool that cannot be run is a :class:`ProbeError`."""
    try:
        return await run_command(argv)
    except ExecError as exc:
        raise ProbeError(str(exc)) from exc


async def run_heal_tool(argv: Sequence[str]) -> HealOutcome:
    """Run a management tool as a heal: ``ran <command>`` on exit 0, else :class:`HealError`.

    A tool that is missing or not executable is a permanent failure; a non-zero exit is not, since
    the service manager may well accept the same request a little later.
    """
    shown = shlex.join(argv)
    try:
        result = await run_command(argv)
    except ExecError as exc:
        raise HealError(f"cannot run {shown}: {exc}", permanent=exc.permanent) from exc
    details: dict[str, Any] = {
        "argv": list(argv),
        "exit_code": result.exit_code,
        "duration_seconds": round(result.duration_seconds, 3),
        "output": result.output_tail.strip(),
    }
    if not result.ok:
        # Two lines, because tools often end with a pointer ("See system logs and 'systemctl status
        # nginx.service' for details.") right after the line that says what went wrong.
        lines = [line.strip() for line in result.output_tail.splitlines() if line.strip()]
        said = " / ".join(lines[-FAILURE_LINES:]) or "no output"
        raise HealError(f"{shown} exited {result.exit_code}: {said}", permanent=False, details=details)
    return HealOutcome(ok=True, summary=f"ran {shown}", details=details)
