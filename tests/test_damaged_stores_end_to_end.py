"""A damaged database is never a silent reset (issue 12, item 5): a real daemon finds each of horus.db,
notify.db and incidents.db empty, cut short, full of noise or of someone else's tables; it moves the file
aside with its -wal and -shm, says so in the log and in a notification, and goes on watching, and a lost
state database never lets it heal inside a cooldown it can no longer read."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.support import EventLog, spawn_daemon, stop_daemon, wait_until_sync

DATABASES = ("horus.db", "notify.db", "incidents.db")

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, *, cooldown: float = 300) -> tuple[Path, Path, Path]:
    """A monitor that always fails and whose heal appends a line to heals.log (so heals can be counted),
    a healthy one beside it, and a command channel that appends every event it gets to received.jsonl."""
    heals = tmp_path / "heals.log"
    received = tmp_path / "received.jsonl"
    present = tmp_path / "present"
    present.touch()
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    {
                        "name": "bot",
                        "interval_seconds": 0.2,
                        "min_failures_to_heal": 1,
                        "startup_grace_seconds": 0,
                        "heal_cooldown_seconds": cooldown,
                        "check": {"type": "file_exists", "path": str(tmp_path / "never-there")},
                        "heal": {"action": "run_script", "command": ["sh", "-c", f"echo healed >> {heals}"]},
                    },
                    {
                        "name": "fine",
                        "interval_seconds": 0.2,
                        "check": {"type": "file_exists", "path": str(present)},
                    },
                ],
                "notify": [{"name": "rec", "command": ["sh", "-c", f"cat >> {received}; echo >> {received}"]}],
                "notify_settings": {"group_seconds": 0.2, "send_timeout_seconds": 5},
            }
        )
    )
    return config, heals, received


def received_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.extend(json.loads(line))
        except json.JSONDecodeError:
            continue  # a message still being written
    return events


def heal_count(heals: Path) -> int:
    return len(heals.read_text().splitlines()) if heals.exists() else 0


def damage(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: max(4096, len(data) // 2) + 100])
    elif how == "random":
        path.write_bytes(os.urandom(64 * 1024))
    elif how == "wrong-schema":
        path.unlink()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE recipes (name TEXT, grams INTEGER)")
            db.execute("INSERT INTO recipes VALUES ('bread', 500)")
        db.close()
    else:
        raise AssertionError(how)


def build_state(tmp_path: Path, state: Path, config: Path) -> None:
    """Real databases of a real daemon (which healed once), stopped cleanly."""
    log = EventLog(tmp_path / "first.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("heal.finished") and log.named("notify.delivered"), timeout=20)
    finally:
        assert stop_daemon(daemon) == 0
    for name in DATABASES:
        assert (state / name).stat().st_size > 0


@pytest.mark.parametrize("how", ["empty", "truncated", "random", "wrong-schema"])
def test_each_damaged_database_is_moved_aside_said_and_monitoring_goes_on_without_a_heal(tmp_path, how):
    config, heals, received = write_config(tmp_path)
    state = tmp_path / "state"
    build_state(tmp_path, state, config)
    assert heal_count(heals) == 1
    for name in DATABASES:
        damage(state / name, how)
        # A WAL beside the damaged file must go with it, or SQLite would replay it into the new one.
        (state / f"{name}-wal").write_bytes(b"left over")
    received.unlink()
    log = EventLog(tmp_path / "second.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: len(log.named("store.damaged_moved_aside")) == 3, timeout=20)
        checks = len(log.named("check.failed")) + len(log.named("check.failed_in_grace"))
        wait_until_sync(
            lambda: len(log.named("check.failed")) + len(log.named("check.failed_in_grace")) >= checks + 10, timeout=20
        )
        wait_until_sync(lambda: sum("damaged" in e["title"] for e in received_events(received)) == 3, timeout=20)
        assert daemon.poll() is None, "Horus keeps watching"
    finally:
        assert stop_daemon(daemon) == 0
    assert heal_count(heals) == 1, "a damaged state database must not let Horus heal inside the cooldown"
    moved = {e["path"]: e for e in log.named("store.damaged_moved_aside")}
    assert set(moved) == {str(state / name) for name in DATABASES}
    for name in DATABASES:
        record = moved[str(state / name)]
        assert record["reason"], record
        assert Path(record["moved_to"]).exists() and Path(record["moved_to"]).name.startswith(f"{name}.damaged-")
        assert Path(record["moved_to"] + "-wal").read_bytes() == b"left over"
        with sqlite3.connect(state / name) as db:  # a new, working database took its place
            assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        db.close()
    [assumed] = log.named("store.cooldowns_assumed")
    assert assumed["monitors"] == 2 and "horus.db" in assumed["why"]
    assert not log.named("horus.cannot_start") and "Traceback" not in log.path.read_text()
    [note] = [e for e in received_events(received) if "state database" in e["title"]]
    assert note["severity"] == "critical" and "moved to" in note["message"] and "cooldown" in note["message"]


def test_a_missing_state_database_beside_the_others_keeps_every_cooldown(tmp_path):
    config, heals, _ = write_config(tmp_path)
    state = tmp_path / "state"
    build_state(tmp_path, state, config)
    for suffix in ("", "-wal", "-shm"):
        (state / f"horus.db{suffix}").unlink(missing_ok=True)
    log = EventLog(tmp_path / "second.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: log.named("store.cooldowns_assumed"), timeout=20)
        wait_until_sync(lambda: len(log.named("check.failed_in_grace")) + len(log.named("check.failed")) >= 10)
    finally:
        assert stop_daemon(daemon) == 0
    assert heal_count(heals) == 1
    assert "missing" in log.named("store.cooldowns_assumed")[0]["why"]


def test_a_healthy_state_dir_is_neither_moved_nor_given_assumed_cooldowns(tmp_path):
    config, heals, _ = write_config(tmp_path, cooldown=0.5)
    state = tmp_path / "state"
    build_state(tmp_path, state, config)
    log = EventLog(tmp_path / "second.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: heal_count(heals) >= 2, timeout=20)
    finally:
        assert stop_daemon(daemon) == 0
    assert not log.named("store.damaged_moved_aside") and not log.named("store.cooldowns_assumed")
    assert not list(state.glob("*.damaged-*"))
