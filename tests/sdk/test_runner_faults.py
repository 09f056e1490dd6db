"""horus_sdk.runner under faults from the user's side: odd source trees, odd request files, odd arguments."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from horus_sdk._runner_instance import Instance
from horus_sdk._runner_versions import source_signature
from horus_sdk.runner_files import new_request, read_result
from tests.sdk.test_runner import Service, alive, wait_until


def test_a_file_name_that_is_not_utf8_is_copied_into_the_version_like_any_other(service: Service) -> None:
    (Path(os.fsdecode(bytes(service.source) + b"/data-\xff.txt"))).write_bytes(b"kept")
    service.start("--no-watch")
    assert service.proc is not None
    wait_until(lambda: service.trading() or service.proc.poll() is not None, what="the first start or an exit")
    assert "Traceback" not in service.stderr(), service.stderr()
    active = service.trading()
    assert active, service.stderr()
    copied = service.state_dir / "versions" / active["version"] / os.fsdecode(b"data-\xff.txt")
    assert copied.read_bytes() == b"kept"


def test_a_source_dir_that_went_away_is_said_and_never_reloaded_as_an_empty_version(service: Service) -> None:
    service.start()
    first = wait_until(service.trading, what="the first start")
    service.source.rename(service.source.with_name("src.moved"))
    wait_until(lambda: "cannot watch the source" in service.stderr(), 10, "the runner saying the source is gone")
    assert "is not a directory" in service.stderr(), service.stderr()
    request_id = new_request(service.state_dir, "restart", requested_by="test")  # a few more polls of the source
    wait_until(lambda: read_result(service.state_dir, request_id), what="the restart")
    assert service.stderr().count("cannot watch the source") == 1, service.stderr()
    assert service.state()["reloads"] == [] and service.state()["active"]["version"] == first["version"]
    service.source.with_name("src.moved").rename(service.source)
    service.write_version(mode="normal", v=2)
    wait_until(lambda: service.trading(version_not=first["version"]), what="the reload once the source is back")


def test_a_request_entry_that_cannot_be_removed_is_refused_once_not_at_every_look(service: Service) -> None:
    service.start("--no-watch")
    wait_until(service.trading, what="the first start")
    (service.state_dir / "requests" / "stuck.json").mkdir()
    wait_until(lambda: "stuck.json" in service.stderr(), what="the refusal")
    request_id = new_request(service.state_dir, "reload", requested_by="test")
    wait_until(lambda: read_result(service.state_dir, request_id), what="the next request's answer")
    for _ in range(3):  # a few more looks at requests/ (one every 0.2 s)
        request_id = new_request(service.state_dir, "reload", requested_by="test")
        wait_until(lambda request_id=request_id: read_result(service.state_dir, request_id), what="an answer")
    assert service.stderr().count("refused the request stuck.json") == 1, service.stderr()


NOT_FINITE = [("--ready-timeout", "nan"), ("--stop-timeout", "inf"), ("--probation", "nan")]


@pytest.mark.parametrize(("option", "value"), NOT_FINITE)
def test_a_time_that_is_not_finite_is_refused_in_one_sentence(service: Service, option: str, value: str) -> None:
    """A nan timeout never expires: the runner would wait on a bot that never says ready for ever."""
    argv = service.argv(option, value)
    done = subprocess.run(argv, env=service.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert option in done.stderr and "must be a finite number" in done.stderr, done.stderr
    assert not service.state_dir.exists()


def test_a_probation_failure_whose_rollback_fails_is_not_left_reported_as_done(service: Service) -> None:
    """The reload's result said "done" (and runner.json kept "done") although the new version tripped on probation
    and the version before it could not come back."""
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode="trip_after", after=1.0)
    result = service.request("reload")
    assert result["outcome"] == "done", result
    shutil.rmtree(service.state_dir / "versions" / first["version"])  # the rollback's target is gone
    entry = wait_until(
        lambda: next((e for e in service.state().get("reloads", []) if "is gone" in e.get("reason", "")), None),
        what="the failed rollback",
    )
    assert entry["outcome"] == "failed" and entry["stage"] == "probation", entry
    rewritten = read_result(service.state_dir, result["id"])
    assert rewritten is not None and rewritten["outcome"] == "failed", rewritten
    assert "could not be rolled back" in rewritten["reason"] and "is gone" in rewritten["reason"], rewritten


def test_a_reload_request_cut_short_by_sigterm_is_answered_and_not_left_in_progress(service: Service) -> None:
    service.start("--no-watch")
    wait_until(service.trading, what="the first start")
    service.write_version(mode="slow_ready", after=5.0)
    request_id = new_request(service.state_dir, "reload", requested_by="test")
    wait_until(lambda: service.state().get("standby"), what="the new version starting")
    assert service.stop() == 0
    result = read_result(service.state_dir, request_id)
    assert result is not None and result["outcome"] == "failed", result
    assert "asked to stop before the reload finished" in result["reason"], result
    entry = service.state()["reloads"][-1]
    assert entry["outcome"] == "failed" and entry["stage"] == "stop" and entry["finished_at"], entry


def test_a_rollback_cut_short_by_sigterm_leaves_the_reload_failed_not_done(service: Service) -> None:
    service.write_version(mode="slow_ready", after=1.5)  # so that its comeback in the rollback takes a while
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    service.write_version(mode="trip_after", after=0.3)
    result = service.request("reload")
    assert result["outcome"] == "done", result
    wait_until(lambda: (service.state().get("standby") or {}).get("version") == first["version"], what="the rollback")
    assert service.stop() == 0
    entry = service.state()["reloads"][-1]
    assert entry["outcome"] == "failed" and entry["stage"] == "probation", entry
    assert "asked to stop before the rollback finished" in entry["reason"], entry
    rewritten = read_result(service.state_dir, result["id"])
    assert rewritten is not None and rewritten["outcome"] == "failed", rewritten


def test_a_source_tree_of_too_many_directories_is_refused_in_one_sentence_at_once(service: Service) -> None:
    for index in range(3000):
        (service.source / "data" / f"day-{index}").mkdir(parents=True)
    done = subprocess.run(service.argv(), env=service.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "holds more than 2000 directories" in done.stderr, done.stderr


def test_what_a_runner_killed_mid_copy_left_in_versions_is_removed_at_the_next_start(service: Service) -> None:
    """A kill -9 during a snapshot left its half copy (up to 100 MiB) for ever, one more at each such kill."""
    leftover = service.state_dir / "versions" / ".staging-4242"
    leftover.mkdir(parents=True)
    (leftover / "blob.bin").write_bytes(b"x" * 1024)
    service.start("--no-watch")
    active = wait_until(service.trading, what="the first start")
    assert not leftover.exists()
    assert sorted(p.name for p in (service.state_dir / "versions").iterdir()) == [active["version"]]


def test_sigterm_during_the_preflight_check_starts_no_new_instance(service: Service) -> None:
    service.start("--no-watch", "--check-command", "sleep 1.5")
    wait_until(service.trading, what="the first start")
    service.write_version(mode="normal", v=2)
    new_request(service.state_dir, "reload", requested_by="test")
    wait_until(lambda: service.state().get("state") == "reloading", what="the reload's preflight")
    assert service.stop() == 0
    assert service.stderr().count("started instance") == 1, service.stderr()
    assert service.state()["reloads"][-1]["stage"] == "stop", service.state()["reloads"]


def test_a_python_file_nested_too_deeply_to_compile_fails_the_preflight_in_a_sentence(service: Service) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    (service.source / "table.py").write_text("x = " + "-" * 100_000 + "1\n")
    result = service.request("reload")
    assert result["outcome"] == "failed" and result["reload"]["stage"] == "preflight", result
    assert "table.py: nested too deeply" in result["reason"], result
    assert service.proc is not None and service.proc.poll() is None, service.stderr()
    assert service.trading()["pid"] == first["pid"]


def test_runner_json_that_could_not_be_written_is_written_once_it_can_be_without_waiting_for_a_change(
    service: Service,
) -> None:
    """A failed write (a full disk) was never retried: runner.json kept an old state (say "reloading") until
    something else changed, hours later for a quiet service."""
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    state_file = service.state_dir / "runner.json"
    state_file.unlink()
    state_file.mkdir()  # every write fails now, as on a full disk
    result = service.request("restart")
    assert result["outcome"] == "done", result
    wait_until(lambda: "could not write" in service.stderr(), what="the runner saying so")
    # The new instance trading (its cycles): nothing changes in the runner's account from here on.
    wait_until(lambda: cycles_of_others(service, first["pid"]) > 3, what="the new instance's cycles")
    state_file.rmdir()
    now = wait_until(service.trading, 5, "runner.json written again")
    assert now["pid"] != first["pid"]
    assert service.stderr().count("could not write") == 1, service.stderr()


def cycles_of_others(service: Service, pid: int) -> int:
    """How many cycles instances other than ``pid`` have traded (from the fake's lines file)."""
    return sum(1 for line in service.lines.read_text().splitlines() if line.split()[1] != str(pid))


@pytest.mark.parametrize("name", ["logs", "requests", "results", "versions"])
def test_a_file_where_the_state_dir_keeps_a_directory_is_one_sentence_not_a_traceback(
    service: Service, name: str
) -> None:
    service.state_dir.mkdir(mode=0o700)
    (service.state_dir / name).write_text("not a directory")
    done = subprocess.run(service.argv(), env=service.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{service.state_dir / name} is not a directory" in done.stderr, done.stderr


def test_an_orphan_under_a_wrapper_is_ended_with_its_wrapper_by_the_next_runner(service: Service) -> None:
    """A bot run through `sh -c` (or a start script) whose cycle hangs when its runner is killed: the next runner
    signalled the wrapper alone, so the bot itself went on running, holding the lease, with no runner."""
    wrapped = ["sh", "-c", f'"{sys.executable}" bot.py; exit $?']
    argv = [*service.argv("--no-watch", "--stop-timeout", "0.5")[:-2], *wrapped]
    service.write_version(mode="hang_in_cycle", after=0)  # hangs in its first cycle
    first = subprocess.Popen(argv, env=service.env(), stderr=service.stderr_path.open("ab"))
    bot_pid = 0
    try:
        wait_until(service.trading, what="the first start")
        bot_pid = int(wait_until(lambda: service.lines.read_text().split(), what="a cycle")[1])
        first.kill()
        first.wait(10)
        service.write_version(mode="normal")
        service.proc = subprocess.Popen(argv, env=service.env(), stderr=service.stderr_path.open("ab"))
        wait_until(lambda: not alive(bot_pid), 10, f"the hung bot {bot_pid} under the wrapper ended")
        wait_until(lambda: (service.trading() or {}).get("epoch", 0) > 1, 15, "the next runner's instance trading")
    finally:
        if first.poll() is None:
            first.kill()
        if bot_pid and alive(bot_pid):
            os.kill(bot_pid, 9)


def test_a_state_dir_inside_the_source_is_refused_in_one_sentence(service: Service) -> None:
    """The runner's own writes were source changes: a reload every --debounce seconds, each version holding
    copies of the ones before (29 MiB of versions in 12 s)."""
    argv = service.argv()
    argv[argv.index(str(service.state_dir))] = str(service.source / "state")
    done = subprocess.run(argv, env=service.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "keep the state dir outside the source" in done.stderr, done.stderr
    assert not (service.source / "state").exists()
    argv[argv.index(str(service.source / "state"))] = str(service.source / ".horus" / "bot")  # never in a version
    service.proc = subprocess.Popen(argv, env=service.env(), stderr=service.stderr_path.open("ab"))
    service.state_dir = service.source / ".horus" / "bot"
    wait_until(service.trading, what="the start with its state dir in a dot-directory of the source")


def test_a_command_that_cannot_start_is_named_and_a_relative_one_explained(service: Service) -> None:
    (service.source / ".venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, service.source / ".venv" / "bin" / "python")
    argv = [*service.argv("--no-watch")[:-2], ".venv/bin/python", "bot.py"]
    service.proc = subprocess.Popen(argv, env=service.env(), stderr=service.stderr_path.open("ab"))
    state = wait_until(lambda: service.state().get("state") == "backoff" and service.state(), what="the backoff")
    assert "the command '.venv/bin/python' could not start: No such file or directory" in state["state_reason"]
    assert "give an absolute path" in state["state_reason"], state["state_reason"]


def test_a_check_command_that_is_not_a_command_line_is_refused_at_start_not_at_the_first_reload(
    service: Service,
) -> None:
    """Split only at a reload's preflight, it raised a ValueError there that killed the runner with a traceback."""
    done = subprocess.run(
        service.argv("--check-command", "pytest -k 'unclosed"),
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--check-command" in done.stderr and "No closing quotation" in done.stderr, done.stderr


def test_an_exit_is_described_while_the_output_thread_still_appends_its_last_lines(tmp_path: Path) -> None:
    """A crash is described while the thread that copies its output may still be appending the last lines: a
    RuntimeError (deque mutated during iteration) there would end the runner with a traceback."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    runner_end, other_end = socket.socketpair()
    instance = Instance(proc, runner_end, "v", tmp_path, 0.0, None)
    instance.tail.extend(f"line {index}" for index in range(20))
    done = threading.Event()

    def copy_output() -> None:
        while not done.is_set():
            instance.tail.append("boom")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as can be, so that a race shows at once
    copier = threading.Thread(target=copy_output)
    copier.start()
    try:
        for _ in range(20_000):
            assert "exited with code 0" in instance.describe_exit()
    finally:
        done.set()
        copier.join()
        sys.setswitchinterval(interval)
        runner_end.close()
        other_end.close()


def test_a_version_whose_copy_was_deleted_is_said_to_be_gone_not_its_command(service: Service) -> None:
    service.start("--no-watch")
    first = wait_until(service.trading, what="the first start")
    shutil.rmtree(service.state_dir / "versions" / first["version"])  # disk space freed by hand, say
    result = service.request("restart")
    assert result["outcome"] == "failed", result
    assert f"the copy of version {first['version']} it runs in" in result["reason"], result
    assert "is gone" in result["reason"] and "could not start" not in result["reason"], result


def test_a_file_that_comes_and_goes_while_the_tree_is_read_is_no_error(tmp_path: Path) -> None:
    """An editor's temp file (vim's 4913) gone between the directory's listing and its look: the watcher said
    "cannot watch the source" at about one poll in ten while it churned."""
    source = tmp_path / "src"
    source.mkdir()
    for index in range(50):
        (source / f"module_{index}.py").write_text("x = 1\n")
    done = threading.Event()

    def editor() -> None:
        while not done.is_set():
            (source / "4913").write_text("")
            (source / "4913").unlink()

    churning = threading.Thread(target=editor)
    churning.start()
    try:
        for _ in range(100):
            assert len([entry for entry in source_signature(source) if entry[0] != "4913"]) == 50
    finally:
        done.set()
        churning.join()
