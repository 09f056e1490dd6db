"""A heal never waits for other monitors' paperwork: with 200 monitors whose HTTP servers never answer all
failing at once (each one an incident with a snapshot to take), an unrelated stale log is still healed
right after its deadline."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support import EventLog, SilentServer, spawn_daemon, stop_daemon, wait_until_sync

HUNG = 200
MAX_AGE = 2.0


@pytest.mark.slow
def test_a_stale_log_is_healed_on_its_deadline_while_200_hung_monitors_open_their_incidents(tmp_path):
    silent = SilentServer()
    log_file, stamps = tmp_path / "bot.log", tmp_path / "healed.txt"
    log_file.write_text("scan\n")
    monitors = [
        {
            "name": "bot",
            "interval_seconds": 1,
            "min_failures_to_heal": 1,
            "check": {"type": "log_staleness", "log_file": str(log_file), "max_age_seconds": MAX_AGE},
            "heal": {"action": "run_script", "command": f"date +%s.%N >> {stamps}", "shell": True},
        },
        *[
            {
                "name": f"hung-{i}",
                "interval_seconds": 1,
                "min_failures_to_heal": 1,
                "check_timeout_seconds": 1,
                "check": {"type": "http_health", "url": silent.url(f"/health/{i}")},
            }
            for i in range(HUNG)
        ],
    ]
    config = tmp_path / "horus.json"
    config.write_text(json.dumps({"defaults": {"start_jitter_seconds": 0.5}, "monitors": monitors}))
    log = EventLog(tmp_path / "events.jsonl")
    keep_writing = threading.Event()
    keep_writing.set()

    def writer() -> None:
        while keep_writing.is_set():
            log_file.write_text("scan\n")
            time.sleep(0.2)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        # The hung monitors fail and start opening their incidents (each with a snapshot whose HTTP request
        # will never be answered): let the log go stale in the middle of it.
        wait_until_sync(lambda: len(log.named("check.failed")) >= HUNG / 2, timeout=30)
        keep_writing.clear()
        thread.join()
        went_stale = log_file.stat().st_mtime + MAX_AGE
        wait_until_sync(lambda: stamps.exists() and stamps.read_text().strip(), timeout=60)
        late = float(stamps.read_text().split()[0]) - went_stale
    finally:
        keep_writing.clear()
        assert stop_daemon(daemon, timeout=60) == 0
        silent.close()
    assert late < 1.5, f"healed {late:.2f} s after the deadline"
