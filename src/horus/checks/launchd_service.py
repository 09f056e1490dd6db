"""The ``launchd_service`` check: is a launchd job loaded and running, according to launchd itself."""

from __future__ import annotations

from typing import Literal

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.errors import ProbeError
from horus.service_managers import ToolArgument, probe_tool, resolve_launchd_domain


class LaunchdServiceOptions(CheckOptions):
    type: Literal["launchd_service"]
    label: ToolArgument
    domain: ToolArgument | None = None


class LaunchdServiceCheck(Check[LaunchdServiceOptions]):
    """Healthy when launchd reports the job ``label`` as running with a live pid (macOS).

    Runs ``launchctl print <domain>/<label>``. ``domain`` defaults to ``system`` when Horus runs as
    root and to ``gui/<your uid>`` otherwise (where LaunchAgents live). A job that is loaded but has
    no process is unhealthy, with launchd's state and last exit code in the reason; a job launchd
    does not know is unhealthy as "not loaded".
    """

    options_model = LaunchdServiceOptions

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        label = self.options.label
        domain = resolve_launchd_domain(self.options.domain)
        target = f"{domain}/{label}"
        result = await probe_tool(["launchctl", "print", target])
        if not result.ok:
            if "could not find service" in result.output_tail.lower():
                return CheckResult.unhealthy(f"{label} is not loaded in {domain}", label=label, domain=domain)
            said = result.last_line() or "no output"
            raise ProbeError(f"launchctl print {target} exited {result.exit_code}: {said}")

        fields = _top_level_fields(result.output_tail)
        state = fields.get("state")
        pid = _positive_int(fields.get("pid"))
        if state == "running" and pid is not None:
            return CheckResult.healthy(
                f"{label} is running as pid {pid}", label=label, domain=domain, state=state, pid=pid
            )
        seen = [f"state = {state or 'unknown'}"]
        if "last exit code" in fields:
            seen.append(f"last exit code = {fields['last exit code']}")
        if state == "running":
            seen.append("no pid")
        return CheckResult.unhealthy(
            f"{label} is loaded but not running ({', '.join(seen)})",
            label=label,
            domain=domain,
            state=state,
            last_exit_code=fields.get("last exit code"),
        )


def _top_level_fields(output: str) -> dict[str, str]:
    """The ``key = value`` lines directly inside the service block of ``launchctl print``.

    Nested blocks repeat some keys with other meanings (a resource coalition has its own
    ``state = active``), so only the first level is read.
    """
    fields: dict[str, str] = {}
    depth = 0
    for raw in output.splitlines():
        line = raw.strip()
        if line.endswith("{"):
            depth += 1
            continue
        if line.startswith("}"):
            depth = max(depth - 1, 0)
            continue
        if depth == 1 and " = " in line:
            key, _, value = line.partition(" = ")
            fields.setdefault(key.strip(), value.strip())
    return fields


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else 0
    except ValueError:
        return None
    return number if number > 0 else None
