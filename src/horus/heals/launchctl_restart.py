"""The ``launchctl_restart`` heal: have launchd kill and restart a job."""

from __future__ import annotations

from typing import Literal

from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus.service_managers import ToolArgument, resolve_launchd_domain, run_heal_tool


class LaunchctlRestartOptions(HealOptions):
    action: Literal["launchctl_restart"]
    label: ToolArgument
    domain: ToolArgument | None = None


class LaunchctlRestartHeal(Heal[LaunchctlRestartOptions]):
    """Restart the launchd job ``label`` with ``launchctl kickstart -k`` (macOS).

    launchd kills the running instance, if any, and starts the job again, so the job's own plist
    (program, environment, KeepAlive) is used exactly as launchd would. ``domain`` defaults to
    ``system`` when Horus runs as root and to ``gui/<your uid>`` otherwise. The job must already be
    loaded; this does not load a plist.
    """

    options_model = LaunchctlRestartOptions

    async def run(self, ctx: HealContext) -> HealOutcome:
        target = f"{resolve_launchd_domain(self.options.domain)}/{self.options.label}"
        return await run_heal_tool(["launchctl", "kickstart", "-k", target])
