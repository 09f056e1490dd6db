"""Seed 001 at small scale: a content pipeline that stopped producing after hitting a rate limit. Horus
heals it, confirms recovery by its output resuming, writes the post-mortem, recognises the pattern the
second time, and the memory commands find it all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import HORUS_RUN, EventLog, spawn_daemon, stop_daemon, wait_until_sync

HORUS = HORUS_RUN[:-1]  # python -m horus

PIPELINE = """
import pathlib, sys, time
out, log, seconds = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), float(sys.argv[3])
out.mkdir(exist_ok=True)
end, n = time.time() + seconds, 0
while time.time() < end:
    n += 1
    with log.open("a") as f:
        f.write(f"2026-11-21T03:17:{n % 60:02d} processed batch {n}\\n")
    (out / f"article-{time.time_ns()}.json").write_text("{}")
    time.sleep(0.2)
"""

RATE_LIMITED_TAIL = [
    "2026-11-21T01:14:02 processed batch 8812",
    "2026-11-21T01:14:05 GET https://api.example.com/v1/generate -> HTTP 429 Too Many Requests (retry 1)",
    "2026-11-21T01:14:35 GET https://api.example.com/v1/generate -> HTTP 429 Too Many Requests (retry 2)",
    "2026-11-21T01:15:35 GET https://api.example.com/v1/generate -> HTTP 429 Too Many Requests (retry 3)",
]


def go_stale_after_rate_limit(log: Path) -> None:
    """The pipeline's log ends in 429s and then nothing: written long ago."""
    log.write_text("\n".join(RATE_LIMITED_TAIL) + "\n")
    old = time.time() - 7200
    os.utime(log, (old, old))


def horus(config: Path, state: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HORUS, *command.split(), "-c", str(config), "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def field(markdown: str, name: str) -> str:
    match = re.search(rf"^\*\*{re.escape(name)}:\*\* (.*)$", markdown, re.MULTILINE)
    assert match, f"no {name!r} field in:\n{markdown}"
    return match.group(1)


@pytest.mark.slow
def test_an_incident_from_detection_to_post_mortem_and_its_recurrence(tmp_path):
    out, log, state = tmp_path / "out", tmp_path / "pipeline.log", tmp_path / "state"
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    go_stale_after_rate_limit(log)
    start = f"setsid {sys.executable} {script} {out} {log} 4 >/dev/null 2>&1 < /dev/null &"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "sentinel": {"reopen_within_seconds": 1},
                "monitors": [
                    {
                        "name": "content-pipeline",
                        "interval_seconds": 0.2,
                        "min_failures_to_heal": 2,
                        "startup_grace_seconds": 1,
                        "heal_cooldown_seconds": 0,
                        "verify_within_seconds": 15,
                        "check": {"type": "log_staleness", "log_file": str(log), "max_age_seconds": 1},
                        "heal": {"action": "run_script", "command": start, "shell": True},
                        "verify": {
                            "type": "artifact_growth",
                            "glob": {"directory": str(out), "pattern": "*.json"},
                            "min_growth": 3,
                            "window_seconds": 5,
                        },
                    }
                ],
            }
        )
    )
    out.mkdir()
    events = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, events.path)
    try:
        wait_until_sync(lambda: events.named("incident.closed"), timeout=40)
        [opened] = events.named("incident.opened")
        assert opened["probable_cause"].startswith("probable: rate limit")

        postmortems = list((state / "postmortems").glob("*.md"))
        assert len(postmortems) == 1
        markdown = postmortems[0].read_text()
        assert field(markdown, "Service") == "content-pipeline"
        assert re.fullmatch(
            r"\d\d:\d\d UTC — pipeline\.log last written .* ago, limit 1 s", field(markdown, "Failure detected")
        )
        # Nothing matched a process (the monitor names none): the state is the log's, two hours silent.
        assert field(markdown, "Process state at detection") == "Log pipeline.log last written 2 h ago"
        assert field(markdown, "Root cause (probable)").lower().startswith("probable: rate limit")
        assert "HTTP 429 Too Many Requests" in markdown, "the evidence line is quoted"
        assert "run_script" in field(markdown, "Recovery action")
        confirmed = field(markdown, "Recovery confirmed")
        assert "UTC" in confirmed and "new files" in confirmed, confirmed
        assert field(markdown, "Prior incidents matching this pattern").startswith("none")
        assert "backoff" in field(markdown, "Recommendation").lower()
        assert "## Timeline" in markdown and "## Timings" in markdown

        # The same failure again, once the first pipeline run is over.
        wait_until_sync(lambda: not _pipeline_running(script), timeout=20)
        go_stale_after_rate_limit(log)
        wait_until_sync(lambda: len(events.named("incident.closed")) == 2, timeout=40)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
        subprocess.run(["pkill", "-f", str(script)], check=False)

    listed = json.loads(horus(config, state, "incidents", "--json").stdout)
    assert [(i["id"], i["status"], i["recovered"]) for i in listed] == [(2, "closed", True), (1, "closed", True)]
    assert listed[0]["fingerprint"] == listed[1]["fingerprint"], "recognised as the same failure"
    second = horus(config, state, "postmortem", "2")
    assert second.returncode == 0
    assert field(second.stdout, "Prior incidents matching this pattern").startswith("1 in last 90 days")

    found = horus(config, state, "kb search", "rate limit")
    assert found.returncode == 0
    assert re.search(r"^#[12] .*content-pipeline", found.stdout, re.MULTILINE), found.stdout
    assert horus(config, state, "kb search", "segfault in the gpu driver").returncode == 1

    brief = horus(config, state, "brief", "content-pipeline")
    assert brief.returncode == 0
    assert "rate limit" in brief.stdout.lower() and "backoff" in brief.stdout.lower()

    shown = horus(config, state, "incident", "1")
    assert "recovery_confirmed" in shown.stdout and "snapshot_taken" in shown.stdout


def _pipeline_running(script: Path) -> bool:
    return subprocess.run(["pgrep", "-f", str(script)], capture_output=True, check=False).returncode == 0
