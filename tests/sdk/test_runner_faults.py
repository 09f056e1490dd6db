"""horus_sdk.runner under faults from the user's side: odd source trees, odd request files, odd arguments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from horus_sdk.runner_files import process_start_token
from tests.sdk.test_runner import Service, wait_until


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        svc.stop()
    for role in ("active", "standby"):
        record = svc.state().get(role) or {}
        if record.get("pid") and process_start_token(record["pid"]) == record.get("process_start"):
            os.kill(record["pid"], 9)


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
