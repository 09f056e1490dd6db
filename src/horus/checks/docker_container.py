"""The ``docker_container`` check: is a container running, and healthy if it has a health check."""

from __future__ import annotations

import json
from typing import Any, Literal

from horus.checks.base import Check, CheckOptions, CheckResult, ProbeContext
from horus.errors import ProbeError
from horus.service_managers import ToolArgument, probe_tool

# Enough of a failing health check's output to say why, short enough for a notification.
HEALTH_OUTPUT_MAX_CHARS = 200


class DockerContainerOptions(CheckOptions):
    type: Literal["docker_container"]
    container: ToolArgument


class DockerContainerCheck(Check[DockerContainerOptions]):
    """Healthy when the container is running and, if it has a HEALTHCHECK, Docker reports it healthy.

    Runs ``docker inspect`` on ``container`` (a name or id). A stopped, paused or restarting
    container is unhealthy, with its status and exit code in the reason; so is a running container
    whose health check says ``unhealthy`` or is still ``starting``, with the health check's last
    output. A container that does not exist is unhealthy. When the Docker daemon cannot be reached,
    nothing is known about the container: that is a probe error, not a reason to heal.
    """

    options_model = DockerContainerOptions

    async def probe(self, ctx: ProbeContext) -> CheckResult:
        name = self.options.container
        argv = ["docker", "inspect", "--type", "container", "--format", "{{json .State}}", name]
        result = await probe_tool(argv)
        if not result.ok:
            if "no such container" in result.output_tail.lower():
                return CheckResult.unhealthy(f"container {name} does not exist", container=name)
            said = result.last_line() or "no output"
            raise ProbeError(f"docker inspect {name} exited {result.exit_code}: {said}")
        state = _parse_state(result.output_tail, name)

        status = str(state.get("Status") or "unknown")
        exit_code = state.get("ExitCode")
        facts: dict[str, Any] = {"container": name, "status": status, "exit_code": exit_code}
        if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
            why = [f"status {status}", f"exit code {exit_code}"]
            if state.get("OOMKilled"):
                why.append("killed for running out of memory")
            if state.get("Error"):
                why.append(str(state["Error"]))
            return CheckResult.unhealthy(f"container {name} is not running ({', '.join(why)})", **facts)

        health = state.get("Health") or {}
        health_status = health.get("Status")
        if health_status in ("unhealthy", "starting"):
            facts["health"] = health_status
            output = _last_health_output(health)
            if health_status == "starting":
                reason = f"container {name} is running but its health check is still starting"
            else:
                streak = health.get("FailingStreak")
                in_a_row = f" ({streak} failures in a row)" if streak else ""
                reason = f"container {name} is running but unhealthy{in_a_row}"
            if output:
                reason += f": {output}"
            return CheckResult.unhealthy(reason, **facts)

        if health_status:
            facts["health"] = health_status
            return CheckResult.healthy(f"container {name} is running and {health_status}", **facts)
        return CheckResult.healthy(f"container {name} is running", **facts)


def _parse_state(output: str, name: str) -> dict[str, Any]:
    # stderr is merged into the output and may carry warnings, so read the JSON line alone.
    line = next((ln for ln in reversed(output.splitlines()) if ln.lstrip().startswith("{")), "")
    try:
        state = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProbeError(f"docker inspect {name} gave no readable state: {output.strip()[-200:]!r}") from exc
    if not isinstance(state, dict):
        raise ProbeError(f"docker inspect {name} gave no readable state: {line!r}")
    return state


def _last_health_output(health: dict[str, Any]) -> str:
    log = health.get("Log") or []
    if not log or not isinstance(log[-1], dict):
        return ""
    text = " ".join(str(log[-1].get("Output") or "").split())
    if len(text) > HEALTH_OUTPUT_MAX_CHARS:
        text = text[: HEALTH_OUTPUT_MAX_CHARS - 1] + "…"
    return text
