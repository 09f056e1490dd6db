"""``status.json`` in the state dir: what the running daemon last knew about each monitor, for
``horus status``. Written atomically every few seconds and when the daemon stops; read by anyone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from horus_sdk.formats import write_json_atomic

__all__ = ["STATUS_NAME", "read_status", "write_status"]

STATUS_NAME = "status.json"


def write_status(state_dir: Path, snapshot: dict[str, Any]) -> None:
    write_json_atomic(state_dir / STATUS_NAME, snapshot, fsync=False)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
