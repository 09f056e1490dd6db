from __future__ import annotations

import pydantic
import pytest

from horus.clock import SystemClock
from horus.errors import HealError
from horus.heals.base import HealContext
from horus.heals.systemctl_restart import SystemctlRestartHeal, SystemctlRestartOptions

CTX = HealContext(clock=SystemClock(), monitor="web")


def make_heal(unit: str = "nginx", **options: object) -> SystemctlRestartHeal:
    return SystemctlRestartHeal(
        SystemctlRestartOptions.model_validate({"action": "systemctl_restart", "unit": unit, **options})
    )


async def test_restart_runs_systemctl_restart_and_says_what_it_ran(stubs):
    stubs.install("systemctl")
    outcome = await make_heal("nginx").run(CTX)
    assert outcome.ok
    assert outcome.summary == "ran systemctl restart nginx.service"
    assert stubs.calls("systemctl") == [["restart", "nginx.service"]]


async def test_a_user_unit_is_restarted_by_the_users_systemd(stubs):
    stubs.install("systemctl")
    outcome = await make_heal("polymarket-bot", user=True).run(CTX)
    assert outcome.summary == "ran systemctl --user restart polymarket-bot.service"
    assert stubs.calls("systemctl") == [["--user", "restart", "polymarket-bot.service"]]


async def test_a_unit_name_with_a_type_is_used_as_given(stubs):
    stubs.install("systemctl")
    await make_heal("gateway.socket").run(CTX)
    assert stubs.calls("systemctl") == [["restart", "gateway.socket"]]


async def test_a_refused_restart_is_a_heal_error_that_says_why(stubs):
    stubs.install(
        "systemctl",
        stderr="Failed to restart nginx.service: Access denied\n"
        "See system logs and 'systemctl status nginx.service' for details.\n",
        exit_code=1,
    )
    with pytest.raises(HealError) as caught:
        await make_heal().run(CTX)
    message = str(caught.value)
    assert message.startswith("systemctl restart nginx.service exited 1: ")
    assert "Access denied" in message
    assert "See system logs" in message
    assert caught.value.permanent is False


async def test_a_missing_systemctl_is_a_permanent_heal_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(HealError, match="systemctl: not found") as caught:
        await make_heal().run(CTX)
    assert caught.value.permanent is True


def test_user_defaults_to_the_system_manager():
    options = SystemctlRestartOptions.model_validate({"action": "systemctl_restart", "unit": "nginx"})
    assert options.user is False
    assert options.unit == "nginx.service"


def test_a_unit_that_looks_like_a_flag_is_rejected():
    with pytest.raises(pydantic.ValidationError, match="must not start with '-'"):
        SystemctlRestartOptions.model_validate({"action": "systemctl_restart", "unit": "--all"})
