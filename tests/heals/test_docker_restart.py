from __future__ import annotations

import pydantic
import pytest

from horus.clock import SystemClock
from horus.errors import HealError
from horus.heals.base import HealContext
from horus.heals.docker_restart import DockerRestartHeal, DockerRestartOptions

CTX = HealContext(clock=SystemClock(), monitor="mc-backend")


def make_heal(**options: object) -> DockerRestartHeal:
    return DockerRestartHeal(DockerRestartOptions.model_validate({"action": "docker_restart", **options}))


async def test_a_container_is_restarted_with_docker_restart(stubs):
    stubs.install("docker", stdout="mc-backend\n")
    outcome = await make_heal(container="mc-backend").run(CTX)
    assert outcome.ok
    assert outcome.summary == "ran docker restart mc-backend"
    assert stubs.calls("docker") == [["restart", "mc-backend"]]


async def test_a_stop_timeout_is_passed_to_docker_restart(stubs):
    stubs.install("docker", stdout="mc-backend\n")
    outcome = await make_heal(container="mc-backend", stop_timeout_seconds=30).run(CTX)
    assert outcome.summary == "ran docker restart -t 30 mc-backend"
    assert stubs.calls("docker") == [["restart", "-t", "30", "mc-backend"]]


async def test_a_compose_service_is_restarted_with_docker_compose(stubs, tmp_path):
    compose = tmp_path / "compose.yaml"
    stubs.install("docker")
    outcome = await make_heal(compose_file=str(compose), service="backend").run(CTX)
    assert outcome.summary == f"ran docker compose -f {compose} restart backend"
    assert stubs.calls("docker") == [["compose", "-f", str(compose), "restart", "backend"]]


async def test_a_compose_project_name_and_stop_timeout_go_where_compose_expects_them(stubs, tmp_path):
    compose = tmp_path / "compose.yaml"
    stubs.install("docker")
    await make_heal(compose_file=str(compose), service="backend", project_name="mc", stop_timeout_seconds=5).run(CTX)
    assert stubs.calls("docker") == [["compose", "-f", str(compose), "-p", "mc", "restart", "-t", "5", "backend"]]


async def test_a_compose_file_under_home_is_expanded(stubs, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    stubs.install("docker")
    await make_heal(compose_file="~/mc/compose.yaml", service="backend").run(CTX)
    assert stubs.calls("docker") == [["compose", "-f", str(tmp_path / "mc" / "compose.yaml"), "restart", "backend"]]


async def test_a_failed_restart_is_a_heal_error_with_dockers_last_words(stubs):
    stubs.install(
        "docker",
        stderr="Error response from daemon: Cannot restart container mc-backend: "
        "driver failed programming external connectivity: port 8080 is already allocated\n",
        exit_code=1,
    )
    with pytest.raises(HealError, match="port 8080 is already allocated") as caught:
        await make_heal(container="mc-backend").run(CTX)
    assert str(caught.value).startswith("docker restart mc-backend exited 1: Error response from daemon")
    assert caught.value.permanent is False


async def test_a_missing_docker_is_a_permanent_heal_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(HealError, match="docker: not found") as caught:
        await make_heal(container="mc-backend").run(CTX)
    assert caught.value.permanent is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"container": "mc-backend", "compose_file": "/srv/mc/c.yaml", "service": "backend"}, "not both"),
        ({}, "say what to restart"),
        ({"compose_file": "/srv/mc/c.yaml"}, "compose_file needs service"),
        ({"service": "backend"}, "service needs compose_file"),
        ({"container": "mc-backend", "project_name": "mc"}, "project_name applies only with compose_file"),
    ],
)
def test_options_that_do_not_name_exactly_one_thing_to_restart_are_rejected(options, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        DockerRestartOptions.model_validate({"action": "docker_restart", **options})


def test_a_negative_stop_timeout_is_rejected():
    with pytest.raises(pydantic.ValidationError, match="stop_timeout_seconds"):
        DockerRestartOptions.model_validate(
            {"action": "docker_restart", "container": "mc-backend", "stop_timeout_seconds": -1}
        )
