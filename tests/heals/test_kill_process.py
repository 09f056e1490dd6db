from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator

import psutil
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from horus.clock import SystemClock
from horus.errors import HealError, HealRefused
from horus.heals.base import HealContext
from horus.heals.kill_process import KillProcessHeal, KillProcessOptions, kill_processes
from horus.processes import ProcessIdentity, display_cmdline
from tests.process_support import IGNORE_SIGTERM, LEADER_WITH_WORKER, NOTE_SIGNALS, ProcessSpawner
from tests.restart_loop import RestartLoop
from tests.support import wait_until

CTX = HealContext(clock=SystemClock(), monitor="polymarket-bot")


@pytest.fixture
def spawner(tmp_path) -> Iterator[ProcessSpawner]:
    spawned = ProcessSpawner(tmp_path)
    yield spawned
    spawned.close()


def make_heal(pattern: str, **options: object) -> KillProcessHeal:
    return KillProcessHeal(
        KillProcessOptions.model_validate({"action": "kill_process", "process_pattern": pattern, **options})
    )


async def test_a_single_matching_process_is_sent_sigterm_and_exits(spawner):
    marker = spawner.marker()
    target = spawner.detached(marker)
    identity = target.identity
    outcome = await make_heal(marker).run(CTX)
    assert outcome.ok
    assert outcome.summary.startswith(f"sent SIGTERM to pid {target.pid} (")
    assert "; it exited at once" in outcome.summary or "; it exited after " in outcome.summary
    assert not target.is_running()
    [entry] = outcome.details["targets"]
    assert entry["pid"] == target.pid
    assert entry["create_time"] == identity.create_time
    assert entry["cmdline"].endswith(marker)
    assert entry["signals"] == ["SIGTERM"]
    assert entry["exited"] is True


async def test_a_process_ignoring_sigterm_is_sigkilled_after_the_grace_period_and_each_signal_is_logged(
    spawner,
):
    marker = spawner.marker()
    target = spawner.detached(marker, IGNORE_SIGTERM)
    await wait_until(lambda: target.said("ready"))  # the handler is installed
    identity = target.identity
    with capture_logs() as logs:
        outcome = await make_heal(marker, grace_seconds=0.5).run(CTX)
    assert outcome.ok
    assert outcome.summary.endswith("; it did not exit within 500 ms; sent SIGKILL; it exited")
    assert outcome.details["targets"][0]["signals"] == ["SIGTERM", "SIGKILL"]
    assert not target.is_running()
    sent = [entry for entry in logs if entry["event"] == "kill_process.signal_sent"]
    assert [(e["pid"], e["signal"], e["create_time"]) for e in sent] == [
        (target.pid, "SIGTERM", identity.create_time),
        (target.pid, "SIGKILL", identity.create_time),
    ]


async def test_more_matches_than_max_matches_is_refused_and_nothing_is_signalled(spawner):
    marker = spawner.marker()
    targets = [spawner.detached(marker, NOTE_SIGNALS) for _ in range(3)]
    for target in targets:
        await wait_until(lambda target=target: target.said("ready"))
    with pytest.raises(HealRefused) as refused:
        await make_heal(marker, max_matches=2).run(CTX)
    message = str(refused.value)
    assert message.startswith(f"3 processes match '{marker}', more than max_matches 2; nothing was signalled")
    for target in targets:
        assert f"pid {target.pid} (" in message
        os.kill(target.pid, signal.SIGWINCH)
        await wait_until(lambda target=target: target.said("SIGWINCH"))
        assert not target.said("SIGTERM"), "a SIGTERM sent before the SIGWINCH would have been noted first"


async def test_no_match_fails_without_signalling_and_may_be_retried(spawner):
    marker = spawner.marker()
    with pytest.raises(HealError) as failed:
        await make_heal(marker).run(CTX)
    assert not isinstance(failed.value, HealRefused)
    assert failed.value.permanent is False
    assert str(failed.value) == f"no process matches '{marker}'; nothing to kill"


async def test_a_pid_whose_start_time_changed_is_skipped_and_the_outcome_says_so(spawner):
    target = spawner.detached(spawner.marker(), NOTE_SIGNALS)
    await wait_until(lambda: target.said("ready"))
    impostor = dataclasses.replace(target.identity, create_time=target.identity.create_time - 5)
    outcome = await kill_processes([impostor], sig=signal.SIGTERM, grace_seconds=1, clock=SystemClock())
    assert outcome.ok
    assert outcome.summary.endswith(
        "was not signalled: it had already exited and its pid now belongs to another process"
    )
    assert outcome.details["targets"][0]["signals"] == []
    os.kill(target.pid, signal.SIGWINCH)
    await wait_until(lambda: target.said("SIGWINCH"))
    assert not target.said("SIGTERM")
    assert target.is_running()


async def test_a_process_that_exited_before_its_signal_is_skipped_and_the_outcome_says_so(spawner):
    target = spawner.detached(spawner.marker())
    identity = target.identity
    os.kill(target.pid, signal.SIGKILL)
    await wait_until(lambda: not target.is_running())
    outcome = await kill_processes([identity], sig=signal.SIGTERM, grace_seconds=1, clock=SystemClock())
    assert outcome.ok
    assert (
        outcome.summary
        == f"pid {target.pid} ({display_cmdline(identity.cmdline)}) was not signalled: it had already exited"
    )
    assert outcome.details["targets"][0]["exited"] is True


async def test_process_group_mode_stops_the_leader_and_the_workers_it_started(spawner):
    marker = spawner.marker()
    leader = spawner.detached(marker, LEADER_WITH_WORKER)
    await wait_until(lambda: leader.said("ready"))
    [worker] = psutil.Process(leader.pid).children()
    spawner.track(worker.pid)
    assert os.getpgid(worker.pid) == leader.pid

    outcome = await make_heal(f"{marker}$", regex=True, process_group=True).run(CTX)  # not the worker
    assert outcome.ok
    assert outcome.summary.startswith(f"sent SIGTERM to process group {leader.pid} (2 processes) of pid")
    assert outcome.details["targets"][0]["group_pids"] == sorted([leader.pid, worker.pid])
    await wait_until(lambda: not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE)
    assert not leader.is_running()


async def test_process_group_mode_refuses_the_group_horus_itself_belongs_to(spawner):
    same_group = spawner.child(spawner.marker())  # started without a session of its own
    assert os.getpgid(same_group.pid) == os.getpgrp()
    with pytest.raises(HealRefused, match="Horus's own; signalling it would signal Horus; nothing was signalled"):
        await kill_processes(
            [ProcessIdentity.of(same_group.pid)],
            sig=signal.SIGTERM,
            grace_seconds=1,
            clock=SystemClock(),
            process_group=True,
        )
    assert same_group.poll() is None


@pytest.mark.parametrize("pid", [os.getpid(), os.getppid()], ids=["horus", "its-parent"])
async def test_horus_and_the_process_that_started_it_are_refused_even_when_handed_over_directly(pid):
    with pytest.raises(HealRefused, match="is Horus itself"):
        await kill_processes([ProcessIdentity.of(pid)], sig=signal.SIGTERM, grace_seconds=1, clock=SystemClock())


async def test_permission_denied_is_a_permanent_failure_and_nothing_is_sent(spawner, monkeypatch):
    # Tests may run as root, who may signal anything, so the refusal comes from a stand-in kernel.
    def deny(identity: ProcessIdentity, sig: int) -> bool:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("horus.heals.kill_process.send_signal", deny)
    marker = spawner.marker()
    target = spawner.detached(marker)
    with pytest.raises(HealError, match="not permitted to signal") as failed:
        await make_heal(marker).run(CTX)
    assert failed.value.permanent is True
    assert target.is_running()


@pytest.mark.parametrize("written", ["SIGTERM", "TERM", "sigterm", 15])
def test_a_signal_may_be_written_by_name_or_number_and_is_stored_canonically(written):
    assert make_heal("main.py", signal=written).options.signal == "SIGTERM"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"signal": "SIGFOO"}, "unknown signal 'SIGFOO'"),
        ({"regex": True, "process_pattern": "main.py ("}, "not a valid regular expression"),
        ({"regex": True, "process_pattern": ".*"}, "matches every process"),
        ({"grace_seconds": -1}, "greater than or equal to 0"),
        ({"max_matches": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_options_are_rejected_at_config_time(options, message):
    with pytest.raises(ValidationError, match=message):
        KillProcessOptions.model_validate({"action": "kill_process", "process_pattern": "main.py", **options})


def test_defaults_are_one_sigterm_with_ten_seconds_grace_to_a_single_process():
    options = make_heal("main.py --mode conservative").options
    assert KillProcessHeal.action == "kill_process"
    assert (options.signal, options.grace_seconds, options.max_matches) == ("SIGTERM", 10, 1)
    assert (options.regex, options.process_group) == (False, False)


def test_the_runner_timeout_never_cuts_the_grace_period_short():
    assert make_heal("main.py", grace_seconds=60).timeout_seconds(30) == 75
    assert make_heal("main.py", grace_seconds=1).timeout_seconds(30) == 30


@pytest.fixture
def restart_loop() -> Iterator[RestartLoop]:
    loop = RestartLoop()
    yield loop
    loop.close()


async def test_a_pattern_matching_a_restart_loop_and_its_service_is_refused_with_the_way_to_name_the_service(
    restart_loop,
):
    service = restart_loop.first_service
    shell = restart_loop.shell
    with pytest.raises(HealRefused) as refused:
        await make_heal(restart_loop.pattern).run(CTX)
    assert refused.value.permanent is True
    message = str(refused.value)
    assert message.startswith(f"2 processes match '{restart_loop.pattern}', more than max_matches 1; nothing")
    assert f"pid {shell.pid} (/bin/sh -c while true; do " in message
    assert f"is the parent of pid {service.pid} ({display_cmdline(service.cmdline()[0])}" in " ".join(message.split())
    assert "a wrapper or restart loop whose own command line holds the pattern too" in message
    assert "set ignore_wrappers: true" in message
    assert "Raising max_matches would signal the loop too" in message
    assert restart_loop.service() is not None and restart_loop.service().pid == service.pid, "nothing was signalled"

    # The pattern the refusal offers names the service alone: healing with it restarts the service, not the loop.
    suggested = message.split("process_pattern: '", 1)[1].split("'", 1)[0]
    assert suggested.startswith("^")
    outcome = await make_heal(suggested, regex=True).run(CTX)
    assert outcome.ok, outcome.summary
    assert [t["pid"] for t in outcome.details["targets"]] == [service.pid]
    assert restart_loop.wait_for_service(other_than=service.pid).pid != service.pid
    assert shell.is_running()


async def test_ignore_wrappers_signals_only_the_service_and_the_loop_restarts_it(restart_loop):
    service = restart_loop.first_service
    outcome = await make_heal(restart_loop.pattern, ignore_wrappers=True).run(CTX)
    assert outcome.ok, outcome.summary
    assert [t["pid"] for t in outcome.details["targets"]] == [service.pid]
    assert restart_loop.shell.is_running(), "the loop is never signalled"
    assert restart_loop.wait_for_service(other_than=service.pid).pid != service.pid


async def test_ignore_wrappers_with_process_group_is_refused_when_the_group_holds_the_loop(restart_loop):
    service = restart_loop.first_service
    with pytest.raises(HealRefused) as refused:
        await make_heal(restart_loop.pattern, ignore_wrappers=True, process_group=True).run(CTX)
    message = str(refused.value)
    assert f"pid {service.pid} (" in message
    assert f"shares its process group with pid {restart_loop.shell.pid} (" in message
    assert "nothing was signalled" in message
    assert restart_loop.service().pid == service.pid


async def test_ignore_wrappers_still_refuses_more_services_than_max_matches(spawner):
    marker = spawner.marker()
    for _ in range(2):
        spawner.detached(marker)
    with pytest.raises(HealRefused) as refused:
        await make_heal(marker, ignore_wrappers=True).run(CTX)
    assert str(refused.value).startswith(f"2 processes match '{marker}', more than max_matches 1")
    assert "wrapper" not in str(refused.value)
