"""What the blind set's stand-in upstreams share: a mode file the scenario rewrites, and the ready file.

A stub is started as ``python <stub>.py MODE_FILE ... READY_FILE``: it listens on a free port of 127.0.0.1,
writes that port to READY_FILE (the scenario waits for it), and reads MODE_FILE whenever it must decide how
to answer, so a scenario changes the world by writing one word (or a JSON object) there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def mode(path: Path, default: str = "ok") -> str:
    """The word in ``path`` (``default`` when it is missing or empty)."""
    try:
        return path.read_text().strip() or default
    except OSError:
        return default


def settings(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when it is missing, empty or being rewritten)."""
    try:
        value = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def ready(path: Path, port: int) -> None:
    """Say the port, atomically: the scenario reads the file as soon as it is not empty."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(str(port))
    os.replace(partial, path)
