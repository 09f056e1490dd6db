"""Notifications from a real daemon to a real webhook on loopback (Apprise's json:// channel): grouping,
recovered only when announced, reminders, and a channel that is down or hangs holding up nothing."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.notify.receivers import WebhookReceiver
from tests.support import HORUS_RUN, EventLog, SilentServer, spawn_daemon, stop_daemon, wait_until_sync

HORUS = HORUS_RUN[:-1]  # python -m horus


def missing_file_monitor(name: str, path, **extra) -> dict:
    return {
        "name": name,
        "interval_seconds": 0.2,
        "min_failures_to_heal": 2,
        "startup_grace_seconds": 0,
        "check": {"type": "file_exists", "path": str(path)},
        **extra,
    }


def write_config(path, monitors, channel_url: str, **settings) -> None:
    path.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": monitors,
                "notify": [
                    {"name": "hook", "url": channel_url, "events": ["healed", "failing", "recovered", "reminder"]}
                ],
                "notify_settings": {"group_seconds": 1, "send_timeout_seconds": 1, **settings},
            }
        )
    )


@pytest.mark.slow
def test_monitors_failing_together_make_one_message_and_recovered_follows_only_what_was_announced(tmp_path):
    receiver = WebhookReceiver().start()
    healed_file = tmp_path / "bot-output"
    monitors = [missing_file_monitor(f"feed-{i}", tmp_path / f"feed-{i}") for i in range(3)]
    monitors.append(
        missing_file_monitor("bot", healed_file, heal={"action": "run_script", "command": ["touch", str(healed_file)]})
    )
    config = tmp_path / "horus.json"
    write_config(config, monitors, receiver.json_url())
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: receiver.messages, timeout=20)
        first = receiver.messages[0]
        # One message for four problems that began together.
        for name in ("feed-0", "feed-1", "feed-2", "bot"):
            assert name in first["title"] + first["message"], first
        assert "bot healed (run_script)" in first["message"]
        wait_until_sync(lambda: "bot recovered" in receiver.text(), timeout=20)
        assert "feed-0 recovered" not in receiver.text()
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
        receiver.close()
    assert receiver.text().count("bot healed") == 1, "nothing is sent twice"
    state = ["-c", str(config), "--state-dir", str(tmp_path / "state")]
    listed = subprocess.run([*HORUS, "incidents", *state, "--json"], capture_output=True, text=True, timeout=60)
    [bot] = [i for i in json.loads(listed.stdout) if i["monitor"] == "bot"]
    shown = subprocess.run([*HORUS, "incident", *state, str(bot["id"])], capture_output=True, text=True, timeout=60)
    assert "notified" in shown.stdout and "healed: queued for hook" in shown.stdout, "the timeline says who was told"


@pytest.mark.slow
def test_a_problem_that_lasts_is_reminded_at_the_interval_not_on_every_check(tmp_path):
    receiver = WebhookReceiver().start()
    config = tmp_path / "horus.json"
    write_config(config, [missing_file_monitor("feed", tmp_path / "feed")], receiver.json_url(), remind_every_seconds=2)
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: "feed still failing" in receiver.text(), timeout=20)
        checks_before = len(log.named("check.failed"))
        reminders_before = receiver.text().count("still failing")
        wait_until_sync(lambda: len(log.named("check.failed")) >= checks_before + 15, timeout=20)
        reminders = receiver.text().count("still failing") - reminders_before
        assert reminders <= 3, f"{reminders} reminders over 15 checks (about 3 s): not one per check"
        assert receiver.text().count("feed is failing") == 1
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
        receiver.close()


@pytest.mark.slow
def test_a_hanging_channel_delays_no_check_or_heal_and_its_events_survive_kill_9(tmp_path):
    hung = SilentServer()  # accepts the webhook's connection and never answers
    port = hung.port
    healed_file = tmp_path / "bot-output"
    present = tmp_path / "present"
    present.touch()
    monitors = [missing_file_monitor(f"fine-{i}", present) for i in range(10)]
    monitors.append(
        missing_file_monitor("bot", healed_file, heal={"action": "run_script", "command": ["touch", str(healed_file)]})
    )
    config = tmp_path / "horus.json"
    write_config(config, monitors, f"json://127.0.0.1:{port}/hook")
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path, "--log-level", "debug")
    try:
        # The heal happens on time although the channel hangs on every delivery.
        wait_until_sync(healed_file.exists, timeout=15)
        wait_until_sync(lambda: log.named("notify.failed"), timeout=20)
        ok_before = len(log.named("check.ok"))
        wait_until_sync(lambda: len(log.named("check.ok")) >= ok_before + 100, timeout=10)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        hung.close()
    assert not log.named("notify.delivered")

    # The channel works again, on the same port; a new Horus delivers what the killed one could not.
    receiver = WebhookReceiver(port).start()
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: "bot healed (run_script)" in receiver.text(), timeout=30)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
        receiver.close()
    assert receiver.text().count("bot healed (run_script)") == 1, "delivered once, not once per attempt"


@pytest.mark.slow
def test_the_daily_digest_goes_out_once_at_its_time_and_horus_digest_prints_it(tmp_path):
    receiver = WebhookReceiver().start()
    healed_file = tmp_path / "bot-output"
    config = tmp_path / "horus.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [
                    missing_file_monitor(
                        "bot", healed_file, heal={"action": "run_script", "command": ["touch", str(healed_file)]}
                    ),
                    missing_file_monitor("feed", tmp_path / "feed"),
                ],
                "notify": [{"name": "morning", "url": receiver.json_url(), "events": ["digest"]}],
                # Midnight has always passed today: the digest is due as soon as Horus starts.
                "notify_settings": {"digest_at": "00:00", "group_seconds": 0},
            }
        )
    )
    state = tmp_path / "state"
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: "Horus digest for" in receiver.text(), timeout=20)
        wait_until_sync(healed_file.exists, timeout=10)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
    # A restart the same day does not send it again.
    daemon = spawn_daemon(config, state, log.path)
    try:
        wait_until_sync(lambda: len(log.named("horus.started")) == 2, timeout=20)
        wait_until_sync(lambda: len(log.named("check.failed")) >= 10, timeout=20)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
        receiver.close()
    assert receiver.text().count("Horus digest for") == 1
    assert len(log.named("digest.sent")) == 1

    printed = subprocess.run(
        [*HORUS, "digest", "-c", str(config), "--state-dir", str(state)], capture_output=True, text=True, timeout=60
    )
    assert printed.returncode == 0
    assert "## Heals (1: 1 ok, 0 failed)" in printed.stdout
    assert "bot: run_script ok" in printed.stdout
    assert "- feed: unhealthy" in printed.stdout


@pytest.mark.slow
def test_a_heal_that_did_not_bring_the_service_back_is_announced_as_not_recovered(tmp_path):
    receiver = WebhookReceiver().start()
    config = tmp_path / "horus.json"
    monitor = missing_file_monitor("bot", tmp_path / "never", heal={"action": "run_script", "command": ["true"]})
    monitor["verify_within_seconds"] = 1
    config.write_text(
        json.dumps(
            {
                "defaults": {"start_jitter_seconds": 0},
                "monitors": [monitor],
                "notify": [{"name": "hook", "url": receiver.json_url(), "events": ["healed", "not_recovered"]}],
                "notify_settings": {"group_seconds": 0},
            }
        )
    )
    log = EventLog(tmp_path / "events.jsonl")
    daemon = spawn_daemon(config, tmp_path / "state", log.path)
    try:
        wait_until_sync(lambda: "bot not recovered after its heal" in receiver.text(), timeout=20)
    finally:
        assert stop_daemon(daemon, timeout=20) == 0
        receiver.close()
    assert "bot healed (run_script)" in receiver.text(), "the heal itself was announced first"
    assert "has not recovered within 1 s: never does not exist" in receiver.text()
