"""Where Horus keeps what must survive a restart."""

from __future__ import annotations

import os
from pathlib import Path

from horus.store.state import HealRecord, Instant, StateDirLock, StateStore, StoredMonitorState, prepare_state_dir

__all__ = [
    "HealRecord",
    "Instant",
    "StateDirLock",
    "StateStore",
    "StoredMonitorState",
    "prepare_state_dir",
    "resolve_state_dir",
]


def resolve_state_dir(cli_value: Path | None, config_value: Path | None) -> Path:
    """``--state-dir``, else the config's ``state_dir``, else ``$HORUS_STATE_DIR``, else the XDG state dir."""
    if cli_value is not None:
        return Path(os.path.expanduser(cli_value))
    if config_value is not None:
        return config_value
    if env := os.environ.get("HORUS_STATE_DIR"):
        return Path(os.path.expanduser(env))
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "horus"
