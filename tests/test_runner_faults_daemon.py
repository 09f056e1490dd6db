"""Horus's side of a runner, attacked from the user's side: runner.json files no runner writes (junk values where
times belong), and a Horus daemon that stops and starts again while the runner reloads."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from horus.checks.base import ProbeContext, Status
from horus.checks.runner import RunnerCheck, RunnerOptions
from horus.clock import SystemClock
from horus.engine.runner_watch import RunnerWatch, follow_from_now
from horus.notify.events import Severity
from horus_sdk.runner_files import RunnerPaths
from tests.checks.test_runner_check import instance, sleeper, write_runner
from tests.support import EventLog, config_with_a_phone, notifications_sent, spawn_daemon, stop_daemon, wait_until_sync

HORUS = Path(sys.executable).with_name("horus")


def probe(state_dir: Path) -> Any:
    check = RunnerCheck(RunnerOptions(type="runner", dir=state_dir))
    return check.probe_inline(ProbeContext(clock=SystemClock(), http=None))  # type: ignore[arg-type]


# Python's json reads NaN, Infinity and -Infinity: a hand-edited or damaged runner.json can hold them anywhere.
NOT_A_TIME = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("junk", NOT_A_TIME, ids=repr)
def test_a_time_that_is_not_a_number_in_runner_json_is_unknown_time_in_status_not_a_traceback(tmp_path, procs, junk):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    reload_entry = {"id": "r1", "outcome": "done", "started_at": junk, "finished_at": junk, "probation_until": junk}
    write_runner(
        runner_dir,
        runner_pid=runner.pid,
        updated_at=junk,
        active=instance(active, trading_since=junk, started_at=junk),
        reloads=[reload_entry],
    )
    config = tmp_path / "horus.json"
    bot = {"name": "bot", "check": {"type": "runner"}, "runner": str(runner_dir)}
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": [bot]}))
    done = subprocess.run([str(HORUS), "status", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("bot: running"))
    assert "last reload at an unknown time" in line, line
    assert f"active pid {active.pid}" in line and "trading for" not in line, line


@pytest.mark.parametrize("junk", NOT_A_TIME, ids=repr)
def test_a_time_that_is_not_a_number_never_crashes_the_check_or_the_runner_news(tmp_path, procs, junk):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active, trading_since=None, started_at=junk))
    result = probe(runner_dir)
    assert result.status is Status.UNKNOWN, result
    assert "has not started trading yet" in result.reason

    watch = RunnerWatch(runner_dir, since_wall=time.time() - 60)
    assert watch.read("bot") == []
    died = {"pid": 4121, "signal": 9, "at": junk}
    write_runner(runner_dir, runner_pid=runner.pid, state="gave_up", restarts=1, last_exit=died)
    news = watch.read("bot")
    assert [item.kind for item in news] == ["runner_gave_up"], news
    assert "(pid 4121) was killed by signal 9" in news[0].message
    assert "inf" not in news[0].message and "nan" not in news[0].message
    result = probe(runner_dir)
    assert result.status is Status.UNHEALTHY and "was killed by signal 9" in result.reason, result


def reload(reload_id: str, outcome: str | None, reason: str = "") -> dict[str, Any]:
    now = time.time()
    return {
        "id": reload_id,
        "trigger": "watch",
        "from_version": "aaaaaaaaaaaaaaaa",
        "to_version": "bbbbbbbbbbbbbbbb",
        "from_epoch": 11,
        "to_epoch": 12 if outcome in ("done", "rolled_back") else None,
        "started_at": now - 1,
        "finished_at": now if outcome else None,
        "outcome": outcome,
        "stage": "ready" if outcome == "failed" else "probation",
        "reason": reason,
    }


@pytest.mark.slow
def test_what_the_runner_finished_while_horus_was_stopped_is_told_once_at_the_next_start(tmp_path, procs):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    bot = {"name": "bot", "interval_seconds": 0.3, "runner": str(runner_dir), "check": {"type": "runner"}}
    config = config_with_a_phone(tmp_path, [bot], group_seconds=0.2)
    log = EventLog(tmp_path / "events.jsonl")

    def start(count: int) -> subprocess.Popen[bytes]:
        daemon = spawn_daemon(config, tmp_path / "state", log.path)
        wait_until_sync(lambda: len(log.named("horus.started")) == count, timeout=20)
        return daemon

    def told(text: str) -> int:
        return notifications_sent(tmp_path).count(text)

    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active))
    daemon = start(1)
    try:
        # A reload under way, and one done that Horus tells: then Horus stops.
        pending, done = reload("r1", None), reload("r2", "done")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[pending, done])
        wait_until_sync(lambda: told("reloaded version aaaaaaaaaaaa") == 1, timeout=20)
        assert stop_daemon(daemon) == 0

        # While Horus is stopped, the first fails and the second is rolled back on its probation.
        failed = reload("r1", "failed", "version bbbbbbbbbbbb never said ready within 60 s")
        rolled_back = reload("r2", "rolled_back", "it tripped the loss limit within its probation")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[failed, rolled_back])
        daemon = start(2)
        wait_until_sync(lambda: told("never said ready within 60 s") and told("tripped the loss limit"), timeout=20)

        # Told once: another restart, and a later reload, do not tell them again.
        assert stop_daemon(daemon) == 0
        daemon = start(3)
        later = reload("r3", "failed", "the config check found no api key")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[failed, rolled_back, later])
        wait_until_sync(lambda: told("no api key") == 1, timeout=20)
        assert told("never said ready within 60 s") == 1
        assert told("tripped the loss limit") == 1
        assert told("reloaded version aaaaaaaaaaaa") == 1
        alerts = [e["alert"] for e in log.named("monitor.alert")]
        assert alerts == ["reload_done", "reload_failed", "reload_rolled_back", "reload_failed"], alerts
        # What Horus remembers is private like the rest of its state dir: no start has to tighten it.
        assert not log.named("state.permissions_tightened")
    finally:
        stop_daemon(daemon)


def test_an_active_instance_that_died_unreaped_is_gone_not_trading(tmp_path, procs):
    """A runner that is stopped (SIGSTOP) or hung reaps nothing: its instance's death leaves a zombie, which has the
    same pid and start time but will never trade again."""
    runner, active = sleeper(), sleeper()
    procs += [runner]
    runner_dir = tmp_path / "runner"
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active))
    active.kill()
    wait_until_sync(lambda: Path(f"/proc/{active.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
    try:
        result = probe(runner_dir)
        assert result.status is Status.UNHEALTHY, result
        assert f"the active instance (pid {active.pid}, version 3f2a1b0c9d8e, epoch 12) is gone" in result.reason

        config = tmp_path / "horus.json"
        bot = {"name": "bot", "check": {"type": "runner"}, "runner": str(runner_dir)}
        config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": [bot]}))
        done = subprocess.run([str(HORUS), "status", "-c", str(config)], capture_output=True, text=True, timeout=60)
        assert f"active pid {active.pid} version 3f2a1b0c9d8e epoch 12 (exited)" in done.stdout, done.stdout
    finally:
        active.wait(timeout=10)


def test_a_reload_id_listed_twice_is_told_once_not_at_every_look_and_junk_entries_are_skipped():
    watch = RunnerWatch(Path("/nowhere"), since_wall=time.time() - 60)
    assert watch.compare({"state": "running", "restarts": 0, "reloads": []}) == []
    twice = [reload("r1", "done"), reload("r1", "failed", "the config check found no api key")]
    [news] = watch.compare({"state": "running", "restarts": 0, "reloads": twice})
    assert news.kind == "reload_failed", news
    for _ in range(3):
        assert watch.compare({"state": "running", "restarts": 0, "reloads": twice}) == []
    junk = [1, None, {"id": 5}, {"id": "r2", "outcome": ["done"]}, {"id": "r3", "outcome": {"x": 1}}, *twice]
    assert watch.compare({"state": "running", "restarts": 0, "reloads": junk}) == []


def test_a_runner_starting_its_instance_is_not_judged_until_the_trading_limit(tmp_path, procs):
    """At its start, a crash restart or a restart request the runner has a standby warming up and no active instance
    for up to its ready timeout: that is a service starting, not a failing one (a heal then would restart a start)."""
    runner, booting = sleeper(), sleeper()
    procs += [runner, booting]
    runner_dir = tmp_path / "runner"
    warming = instance(booting, epoch=None, trading_since=None, started_at=time.time() - 5)
    write_runner(runner_dir, runner_pid=runner.pid, state="starting", standby=warming)
    result = probe(runner_dir)
    assert result.status is Status.UNKNOWN, result
    waiting = f"is starting: its instance (pid {booting.pid}, version 3f2a1b0c9d8e) has not taken the lease yet"
    assert waiting in result.reason
    assert result.recheck_in is not None and 100 < result.recheck_in <= 115

    too_long = {**warming, "started_at": time.time() - 300}
    write_runner(runner_dir, runner_pid=runner.pid, state="starting", standby=too_long)
    result = probe(runner_dir)
    assert result.status is Status.UNHEALTHY, result
    assert "started 5 min ago and has not traded yet, limit 2 min" in result.reason

    booting.kill()
    booting.wait(timeout=10)
    write_runner(runner_dir, runner_pid=runner.pid, state="starting", standby=warming)
    result = probe(runner_dir)
    assert result.status is Status.UNHEALTHY and "has no active instance: state starting" in result.reason, result


def test_a_crash_is_told_as_restarted_only_once_the_runner_has_restarted_it():
    """The runner counts a crash in ``restarts`` when the instance dies: it restarts it after a backoff, or gives up."""
    watch = RunnerWatch(Path("/nowhere"), since_wall=time.time() - 60)
    died = {"pid": 4121, "signal": 9}
    assert watch.compare({"state": "running", "restarts": 1, "reloads": []}) == []
    before = watch.instance
    assert watch.compare({"state": "backoff", "restarts": 2, "last_exit": died}) == [], "not restarted yet"
    assert watch.instance == before, "the engine counts the restart when it is told"
    [restarted] = watch.compare({"state": "starting", "restarts": 2, "last_exit": died})
    assert restarted.kind == "runner_restart", restarted
    assert watch.instance != before
    assert (
        restarted.message
        == "the runner restarted the crashed instance: the last one (pid 4121) was killed by signal 9 (restart 2)"
    )
    assert watch.compare({"state": "running", "restarts": 2, "last_exit": died}) == []

    assert watch.compare({"state": "backoff", "restarts": 3, "last_exit": died}) == []
    [gave_up] = watch.compare({"state": "gave_up", "restarts": 4, "last_exit": died, "state_reason": "4 crashes"})
    assert gave_up.kind == "runner_gave_up", "giving up is not a restart"
    [restarted] = watch.compare({"state": "running", "restarts": 5, "last_exit": died})
    assert restarted.message.startswith("the runner restarted the crashed instance"), restarted


def test_a_runner_dir_horus_cannot_look_into_is_a_probe_error_not_an_unhealthy_service(tmp_path):
    """As the README promises of every check: a path Horus cannot look at (through a regular file, permission
    denied) says nothing of the service, so it is never a reason to heal it."""
    from horus.engine.runner import run_inline

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    check = RunnerCheck(RunnerOptions(type="runner", dir=not_a_dir / "runner"))
    run = run_inline(check, ProbeContext(clock=SystemClock(), http=None))  # type: ignore[arg-type]
    assert run.result.status is Status.ERROR, run.result
    assert "a path component is not a directory (ENOTDIR)" in run.result.reason

    # What the runner's dir holds is the runner's doing, and stays a verdict on it.
    assert probe(tmp_path / "missing").status is Status.UNHEALTHY


def test_status_json_of_a_runner_json_holding_nan_or_deep_junk_is_still_strict_json(tmp_path, procs):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    deep: list[Any] = []
    for _ in range(900):
        deep = [deep]
    entry = {"id": "r1", "outcome": "done", "finished_at": math.nan, "gap_ms": math.inf, "to_epoch": 12, "x": deep}
    write_runner(runner_dir, runner_pid=runner.pid, updated_at=math.nan, active=instance(active), reloads=[entry])
    config = tmp_path / "horus.json"
    bot = {"name": "bot", "check": {"type": "runner"}, "runner": str(runner_dir)}
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": [bot]}))
    done = subprocess.run(
        [str(HORUS), "status", "-c", str(config), "--json"], capture_output=True, text=True, timeout=60
    )

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(done.stdout, parse_constant=refuse)
    facts = report["runners"]["bot"]
    assert facts["updated_at"] is None and facts["last_reload"]["gap_ms"] is None, facts
    assert facts["active"]["pid"] == active.pid


@pytest.mark.slow
def test_a_runner_added_by_a_config_reload_is_followed_from_then_not_from_the_daemons_start(tmp_path, procs):
    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active))
    bot = {"name": "bot", "interval_seconds": 0.3, "check": {"type": "runner", "dir": str(runner_dir)}}
    config = config_with_a_phone(tmp_path, [bot], group_seconds=0.2)
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: log.named("horus.started"), timeout=20)
        before = reload("r1", "rolled_back", "yesterday's rollback, before the monitor named its runner")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[before])
        time.sleep(0.1)  # r1 finished, by the wall clock, before the config that follows the runner was loaded

        settings = json.loads(config.read_text())
        settings["monitors"][0]["runner"] = str(runner_dir)
        config.write_text(json.dumps(settings))
        daemon.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: log.named("config.reloaded"), timeout=20)
        after = reload("r2", "failed", "the config check found no api key")
        write_runner(runner_dir, runner_pid=runner.pid, active=instance(active), reloads=[before, after])
        wait_until_sync(lambda: "no api key" in notifications_sent(tmp_path), timeout=20)
        assert "yesterday's rollback" not in notifications_sent(tmp_path)
        assert [e["alert"] for e in log.named("monitor.alert")] == ["reload_failed"]
    finally:
        stop_daemon(daemon)


def test_follow_from_now_takes_what_a_newly_named_runner_did_before_as_old_and_keeps_a_known_one(tmp_path, procs):
    runner = sleeper()
    procs.append(runner)
    runner_dir, other_dir = tmp_path / "runner", tmp_path / "other"
    started = time.time()
    time.sleep(0.05)  # r1 finishes after the daemon's start, before the config reload
    old = reload("r1", "rolled_back", "before the monitor named its runner")
    write_runner(runner_dir, runner_pid=runner.pid, reloads=[old])
    write_runner(other_dir, runner_pid=runner.pid, reloads=[old])
    time.sleep(0.05)
    kept = RunnerWatch(other_dir, since_wall=started)
    daemon = SimpleNamespace(
        runner_watches={"kept": kept},
        clock=SystemClock(),
        store=SimpleNamespace(path=tmp_path / "state" / "horus.db"),
    )
    added = SimpleNamespace(name="bot", runner=runner_dir)
    follow_from_now(daemon, [added, SimpleNamespace(name="kept", runner=other_dir)])  # type: ignore[arg-type]
    assert daemon.runner_watches["kept"] is kept
    assert daemon.runner_watches["bot"].read("bot") == []
    assert [n.kind for n in RunnerWatch(runner_dir, since_wall=started).read("bot")] == ["reload_rolled_back"]


def test_a_runner_stopped_by_a_signal_is_said_so_by_the_check_reload_and_heal_without_waiting(tmp_path, procs):
    """A runner stopped by SIGSTOP (Ctrl-Z in the terminal it runs in, a debugger) restarts and reloads nothing and
    answers no request until it is continued: like a runner that is gone, though its pid is still its own."""
    from horus.engine.runner import run_heal
    from horus.heals.base import HealContext
    from horus.heals.runner_restart import RunnerRestartHeal, RunnerRestartOptions

    runner, active = sleeper(), sleeper()
    procs += [runner, active]
    runner_dir = tmp_path / "runner"
    write_runner(runner_dir, runner_pid=runner.pid, active=instance(active))
    os.kill(runner.pid, signal.SIGSTOP)
    wait_until_sync(lambda: Path(f"/proc/{runner.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T")
    frozen = f"the runner (pid {runner.pid}) is stopped by a signal"
    try:
        result = probe(runner_dir)
        assert result.status is Status.UNHEALTHY and frozen in result.reason, result
        assert f"kill -CONT {runner.pid}" in result.reason

        config = tmp_path / "horus.json"
        bot = {"name": "bot", "check": {"type": "runner"}, "runner": str(runner_dir)}
        config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "monitors": [bot]}))
        asked = time.monotonic()
        done = subprocess.run(
            [str(HORUS), "reload", "-c", str(config), "bot"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1 and frozen in done.stderr, done.stderr
        assert time.monotonic() - asked < 30, "refused at once, not after the 180 s wait"
        assert not RunnerPaths.of(runner_dir).requests.exists()

        heal = RunnerRestartHeal(RunnerRestartOptions(action="runner_restart", dir=runner_dir, timeout_seconds=30))
        context = HealContext(clock=SystemClock(), monitor="bot", reason="test")
        outcome = asyncio.run(run_heal(heal, context, timeout=40))
        assert outcome.refused and frozen in outcome.summary, outcome
    finally:
        os.kill(runner.pid, signal.SIGCONT)


def test_a_new_version_that_failed_probation_and_could_not_be_rolled_back_is_critical_like_a_rollback():
    """The new version failed on probation and the old one could not be brought back: worse than a rollback
    (where the old version trades on), so it is told at least as loudly."""
    watch = RunnerWatch(Path("/nowhere"), since_wall=time.time() - 60)
    assert watch.compare({"state": "running", "restarts": 0, "reloads": []}) == []
    failed = {**reload("r1", "failed", "it crashed on probation and the rollback failed"), "stage": "probation"}
    [news] = watch.compare({"state": "running", "restarts": 0, "reloads": [failed]})
    assert news.kind == "reload_failed" and news.severity is Severity.CRITICAL, news
    [ordinary] = watch.compare({"state": "running", "restarts": 0, "reloads": [failed, reload("r2", "failed")]})
    assert ordinary.severity is Severity.WARNING, ordinary
