"""Where a monitor's service keeps what the doctor reads: its source, .env, compose file, plist or unit.

Imported by the config models, so it imports nothing of Horus beyond the shared field types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from horus.config.types import NAME_MAX, AbsolutePath

__all__ = ["ServiceFiles", "fill_service_files"]

# Where launchd and systemd keep jobs, in the order a default is looked for; the first is used when none exists.
LAUNCH_AGENT_DIRS = ("~/Library/LaunchAgents", "/Library/LaunchAgents")
LAUNCH_DAEMON_DIRS = ("/Library/LaunchDaemons",)
SYSTEM_UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
USER_UNIT_DIRS = ("~/.config/systemd/user", "/etc/systemd/user", "/usr/lib/systemd/user")


class ServiceFiles(BaseModel):
    """Where the service's own files are, for `horus doctor` and the doctor check. Every one is optional:
    ``source_dir`` defaults to the monitor's ``work_tree``, ``plist`` to the plist of the launchd label and
    ``unit`` to the unit file of the systemd unit that the monitor's check or heal names; ``env_file`` and
    ``compose_file`` to a ``.env`` and a compose file in ``source_dir``, when there is one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_dir: AbsolutePath | None = None
    env_file: AbsolutePath | None = None
    compose_file: AbsolutePath | None = None
    # The service of the compose file this monitor's service was; by default its only one, or the one named
    # like the monitor.
    compose_service: str | None = Field(None, min_length=1)
    plist: AbsolutePath | None = None
    unit: AbsolutePath | None = None


def fill_service_files(data: Any) -> Any:
    """A monitor's raw config with ``service`` given its defaults (from ``work_tree`` and the launchd or
    systemd check and heal), also copied into each ``doctor`` check that has no ``service`` of its own.

    Runs before validation, so anything of an unexpected shape is left for the validation to report.
    """
    if not isinstance(data, Mapping):
        return data
    given = data.get("service")
    if given is not None and not isinstance(given, Mapping):
        return data
    filled: dict[str, Any] = dict(given or {})
    work_tree = data.get("work_tree")
    if isinstance(work_tree, str) and "source_dir" not in filled:
        filled["source_dir"] = work_tree
    blocks = [data.get("check"), data.get("verify"), data.get("heal")]
    if isinstance(data.get("escalation"), list):
        blocks.extend(data["escalation"])
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type") or block.get("action")
        if kind in ("launchd_service", "launchctl_restart") and "plist" not in filled:
            label, domain = block.get("label"), block.get("domain")
            if _plain_name(label, ".plist"):
                system = domain == "system"
                filled["plist"] = _first_existing(LAUNCH_DAEMON_DIRS if system else LAUNCH_AGENT_DIRS, f"{label}.plist")
        if kind in ("systemd_service", "systemctl_restart") and "unit" not in filled:
            unit, user = block.get("unit"), block.get("user") is True
            if isinstance(unit, str) and _plain_name(unit, "" if "." in unit else ".service"):
                name = unit if "." in unit else f"{unit}.service"
                filled["unit"] = _first_existing(USER_UNIT_DIRS if user else SYSTEM_UNIT_DIRS, name)
    if not filled:
        return data
    out = dict(data)
    out["service"] = filled
    for key in ("check", "verify"):
        block = out.get(key)
        if isinstance(block, Mapping) and block.get("type") == "doctor" and "service" not in block:
            out[key] = {**block, "service": filled}
    return out


def _plain_name(name: Any, suffix: str) -> bool:
    """Whether ``name`` + ``suffix`` can be a file name (an odd label stays a check's business, not a path's)."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name or name.startswith("-"):
        return False
    return len(os.fsencode(name + suffix)) <= NAME_MAX


def _first_existing(directories: tuple[str, ...], name: str) -> str:
    candidates = [Path(directory).expanduser() / name for directory in directories]
    for candidate in candidates:
        try:
            if candidate.exists():
                return str(candidate)
        except OSError:
            continue
    return str(candidates[0])
