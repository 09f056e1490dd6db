from __future__ import annotations

import json

import pydantic
import pytest

from horus.checks.base import Status
from horus.checks.docker_container import DockerContainerCheck, DockerContainerOptions
from horus.errors import ProbeError

INSPECT_ARGV = ["inspect", "--type", "container", "--format", "{{json .State}}", "mc-backend"]

# `docker inspect --format '{{json .State}}'` output, as Docker 26 prints it.
RUNNING = {
    "Status": "running",
    "Running": True,
    "Paused": False,
    "Restarting": False,
    "OOMKilled": False,
    "Dead": False,
    "Pid": 4121,
    "ExitCode": 0,
    "Error": "",
    "StartedAt": "2024-05-02T09:14:03.512209811Z",
    "FinishedAt": "2024-05-02T09:13:58.104712330Z",
}
EXITED = {
    **RUNNING,
    "Status": "exited",
    "Running": False,
    "OOMKilled": True,
    "Pid": 0,
    "ExitCode": 137,
    "FinishedAt": "2024-05-02T11:40:17.003998212Z",
}
PAUSED = {**RUNNING, "Status": "paused", "Paused": True}


def health(status: str, output: str = "", streak: int = 0) -> dict[str, object]:
    log = [
        {
            "Start": "2024-05-02T11:40:10.110093722Z",
            "End": "2024-05-02T11:40:10.196213080Z",
            "ExitCode": 0 if status == "healthy" else 1,
            "Output": output,
        }
    ]
    return {"Status": status, "FailingStreak": streak, "Log": log if output else []}


def make_check(container: str = "mc-backend") -> DockerContainerCheck:
    return DockerContainerCheck(
        DockerContainerOptions.model_validate({"type": "docker_container", "container": container})
    )


def state_json(state: dict[str, object]) -> str:
    return json.dumps(state, separators=(",", ":")) + "\n"


async def test_a_running_container_without_a_health_check_is_healthy(stubs, probe_ctx):
    stubs.install("docker", stdout=state_json(RUNNING))
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "container mc-backend is running"
    assert stubs.calls("docker") == [INSPECT_ARGV]


async def test_a_running_container_whose_health_check_passes_is_healthy(stubs, probe_ctx):
    stubs.install("docker", stdout=state_json({**RUNNING, "Health": health("healthy", "ok\n")}))
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "container mc-backend is running and healthy"


async def test_a_running_container_whose_health_check_fails_is_unhealthy_with_its_last_output(stubs, probe_ctx):
    output = "curl: (7) Failed to connect to localhost port 8080 after 0 ms: Connection refused\n"
    stubs.install("docker", stdout=state_json({**RUNNING, "Health": health("unhealthy", output, streak=3)}))
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == (
        "container mc-backend is running but unhealthy (3 failures in a row): "
        "curl: (7) Failed to connect to localhost port 8080 after 0 ms: Connection refused"
    )


async def test_a_health_check_still_starting_counts_as_unhealthy_and_says_so(stubs, probe_ctx):
    stubs.install("docker", stdout=state_json({**RUNNING, "Health": health("starting")}))
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "container mc-backend is running but its health check is still starting"


async def test_a_long_health_check_output_is_trimmed_to_one_short_line(stubs, probe_ctx):
    output = "Traceback (most recent call last):\n" + "  frame\n" * 200 + "ConnectionError: refused\n"
    stubs.install("docker", stdout=state_json({**RUNNING, "Health": health("unhealthy", output, streak=1)}))
    result = await make_check().probe(probe_ctx)
    assert "\n" not in result.reason
    assert result.reason.endswith("…")
    assert len(result.reason) < 300


async def test_a_stopped_container_is_unhealthy_with_its_status_and_exit_code(stubs, probe_ctx):
    stubs.install("docker", stdout=state_json(EXITED))
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == (
        "container mc-backend is not running (status exited, exit code 137, killed for running out of memory)"
    )
    assert result.details["exit_code"] == 137


async def test_a_paused_container_is_not_running(stubs, probe_ctx):
    stubs.install("docker", stdout=state_json(PAUSED))
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "container mc-backend is not running (status paused, exit code 0)"


async def test_a_container_that_does_not_exist_is_unhealthy(stubs, probe_ctx):
    stubs.install("docker", stdout="\n", stderr="Error: No such container: mc-backend\n", exit_code=1)
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "container mc-backend does not exist"


async def test_an_unreachable_docker_daemon_is_a_probe_error(stubs, probe_ctx):
    stubs.install(
        "docker",
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
        exit_code=1,
    )
    with pytest.raises(ProbeError, match="Cannot connect to the Docker daemon"):
        await make_check().probe(probe_ctx)


async def test_output_that_is_not_a_state_is_a_probe_error(stubs, probe_ctx):
    stubs.install("docker", stdout='template: :1: function "json" not defined\n')
    with pytest.raises(ProbeError, match="no readable state"):
        await make_check().probe(probe_ctx)


async def test_a_missing_docker_is_a_probe_error(tmp_path, monkeypatch, probe_ctx):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ProbeError, match="docker"):
        await make_check().probe(probe_ctx)


def test_a_container_name_is_required():
    with pytest.raises(pydantic.ValidationError, match="container"):
        DockerContainerOptions.model_validate({"type": "docker_container"})
