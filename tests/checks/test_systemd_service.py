from __future__ import annotations

import pydantic
import pytest

from horus.checks.base import Status
from horus.checks.systemd_service import SystemdServiceCheck, SystemdServiceOptions
from horus.errors import ProbeError


def make_check(unit: str = "nginx", **options: object) -> SystemdServiceCheck:
    return SystemdServiceCheck(
        SystemdServiceOptions.model_validate({"type": "systemd_service", "unit": unit, **options})
    )


async def test_an_active_unit_is_healthy(stubs, probe_ctx):
    stubs.install("systemctl", stdout="active\n")
    result = await make_check("nginx.service").probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "nginx.service is active"
    assert stubs.calls("systemctl") == [["is-active", "nginx.service"]]


async def test_a_unit_name_without_a_type_means_a_service(stubs, probe_ctx):
    stubs.install("systemctl", stdout="active\n")
    await make_check("nginx").probe(probe_ctx)
    assert stubs.calls("systemctl") == [["is-active", "nginx.service"]]


async def test_a_unit_name_with_a_type_is_used_as_given(stubs, probe_ctx):
    stubs.install("systemctl", stdout="active\n")
    await make_check("backup.timer").probe(probe_ctx)
    assert stubs.calls("systemctl") == [["is-active", "backup.timer"]]


async def test_a_user_unit_is_asked_of_the_users_systemd(stubs, probe_ctx):
    stubs.install("systemctl", stdout="active\n")
    await make_check("polymarket-bot", user=True).probe(probe_ctx)
    assert stubs.calls("systemctl") == [["--user", "is-active", "polymarket-bot.service"]]


@pytest.mark.parametrize("state", ["inactive", "failed", "activating", "deactivating", "unknown"])
async def test_a_unit_in_any_other_state_is_unhealthy_with_the_state_in_the_reason(stubs, probe_ctx, state):
    stubs.install("systemctl", stdout=f"{state}\n", exit_code=3)
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"nginx.service is {state}"


async def test_a_unit_reloading_its_configuration_is_still_healthy(stubs, probe_ctx):
    stubs.install("systemctl", stdout="reloading\n")
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "nginx.service is reloading"


async def test_a_warning_before_the_state_does_not_hide_it(stubs, probe_ctx):
    stubs.install(
        "systemctl",
        stdout="failed\n",
        stderr="Warning: The unit file, source configuration file or drop-ins of nginx.service changed "
        "on disk. Run 'systemctl daemon-reload' to reload units.\n",
        exit_code=3,
    )
    result = await make_check().probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "nginx.service is failed"


async def test_systemctl_that_cannot_reach_systemd_is_a_probe_error(stubs, probe_ctx):
    stubs.install(
        "systemctl",
        stderr="System has not been booted with systemd as init system (PID 1). Can't operate.\n"
        "Failed to connect to bus: Host is down\n",
        exit_code=1,
    )
    with pytest.raises(ProbeError, match="Failed to connect to bus"):
        await make_check().probe(probe_ctx)


async def test_a_missing_systemctl_is_a_probe_error(tmp_path, monkeypatch, probe_ctx):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ProbeError, match="systemctl"):
        await make_check().probe(probe_ctx)


def test_the_unit_is_stored_with_its_service_suffix():
    options = SystemdServiceOptions.model_validate({"type": "systemd_service", "unit": "nginx"})
    assert options.unit == "nginx.service"
    assert options.user is False


@pytest.mark.parametrize("unit", ["", "--now"])
def test_an_empty_unit_or_one_that_looks_like_a_flag_is_rejected(unit):
    with pytest.raises(pydantic.ValidationError, match="unit"):
        SystemdServiceOptions.model_validate({"type": "systemd_service", "unit": unit})
