"""The SDK is tested from its source tree, whether or not horus-sdk is pip-installed in this venv."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SDK_SRC = Path(__file__).resolve().parents[2] / "sdk" / "src"

if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Any]:
    """A runner over the fake instance (tests/sdk/test_runner.py's Service), stopped at the end, with any
    instance it left killed by pid and start time."""
    # Imported here: at this module's top, horus_sdk is not on sys.path yet.
    from horus_sdk.runner_files import process_start_token
    from tests.sdk.test_runner import Service

    svc = Service(tmp_path)
    yield svc
    if svc.proc is not None and svc.proc.poll() is None:
        svc.stop()
    for role in ("active", "standby"):
        record = svc.state().get(role) or {}
        if record.get("pid") and process_start_token(record["pid"]) == record.get("process_start"):
            os.kill(record["pid"], signal.SIGKILL)
