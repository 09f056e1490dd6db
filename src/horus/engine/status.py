"""``status.json`` in the state dir: what the running daemon last knew about each monitor, for
``horus status``. Written atomically every few seconds and when the daemon stops; read by anyone."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["STATUS_NAME", "read_status", "write_status"]

STATUS_NAME = "status.json"


def write_status(state_dir: Path, header: dict[str, Any], monitors: Iterable[dict[str, Any]]) -> None:
    """Write ``header`` plus a ``monitors`` list, one row at a time (10,000 rows are never all held in
    memory at once), atomically: a reader sees the old file or the new one."""
    target = state_dir / STATUS_NAME
    tmp = target.with_name(f".{STATUS_NAME}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({**header, "monitors": []}, default=str)[:-2])
            for index, row in enumerate(monitors):
                f.write("," if index else "")
                f.write(json.dumps(row, default=str))
            f.write("]}")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
