from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from horus.errors import StateLockedError, StoreError
from horus.store import StateDirLock, StateStore, resolve_state_dir
from horus.store.state import Instant, StoredMonitorState


def stored(name="bot", failures=0, heal=None) -> StoredMonitorState:
    return StoredMonitorState(name, failures, "unhealthy", "stale", 10.0, 5.0, heal)


def test_state_survives_closing_and_reopening_the_database(tmp_path):
    store = StateStore.open(tmp_path)
    store.save(stored(failures=1), now=11.0)
    store.close()
    reopened = StateStore.open(tmp_path)
    assert reopened.load("bot") == stored(failures=1)
    assert reopened.load("nobody") is None


def test_the_database_uses_write_ahead_logging(tmp_path):
    StateStore.open(tmp_path).close()
    (mode,) = sqlite3.connect(tmp_path / "horus.db").execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_a_heal_is_committed_as_started_before_it_finishes(tmp_path):
    store = StateStore.open(tmp_path)
    heal_at = Instant(wall=100.0, mono=7.0, boot="b")
    heal_id = store.begin_heal(stored(heal=heal_at), action="kill_process", reason="bot.log stale")
    # Another connection, as a restarted Horus would have, already sees both the heal and the cooldown start.
    other = StateStore.open(tmp_path)
    assert other.load("bot").last_heal == heal_at
    [record] = other.heals("bot")
    assert (record.id, record.action, record.reason, record.finished_at) == (
        heal_id,
        "kill_process",
        "bot.log stale",
        None,
    )
    store.finish_heal(heal_id, ok=True, summary="sent SIGTERM", details={"pids": [1]}, finished_at=101.0)
    [record] = other.heals("bot")
    assert record.ok is True and record.details == {"pids": [1]}


def _hold_lock(state_dir, ready, release):
    lock = StateDirLock(state_dir)
    lock.acquire()
    ready.set()
    release.wait(10)


def test_a_second_daemon_cannot_take_a_state_dir_in_use(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(StateLockedError, match=f"pid {holder.pid}"):
            StateDirLock(tmp_path).acquire()
    finally:
        release.set()
        holder.join(10)
    lock = StateDirLock(tmp_path)
    lock.acquire()  # free again once the holder is gone
    lock.release()


def test_a_database_from_a_newer_horus_is_refused_rather_than_misread(tmp_path):
    StateStore.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "horus.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        StateStore.open(tmp_path)


def test_the_state_dir_comes_from_the_flag_then_the_config_then_the_environment_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("HORUS_STATE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir(tmp_path / "flag", tmp_path / "cfg") == tmp_path / "flag"
    assert resolve_state_dir(None, tmp_path / "cfg") == tmp_path / "cfg"
    assert resolve_state_dir(None, None) == tmp_path / "env"
    monkeypatch.delenv("HORUS_STATE_DIR")
    assert resolve_state_dir(None, None) == tmp_path / "xdg" / "horus"
