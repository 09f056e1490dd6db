"""The ``systemd_service`` check: is a systemd unit active, according to systemd itself."""

from __future__ import annotations

from typing import Literal

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.errors import ProbeError
from horus.service_managers import SystemdUnit, probe_tool

# Every answer `systemctl is-active` can give. Any other output (no bus, no user session) means
# systemctl could not ask systemd, which says nothing about the unit.
_UNIT_STATES = frozenset(
    {
        "active",
        "reloading",
        "refreshing",
        "inactive",
        "failed",
        "activating",
        "deactivating",
        "maintenance",
        "unknown",
    }
)
# A unit that is reloading its configuration is still up and serving; systemctl itself counts it as
# active (exit 0), and restarting it mid-reload would do harm.
_UP_STATES = frozenset({"active", "reloading", "refreshing"})


class SystemdServiceOptions(CheckOptions):
    type: Literal["systemd_service"]
    unit: SystemdUnit
    user: bool = False


class SystemdServiceCheck(Check[SystemdServiceOptions]):
    """Healthy when systemd reports ``unit`` as active (Linux).

    Runs ``systemctl is-active <unit>``, with ``--user`` when ``user`` is true (units of the user
    Horus runs as). A unit name without a type gets ``.service``: ``nginx`` means ``nginx.service``.
    Inactive, failed, activating and unknown units are unhealthy, with the state in the reason.
    """

    options_model = SystemdServiceOptions

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        unit = self.options.unit
        argv = ["systemctl", *(["--user"] if self.options.user else []), "is-active", unit]
        result = await probe_tool(argv)
        # stderr is merged in, and may carry warnings, so look for the line that is a state.
        lines = [line.strip() for line in result.output_tail.splitlines()]
        state = next((line for line in lines if line in _UNIT_STATES), None)
        if state is None:
            said = result.last_line() or "no output"
            raise ProbeError(f"{' '.join(argv)} exited {result.exit_code}: {said}")
        if state in _UP_STATES:
            return CheckResult.healthy(f"{unit} is {state}", unit=unit, state=state)
        return CheckResult.unhealthy(f"{unit} is {state}", unit=unit, state=state)
