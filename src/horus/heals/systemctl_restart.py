"""The ``systemctl_restart`` heal: have systemd restart a unit."""

from __future__ import annotations

from typing import Literal

from horus.heals.base import Heal, HealContext, HealOptions, HealOutcome
from horus.service_managers import SystemdUnit, run_heal_tool


class SystemctlRestartOptions(HealOptions):
    action: Literal["systemctl_restart"]
    unit: SystemdUnit
    user: bool = False


class SystemctlRestartHeal(Heal[SystemctlRestartOptions]):
    """Restart the systemd unit ``unit`` with ``systemctl restart`` (Linux).

    With ``user: true`` the unit is one of the user Horus runs as (``systemctl --user``). A unit name
    without a type gets ``.service``: ``nginx`` means ``nginx.service``. Restarting a system unit
    needs the right to do so: run Horus as root, or allow the restart with a polkit rule.
    """

    options_model = SystemctlRestartOptions

    async def run(self, ctx: HealContext) -> HealOutcome:
        user = ["--user"] if self.options.user else []
        return await run_heal_tool(["systemctl", *user, "restart", self.options.unit])
