from __future__ import annotations

import pydantic
import pytest

from horus import service_managers
from horus.checks.base import Status
from horus.checks.launchd_service import LaunchdServiceCheck, LaunchdServiceOptions
from horus.errors import ProbeError

# Excerpts of real `launchctl print` output (macOS 14), trimmed of the longer blocks.
RUNNING = """\
gui/501/com.example.gateway = {
\tactive count = 1
\tpath = /Users/ana/Library/LaunchAgents/com.example.gateway.plist
\ttype = LaunchAgent
\tstate = running

\tprogram = /usr/local/bin/gateway
\targuments = {
\t\t/usr/local/bin/gateway
\t\t--port
\t\t8080
\t}

\tstdout path = /Users/ana/Library/Logs/gateway.log
\tstderr path = /Users/ana/Library/Logs/gateway.log
\tdefault environment = {
\t\tPATH => /usr/bin:/bin:/usr/sbin:/sbin
\t}

\tdomain = gui/501 [100008]
\tasid = 100008
\tminimum runtime = 10
\texit timeout = 5
\truns = 3
\tpid = 4121
\timmediate reason = speculative
\tforks = 0
\texecs = 1
\tinitialized = 1
\ttrampolined = 1
\tstarted suspended = 0
\tproxy started suspended = 0
\tlast exit code = 1

\tresource coalition = {
\t\tID = 1187
\t\ttype = resource
\t\tstate = active
\t\tactive count = 1
\t\tname = com.example.gateway
\t}

\tspawn type = daemon (3)
\tjetsam priority = 40
\tproperties = keepalive | runatload | inferred program
}
"""

WAITING = """\
gui/501/com.example.gateway = {
\tactive count = 0
\tpath = /Users/ana/Library/LaunchAgents/com.example.gateway.plist
\ttype = LaunchAgent
\tstate = waiting

\tprogram = /usr/local/bin/gateway
\tdomain = gui/501 [100008]
\tasid = 100008
\tminimum runtime = 10
\texit timeout = 5
\truns = 7
\tlast exit code = 1

\tresource coalition = {
\t\tID = 1187
\t\ttype = resource
\t\tstate = active
\t\tactive count = 0
\t\tname = com.example.gateway
\t}

\tspawn type = daemon (3)
\tproperties = runatload | inferred program
}
"""

NOT_FOUND = 'Could not find service "com.example.gateway" in domain for port\n'


def make_check(**options: object) -> LaunchdServiceCheck:
    return LaunchdServiceCheck(
        LaunchdServiceOptions.model_validate({"type": "launchd_service", "label": "com.example.gateway", **options})
    )


@pytest.fixture
def uid_501(monkeypatch):
    monkeypatch.setattr(service_managers.os, "geteuid", lambda: 501)
    monkeypatch.setattr(service_managers.os, "getuid", lambda: 501)


async def test_a_running_job_with_a_pid_is_healthy(stubs, probe_ctx):
    stubs.install("launchctl", stdout=RUNNING)
    result = await make_check(domain="gui/501").probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert result.reason == "com.example.gateway is running as pid 4121"
    assert result.details["pid"] == 4121
    assert stubs.calls("launchctl") == [["print", "gui/501/com.example.gateway"]]


async def test_the_domain_defaults_to_the_users_gui_domain(stubs, probe_ctx, uid_501):
    stubs.install("launchctl", stdout=RUNNING)
    await make_check().probe(probe_ctx)
    assert stubs.calls("launchctl") == [["print", "gui/501/com.example.gateway"]]


async def test_the_domain_defaults_to_system_when_running_as_root(stubs, probe_ctx, monkeypatch):
    monkeypatch.setattr(service_managers.os, "geteuid", lambda: 0)
    monkeypatch.setattr(service_managers.os, "getuid", lambda: 0)
    stubs.install("launchctl", stdout=RUNNING)
    await make_check().probe(probe_ctx)
    assert stubs.calls("launchctl") == [["print", "system/com.example.gateway"]]


async def test_a_loaded_job_without_a_process_is_unhealthy_with_launchds_state_and_exit_code(stubs, probe_ctx):
    stubs.install("launchctl", stdout=WAITING)
    result = await make_check(domain="gui/501").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == ("com.example.gateway is loaded but not running (state = waiting, last exit code = 1)")


async def test_a_job_launchd_does_not_know_is_unhealthy_as_not_loaded(stubs, probe_ctx):
    stubs.install("launchctl", stderr=NOT_FOUND, exit_code=113)
    result = await make_check(domain="gui/501").probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == "com.example.gateway is not loaded in gui/501"


async def test_any_other_launchctl_failure_is_a_probe_error_not_a_verdict(stubs, probe_ctx):
    stubs.install("launchctl", stderr="Bad request.\nCould not find domain for user: 502\n", exit_code=113)
    with pytest.raises(ProbeError, match="Could not find domain for user: 502"):
        await make_check(domain="gui/502").probe(probe_ctx)


async def test_a_missing_launchctl_is_a_probe_error(tmp_path, monkeypatch, probe_ctx):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ProbeError, match="launchctl"):
        await make_check(domain="gui/501").probe(probe_ctx)


@pytest.mark.parametrize("label", ["", "-k"])
def test_an_empty_label_or_one_that_looks_like_a_flag_is_rejected(label):
    with pytest.raises(pydantic.ValidationError, match="label"):
        LaunchdServiceOptions.model_validate({"type": "launchd_service", "label": label})


def test_an_unknown_option_is_rejected():
    with pytest.raises(pydantic.ValidationError, match="lable"):
        LaunchdServiceOptions.model_validate({"type": "launchd_service", "label": "x", "lable": "x"})
