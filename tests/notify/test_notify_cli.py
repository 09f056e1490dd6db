"""`horus notify-test`, run as a user runs it: a real process, a real config, real receivers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.notify.receivers import WebhookReceiver
from tests.support import SilentServer, free_port


def horus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "horus", *args], capture_output=True, text=True, timeout=60)


def write_config(tmp_path: Path, notify: list[dict], **settings: float) -> Path:
    path = tmp_path / "horus.json"
    monitor = {"name": "bot", "check": {"type": "file_exists", "path": str(tmp_path)}}
    path.write_text(json.dumps({"monitors": [monitor], "notify": notify, "notify_settings": settings}))
    return path


def test_notify_test_reports_each_channel_and_exits_1_when_one_fails(tmp_path, silent_server: SilentServer):
    with WebhookReceiver() as receiver:
        config = write_config(
            tmp_path,
            [
                {"name": "good", "url": receiver.json_url("/hook/SECRET123")},
                {"name": "dead", "url": f"json://127.0.0.1:{free_port()}/hook/SECRET123"},
                {"name": "hung", "url": f"json://127.0.0.1:{silent_server.port}/hook/SECRET123"},
            ],
            send_timeout_seconds=1,
        )
        proc = horus("notify-test", "-c", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "ok  good",
        "FAILED dead: json:// delivery failed: the service could not be reached or refused the message",
        "FAILED hung: no answer within 1 s",
    ]
    assert "SECRET123" not in proc.stdout + proc.stderr
    [message] = receiver.messages
    assert message["title"] == "Horus test notification"
    assert socket.gethostname() in message["message"]


def test_notify_test_exits_0_when_every_channel_works(tmp_path):
    out = tmp_path / "got.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    config = write_config(tmp_path, [{"name": "pager", "command": [sys.executable, "-c", script]}])
    proc = horus("notify-test", "-c", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "ok  pager\n"
    [event] = json.loads(out.read_text())
    assert event["kind"] == "test" and event["title"] == "Horus test notification"


def test_notify_test_without_channels_says_so_and_exits_2(tmp_path):
    proc = horus("notify-test", "-c", str(write_config(tmp_path, [])))
    assert proc.returncode == 2
    assert "no notification channels" in proc.stderr
