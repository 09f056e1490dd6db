from __future__ import annotations

import pydantic
import pytest

from horus import service_managers
from horus.clock import SystemClock
from horus.errors import HealError
from horus.heals.base import HealContext
from horus.heals.launchctl_restart import LaunchctlRestartHeal, LaunchctlRestartOptions

CTX = HealContext(clock=SystemClock(), monitor="gateway")


def make_heal(**options: object) -> LaunchctlRestartHeal:
    return LaunchctlRestartHeal(
        LaunchctlRestartOptions.model_validate(
            {"action": "launchctl_restart", "label": "com.example.gateway", **options}
        )
    )


async def test_kickstart_kills_and_restarts_the_job_and_says_what_it_ran(stubs):
    stubs.install("launchctl")
    outcome = await make_heal(domain="gui/501").run(CTX)
    assert outcome.ok
    assert outcome.summary == "ran launchctl kickstart -k gui/501/com.example.gateway"
    assert outcome.details["exit_code"] == 0
    assert stubs.calls("launchctl") == [["kickstart", "-k", "gui/501/com.example.gateway"]]


async def test_the_domain_defaults_to_the_users_gui_domain(stubs, monkeypatch):
    monkeypatch.setattr(service_managers.os, "geteuid", lambda: 501)
    monkeypatch.setattr(service_managers.os, "getuid", lambda: 501)
    stubs.install("launchctl")
    await make_heal().run(CTX)
    assert stubs.calls("launchctl") == [["kickstart", "-k", "gui/501/com.example.gateway"]]


async def test_the_domain_defaults_to_system_when_running_as_root(stubs, monkeypatch):
    monkeypatch.setattr(service_managers.os, "geteuid", lambda: 0)
    monkeypatch.setattr(service_managers.os, "getuid", lambda: 0)
    stubs.install("launchctl")
    outcome = await make_heal().run(CTX)
    assert outcome.summary == "ran launchctl kickstart -k system/com.example.gateway"
    assert stubs.calls("launchctl") == [["kickstart", "-k", "system/com.example.gateway"]]


async def test_a_failed_kickstart_is_a_heal_error_with_launchctls_last_words(stubs):
    stubs.install(
        "launchctl", stderr='Could not find service "com.example.gateway" in domain for port\n', exit_code=113
    )
    with pytest.raises(HealError, match="exited 113: Could not find service") as caught:
        await make_heal(domain="gui/501").run(CTX)
    assert caught.value.permanent is False


async def test_a_missing_launchctl_is_a_permanent_heal_error(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(HealError, match="launchctl: not found") as caught:
        await make_heal(domain="gui/501").run(CTX)
    assert caught.value.permanent is True


def test_a_label_is_required():
    with pytest.raises(pydantic.ValidationError, match="label"):
        LaunchctlRestartOptions.model_validate({"action": "launchctl_restart"})
