from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest

from horus.checks.artifact_growth import ArtifactGrowthCheck, ArtifactGrowthOptions
from horus.checks.base import CheckResult, Status
from horus.config.loader import parse_config
from horus.errors import ConfigError, ProbeError
from tests.support import wait_until

WINDOW = 0.3  # short real windows: the check is judged on real time, not on a fake clock


def make_check(window: float = WINDOW, **source) -> ArtifactGrowthCheck:
    options = {"type": "artifact_growth", "window_seconds": window, **source}
    return ArtifactGrowthCheck(ArtifactGrowthOptions.model_validate(options))


async def after_the_window(check: ArtifactGrowthCheck, first: CheckResult, probe_ctx) -> CheckResult:
    """Wait for the moment the check asked to be looked at again, and look."""
    assert first.recheck_in is not None
    await asyncio.sleep(first.recheck_in)
    return await check.probe(probe_ctx)


def new_database(path, *, wal: bool = False, column: str = "id INTEGER PRIMARY KEY") -> None:
    with sqlite3.connect(path) as db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"CREATE TABLE trades ({column})")
    db.close()


def insert(path, *rows) -> None:
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT INTO trades VALUES (?)", [(row,) for row in rows])
    db.close()


# --- glob ---------------------------------------------------------------------------------------------


async def test_files_appearing_within_the_window_are_healthy_and_say_how_many_are_new(tmp_path, probe_ctx):
    check = make_check(window=60, glob={"directory": str(tmp_path), "pattern": "*.json"})
    first = await check.probe(probe_ctx)
    assert first.status is Status.UNKNOWN, "not known yet: neither healthy nor a failure"
    assert first.reason.startswith(f"0 files matching *.json in {tmp_path}, watching for ")
    assert first.reason.endswith(" of 60 s window")
    assert first.details["watching"] is True
    for name in ("a.json", "b.json", "c.json"):
        (tmp_path / name).write_text("{}")

    result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert re.fullmatch(rf"3 new files in \d+ ms \(3 matching \*\.json in {re.escape(str(tmp_path))}\)", result.reason)
    assert result.details["growth"] == 3
    assert result.details["value"] == 3
    assert result.details["window_seconds"] == 60
    assert "watching" not in result.details
    assert result.recheck_in is not None
    assert 59 < result.recheck_in <= 60.1, "with no more files, it is unhealthy one window after the last growth"


async def test_no_new_files_over_a_whole_window_is_unhealthy_and_gives_the_count(tmp_path, probe_ctx):
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("{}")
    check = make_check(glob={"directory": str(tmp_path), "pattern": "*.json"})
    first = await check.probe(probe_ctx)
    assert first.status is Status.UNKNOWN, "too early to say: it has not watched a whole window yet"
    assert first.recheck_in is not None
    assert WINDOW <= first.recheck_in <= WINDOW + 0.1

    result = await after_the_window(check, first, probe_ctx)
    assert result.status is Status.UNHEALTHY
    where = re.escape(str(tmp_path))
    assert re.fullmatch(rf"no new files matching \*\.json in {where} in the last 3\d\d ms \(still 2\)", result.reason)
    assert result.details["growth"] == 0 and result.details["value"] == 2


async def test_growth_below_min_growth_is_unhealthy_and_says_what_was_needed(tmp_path, probe_ctx):
    check = make_check(glob={"directory": str(tmp_path)}, min_growth=3)
    first = await check.probe(probe_ctx)
    (tmp_path / "one").write_text("x")
    result = await after_the_window(check, first, probe_ctx)
    assert result.status is Status.UNHEALTHY
    where = re.escape(str(tmp_path))
    assert re.fullmatch(rf"1 new file matching \* in {where} in the last 3\d\d ms, need 3 \(now 1\)", result.reason)


async def test_the_pattern_counts_only_matching_regular_files_and_skips_hidden_ones(tmp_path, probe_ctx):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json.tmp").write_text("{}")
    (tmp_path / ".c.json").write_text("{}")  # a writer's temporary file, as a shell glob would skip it
    (tmp_path / "d.json").mkdir()
    (tmp_path / "e.json").symlink_to(tmp_path / "a.json")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.json").write_text("{}")
    result = await make_check(glob={"directory": str(tmp_path), "pattern": "*.json"}).probe(probe_ctx)
    assert result.details["value"] == 1
    hidden = await make_check(glob={"directory": str(tmp_path), "pattern": ".*.json"}).probe(probe_ctx)
    assert hidden.details["value"] == 1, "a pattern that starts with a dot matches hidden files"


async def test_recursive_counts_subdirectories_without_following_symlinks_or_hidden_directories(tmp_path, probe_ctx):
    out = tmp_path / "out"
    (out / "2026" / "11").mkdir(parents=True)
    (out / "top.json").write_text("{}")
    (out / "2026" / "11" / "day.json").write_text("{}")
    (out / ".partial").mkdir()
    (out / ".partial" / "half.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "not-ours.json").write_text("{}")
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    deep = out.joinpath(*[f"d{i}" for i in range(10)])
    deep.mkdir(parents=True)
    (out.joinpath(*[f"d{i}" for i in range(7)]) / "level8.json").write_text("{}")
    (deep / "level11.json").write_text("{}")

    flat = await make_check(glob={"directory": str(out), "pattern": "*.json"}).probe(probe_ctx)
    assert flat.details["value"] == 1
    tree = await make_check(glob={"directory": str(out), "pattern": "*.json", "recursive": True}).probe(probe_ctx)
    assert tree.details["value"] == 3, "top, 2026/11/day and 8 levels down; not .partial, the symlink or level 11"
    assert f"in {out} and below, watching" in tree.reason


async def test_a_missing_output_directory_is_unhealthy_at_once(tmp_path, probe_ctx):
    missing = tmp_path / "out"
    result = await make_check(glob={"directory": str(missing)}).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"output directory {missing} does not exist"
    (tmp_path / "file").write_text("x")
    result = await make_check(glob={"directory": str(tmp_path / "file")}).probe(probe_ctx)
    assert result.reason == f"{tmp_path / 'file'} is not a directory"


async def test_an_unreadable_output_directory_is_a_probe_error_not_unhealthy(tmp_path, probe_ctx):
    if os.geteuid() == 0:
        pytest.skip("root can read any directory")
    locked = tmp_path / "out"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(ProbeError, match=re.escape(f"cannot read {locked}: Permission denied")):
            await make_check(glob={"directory": str(locked)}).probe(probe_ctx)
    finally:
        locked.chmod(0o755)


async def test_growth_since_a_moment_reports_how_much_grew_in_how_long(tmp_path, probe_ctx):
    check = make_check(window=60, glob={"directory": str(tmp_path)})
    assert check.growth_since(time.monotonic()) is None, "nothing observed yet"
    await check.probe(probe_ctx)
    healed_at = time.monotonic()
    assert check.growth_since(healed_at) is None, "no look since the heal yet"
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").write_text("x")
    await check.probe(probe_ctx)
    growth = check.growth_since(healed_at)
    assert growth is not None
    grew, seconds = growth
    assert grew == 2
    assert 0 < seconds < 5


# --- file_size ----------------------------------------------------------------------------------------


async def test_a_growing_file_is_healthy_and_says_by_how_much(tmp_path, probe_ctx):
    out = tmp_path / "trades.csv"
    out.write_bytes(b"x" * 100)
    check = make_check(window=60, file_size=str(out))
    first = await check.probe(probe_ctx)
    assert first.reason.startswith("trades.csv is 100 bytes, watching for ")
    with out.open("ab") as f:
        f.write(b"y" * 2000)
    result = await check.probe(probe_ctx)
    assert result.status is Status.HEALTHY
    assert re.fullmatch(r"trades\.csv grew by 2,000 bytes in \d+ ms \(now 2,100 bytes\)", result.reason)
    assert result.details["growth"] == 2000


async def test_a_truncated_file_starts_a_new_baseline_neither_growth_nor_failure(tmp_path, probe_ctx):
    out = tmp_path / "out.log"
    out.write_bytes(b"x" * 100)
    check = make_check(file_size=str(out))
    first = await check.probe(probe_ctx)
    out.write_bytes(b"z" * 10)  # truncated and written again: logrotate's copytruncate
    truncated = await check.probe(probe_ctx)
    assert truncated.status is Status.UNKNOWN
    assert truncated.details["growth"] == 0, "a shrink is not growth"
    assert truncated.details["watching"] is True

    stalled = await after_the_window(check, first, probe_ctx)
    assert stalled.status is Status.UNHEALTHY
    assert re.fullmatch(
        r"out\.log did not grow in the last 3\d\d ms \(still 10 bytes\); truncated or replaced \d+ ms ago",
        stalled.reason,
    )
    with out.open("ab") as f:
        f.write(b"more")
    resumed = await check.probe(probe_ctx)
    assert resumed.status is Status.HEALTHY
    assert resumed.reason.startswith("out.log grew by 4 bytes in "), "growth is counted from the new size"


async def test_a_missing_file_is_unhealthy_and_names_its_path(tmp_path, probe_ctx):
    missing = tmp_path / "out.log"
    result = await make_check(file_size=str(missing)).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"out.log does not exist ({missing})"


# --- sqlite -------------------------------------------------------------------------------------------


async def test_a_table_receiving_rows_is_healthy_and_one_that_stops_is_unhealthy(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db)
    insert(db, 1, 2)
    check = make_check(sqlite={"database": str(db), "query": "SELECT count(*) FROM trades;"})
    first = await check.probe(probe_ctx)
    assert first.reason.startswith("trades: count 2, watching for ")
    insert(db, 3, 4, 5)
    growing = await check.probe(probe_ctx)
    assert growing.status is Status.HEALTHY
    assert re.fullmatch(r"trades: count 5, \+3 in \d+ ms", growing.reason)
    assert growing.details["growth"] == 3

    stalled = await after_the_window(check, growing, probe_ctx)
    assert stalled.status is Status.UNHEALTHY
    assert re.fullmatch(r"trades: count 5, \+0 in the last 3\d\d ms, need \+1", stalled.reason)


async def test_latest_as_epoch_seconds_is_judged_by_its_age(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db, column="at REAL")
    query = {"database": str(db), "query": "SELECT max(at) FROM trades", "measure": "latest"}
    empty = await make_check(window=600, sqlite=query).probe(probe_ctx)
    assert empty.status is Status.UNHEALTHY
    assert empty.reason == f"trades: the query returned no rows yet ({db})"

    insert(db, time.time() - 7200)
    old = await make_check(window=600, sqlite=query).probe(probe_ctx)
    assert old.status is Status.UNHEALTHY
    assert re.fullmatch(r"trades: latest row \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ is 2 h old, limit 10 min", old.reason)

    insert(db, (time.time() - 5) * 1000)  # milliseconds, as JavaScript writes them
    fresh = await make_check(window=600, sqlite=query).probe(probe_ctx)
    assert fresh.status is Status.HEALTHY
    assert re.fullmatch(r"trades: latest row \S+ is 5\.\d s old, limit 10 min", fresh.reason)
    assert fresh.recheck_in is not None
    assert 594 < fresh.recheck_in < 596, "looked at again when the row turns 10 min old"


async def test_latest_as_iso_text_is_read_as_utc_unless_it_says_otherwise(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db, column="at TEXT")
    two_hours_ago = datetime.fromtimestamp(time.time() - 7200, UTC).strftime("%Y-%m-%d %H:%M:%S")
    insert(db, two_hours_ago)
    query = {"database": str(db), "query": "SELECT max(at) FROM trades", "measure": "latest"}
    old = await make_check(window=600, sqlite=query).probe(probe_ctx)
    assert old.status is Status.UNHEALTHY
    assert old.reason == f"trades: latest row {two_hours_ago} is 2 h old, limit 10 min"

    with sqlite3.connect(db) as writer:
        writer.execute("INSERT INTO trades VALUES (CURRENT_TIMESTAMP)")  # UTC, without an offset
    writer.close()
    fresh = await make_check(window=600, sqlite=query).probe(probe_ctx)
    assert fresh.status is Status.HEALTHY, fresh.reason

    with sqlite3.connect(db) as writer:
        writer.execute("DELETE FROM trades")
        writer.execute("INSERT INTO trades VALUES (?)", (datetime.now(UTC).astimezone().isoformat(),))
    writer.close()
    local = await make_check(window=600, sqlite=query).probe(probe_ctx)
    assert local.status is Status.HEALTHY, "an explicit offset is honoured"


async def test_a_wal_database_written_by_the_service_is_read_without_blocking_the_writer(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db, wal=True)
    writer_errors: list[BaseException] = []
    commits = 0
    stop = threading.Event()

    def service() -> None:
        nonlocal commits
        # timeout=0: any lock the check took would fail this writer at once rather than delay it.
        conn = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO trades (id) VALUES (NULL)", [()] * 20)
                conn.execute("COMMIT")
                commits += 1
        except BaseException as exc:
            writer_errors.append(exc)
        finally:
            conn.close()

    check = make_check(window=60, sqlite={"database": str(db), "query": "SELECT count(*) FROM trades"})
    thread = threading.Thread(target=service)
    thread.start()
    try:
        # The service is up and writing before the check first looks, as in production: the first
        # connection to a WAL database initialises its index under a lock for a few microseconds.
        await wait_until(lambda: commits > 0 or bool(writer_errors))
        results = []
        for _ in range(30):
            results.append(await check.probe(probe_ctx))
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert writer_errors == []
    assert all(r.status in (Status.HEALTHY, Status.UNKNOWN) for r in results), [
        r.reason for r in results if r.status is Status.UNHEALTHY or r.status is Status.ERROR
    ]
    assert results[-1].details["growth"] > 0


async def test_a_missing_database_is_unhealthy_and_is_not_created(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    result = await make_check(sqlite={"database": str(db), "query": "SELECT count(*) FROM trades"}).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"database {db} does not exist"
    assert list(tmp_path.iterdir()) == []


async def test_a_failing_query_is_unhealthy_and_says_why(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db)
    result = await make_check(sqlite={"database": str(db), "query": "SELECT count(*) FROM orders"}).probe(probe_ctx)
    assert result.status is Status.UNHEALTHY
    assert result.reason == f"orders: query failed on {db}: no such table: orders"


async def test_the_database_is_only_read(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db)
    insert(db, 1)
    before = (db.read_bytes(), sorted(p.name for p in tmp_path.iterdir()))
    check = make_check(sqlite={"database": str(db), "query": "WITH t AS (SELECT * FROM trades) SELECT count(*) FROM t"})
    assert (await check.probe(probe_ctx)).status is Status.UNKNOWN, "read, and too early to judge"
    assert (db.read_bytes(), sorted(p.name for p in tmp_path.iterdir())) == before


async def test_a_query_past_the_monitors_timeout_is_interrupted_and_releases_the_database(tmp_path, probe_ctx):
    db = tmp_path / "bot.db"
    new_database(db)  # rollback journal: a running read holds a shared lock that blocks an exclusive one
    insert(db, 1)
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) "
    check = make_check(sqlite={"database": str(db), "query": slow + "SELECT count(*) FROM n, trades"})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await check.probe(probe_ctx)

    def exclusive_lock_is_free() -> bool:
        conn = sqlite3.connect(db, timeout=2, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
            return True
        finally:
            conn.close()

    assert await asyncio.to_thread(exclusive_lock_is_free)


# --- options ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "location", "message"),
    [
        ({}, "check", "set exactly one source of output: glob, file_size or sqlite"),
        (
            {"file_size": "/srv/out.csv", "glob": {"directory": "/srv/out"}},
            "check",
            "set exactly one source of output: glob, file_size or sqlite; got glob and file_size",
        ),
        (
            {"sqlite": {"database": "/srv/bot.db", "query": "DELETE FROM trades"}},
            "check.sqlite.query",
            "must be one SELECT statement (it may start with WITH)",
        ),
        (
            {"sqlite": {"database": "/srv/bot.db", "query": "SELECT 1; DROP TABLE trades"}},
            "check.sqlite.query",
            "must be one statement: ';' is allowed only at the end",
        ),
        (
            {"file_size": "/srv/out.csv", "min_growth": 0},
            "check.min_growth",
            "Input should be greater than or equal to 1, got 0",
        ),
        (
            {"sqlite": {"database": "/b.db", "query": "SELECT max(at) FROM t", "measure": "latest"}, "min_growth": 5},
            "check",
            "min_growth does not apply to measure: latest",
        ),
        (
            {"glob": {"directory": "/srv/out", "pattern": "2026/*.json"}},
            "check.glob.pattern",
            "matches file names, so it cannot contain '/'",
        ),
        ({"file_size": "/srv/out.csv", "window": 60}, "check.window", "unknown key"),
    ],
)
def test_invalid_options_are_located_errors_at_config_time(check, location, message):
    options = {"type": "artifact_growth", "window_seconds": 300, **check}
    config = {"monitors": [{"name": "exporter", "check": options}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(json.dumps(config), suffix=".json")
    assert f"monitors[0] (exporter).{location}: {message}" in str(caught.value)


def test_window_seconds_is_required():
    config = {"monitors": [{"name": "exporter", "check": {"type": "artifact_growth", "file_size": "/srv/out.csv"}}]}
    with pytest.raises(ConfigError, match=re.escape("monitors[0] (exporter).check.window_seconds: required")):
        parse_config(json.dumps(config), suffix=".json")


def test_a_yaml_config_with_each_source_loads():
    text = """
monitors:
  - name: exports
    check: {type: artifact_growth, glob: {directory: ~/out, pattern: "*.json"}, window_seconds: 300}
  - name: ledger
    check: {type: artifact_growth, file_size: /srv/ledger.csv, min_growth: 100, window_seconds: 600}
  - name: trades
    check:
      type: artifact_growth
      sqlite: {database: /srv/bot.db, query: "SELECT max(created_at) FROM trades", measure: latest}
      window_seconds: 600
"""
    config = parse_config(text, suffix=".yaml")
    assert [m.check.type for m in config.monitors] == ["artifact_growth"] * 3
