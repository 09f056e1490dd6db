"""The start-up check of every Horus database: damage is moved aside, and nothing healthy ever is."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from horus.notify.outbox import Outbox
from horus.sentinel.store import SqliteIncidentStore
from horus.store.state import StateStore


def test_a_database_left_by_kill_9_with_its_wal_unfolded_is_healthy_and_stays(tmp_path):
    # The child commits (the WAL holds the only copy of the tables) and dies without closing.
    code = (
        "import os, sys; from pathlib import Path; from horus.store.state import StateStore; "
        "StateStore.open(Path(sys.argv[1])); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert (tmp_path / "horus.db-wal").stat().st_size > 0
    store = StateStore.open(tmp_path, check=True)
    store.close()
    assert store.damage is None and store.recovered_from_damage is None
    assert not list(tmp_path.glob("*.damaged-*"))


def test_a_fresh_state_dir_is_new_not_lost(tmp_path):
    store = StateStore.open(tmp_path, check=True)
    store.close()
    assert store.damage is None and store.recovered_from_damage is None


def test_a_newer_horus_schema_is_not_damage(tmp_path):
    with sqlite3.connect(tmp_path / "notify.db") as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    assert Outbox.check(tmp_path) is None
    assert (tmp_path / "notify.db").exists()


def test_noise_in_the_incident_database_is_moved_aside_with_the_reason(tmp_path):
    (tmp_path / "incidents.db").write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    damage = SqliteIncidentStore.check(tmp_path)
    assert damage is not None and damage.moved_to.exists()
    assert not (tmp_path / "incidents.db").exists()
    assert "not a database" in damage.reason or "quick_check" in damage.reason
    SqliteIncidentStore.open(tmp_path).close()


def test_a_state_database_missing_beside_an_outbox_counts_as_lost(tmp_path):
    Outbox.open(tmp_path).close()
    store = StateStore.open(tmp_path, check=True)
    store.close()
    assert store.recovered_from_damage is not None and "missing" in store.recovered_from_damage


def test_a_table_of_the_right_name_with_other_columns_is_damage(tmp_path):
    with sqlite3.connect(tmp_path / "horus.db") as db:
        db.execute("CREATE TABLE monitor_state (monitor TEXT, mood TEXT)")
        db.execute("CREATE TABLE heals (id INTEGER)")
        db.execute("PRAGMA user_version = 1")
    db.close()
    store = StateStore.open(tmp_path, check=True)
    store.close()
    assert store.damage is not None and "columns" in store.damage.reason
    assert store.recovered_from_damage is not None
