"""The state dir is Horus's private directory: made so when Horus owns it, refused when it cannot be.

What is in it (cooldowns, the heal log, notifications, incidents) must be neither readable nor writable by
other local users: a writable state dir lets anyone reset a cooldown or forge a heal record.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from horus.errors import StoreError
from horus.store import StateDirLock, StateStore
from horus.store.state import prepare_state_dir
from tests.other_user import other_user
from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = HORUS_RUN[:-1]  # python -m horus


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_an_existing_open_state_dir_is_tightened_to_0700_and_the_change_is_logged(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    with capture_logs() as logs:
        prepare_state_dir(state)
    assert mode(state) == 0o700
    [event] = [e for e in logs if e["event"] == "state.permissions_tightened"]
    assert (event["path"], event["old_mode"], event["new_mode"]) == (str(state), "0755", "0700")
    assert event["log_level"] == "warning"


def test_files_left_open_to_others_in_the_state_dir_are_tightened_too(tmp_path):
    # What an earlier Horus left: its databases at 0644.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    StateStore.open(state).close()
    for name in ("horus.db", "status.json"):
        (state / name).touch()
        (state / name).chmod(0o644)
    (state / "postmortems").mkdir(mode=0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not Horus's")
    elsewhere.chmod(0o644)
    (state / "link").symlink_to(elsewhere)
    with capture_logs() as logs:
        prepare_state_dir(state)
    assert mode(state / "horus.db") == 0o600
    assert mode(state / "status.json") == 0o600
    assert mode(state / "postmortems") == 0o700
    assert mode(elsewhere) == 0o644, "a symlink is not followed out of the state dir"
    tightened = {e["path"]: (e["old_mode"], e["new_mode"]) for e in logs if e["event"] == "state.permissions_tightened"}
    assert tightened == {
        str(state / "horus.db"): ("0644", "0600"),
        str(state / "status.json"): ("0644", "0600"),
        str(state / "postmortems"): ("0755", "0700"),
    }


def test_a_private_state_dir_is_left_alone_and_nothing_is_logged(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with capture_logs() as logs:
        prepare_state_dir(state)
    assert mode(state) == 0o700
    assert logs == []


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_a_new_state_dir_its_lock_and_its_databases_are_private_whatever_the_umask(tmp_path, mask):
    state = tmp_path / "new" / "state"
    with umask(mask):
        lock = StateDirLock(state)
        lock.acquire()
        try:
            store = StateStore.open(state)
            store.request_resume("bot", now=1.0)
            created = sorted(p.name for p in state.iterdir())
            modes = {name: mode(state / name) for name in created}
            store.close()
        finally:
            lock.release()
    assert mode(state) == 0o700
    assert modes == {"horus.db": 0o600, "horus.db-shm": 0o600, "horus.db-wal": 0o600, "horus.lock": 0o600}


def test_a_state_dir_of_another_user_is_refused_and_left_as_it_is(tmp_path):
    user = other_user()
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chown(state, user.uid, user.gid)
    with pytest.raises(StoreError) as refused:
        StateDirLock(state).acquire()
    assert str(refused.value) == (
        f"state dir {state} belongs to {user.name} (uid {user.uid}), not to root, the user Horus runs as: "
        "its owner could change the cooldowns and the heal log Horus keeps there. Give it to root "
        "(chown) or set state_dir to a directory of root's own"
    )
    assert mode(state) == 0o755
    assert not (state / "horus.lock").exists()


def test_an_open_state_dir_that_cannot_be_tightened_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    mounted = subprocess.run(["mount", "--bind", str(state), str(state)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a read-only bind mount to make chmod fail: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(state)], check=True, capture_output=True)
        with pytest.raises(StoreError) as refused:
            prepare_state_dir(state)
    finally:
        subprocess.run(["umount", str(state)], check=True)
    assert str(refused.value) == (
        f"state dir {state} has mode 0777, open to other users, and Horus cannot make it private (0700): "
        "Read-only file system"
    )


def test_the_daemon_tightens_an_open_state_dir_and_horus_status_still_reads_it(tmp_path):
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [{"name": "fine", "interval_seconds": 0.2, "check": {"type": "file_exists", "path": "/"}}],
            }
        )
    )
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    StateStore.open(state).close()
    (state / "horus.db").chmod(0o644)  # as an earlier Horus left it
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: (state / "status.json").exists(), timeout=20)
        tightened = {e["path"]: (e["old_mode"], e["new_mode"]) for e in log.named("state.permissions_tightened")}
        assert tightened[str(state)] == ("0755", "0700")
        assert tightened[str(state / "horus.db")] == ("0644", "0600")
        assert mode(state) == 0o700
        for database in ("horus.db", "notify.db", "incidents.db"):
            if (state / database).exists():
                assert mode(state / database) == 0o600, database
        shown = subprocess.run(
            [*HORUS, "status", "-c", str(config), "--state-dir", str(state)], capture_output=True, text=True, timeout=60
        )
        assert shown.stdout.startswith("Horus: running"), shown.stdout + shown.stderr
    finally:
        assert stop_daemon(daemon) == 0


def test_the_daemon_refuses_a_state_dir_of_another_user_with_a_located_error(tmp_path):
    user = other_user()
    config = tmp_path / "horus.json"
    config.write_text(json.dumps({"monitors": [{"name": "fine", "check": {"type": "file_exists", "path": "/"}}]}))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, user.uid, user.gid)
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    assert daemon.wait(timeout=60) == 1
    [refused] = log.named("horus.cannot_start")
    assert refused["error"].startswith(f"state dir {state} belongs to {user.name} (uid {user.uid})")
    assert log.named("horus.started") == []
