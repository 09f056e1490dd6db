"""Heals that can never run here: their tool is missing from Horus's PATH, their program cannot be found or
executed, or they need rights Horus does not have. Such a monitor fails, and fails again, unhealed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from horus.doctor.findings import PROBLEM, WARNING, Finding, Severity
from horus.doctor.subject import Host, Subject
from horus.processes import uid_of, user_name

KIND = "heals"

# The tool each heal runs, and the system it belongs to.
TOOLS = {
    "launchctl_restart": ("launchctl", "launchd, macOS's service manager"),
    "systemctl_restart": ("systemctl", "systemd, Linux's service manager"),
    "docker_restart": ("docker", "Docker"),
}


def audit(subject: Subject, host: Host) -> list[Finding]:
    findings: list[Finding] = []
    for index, heal in enumerate(subject.heals):
        where = "heal" if len(subject.heals) == 1 else f"escalation step {index + 1}"
        for found, change, severity in _why_it_cannot_run(heal, host):
            findings.append(Finding(severity, subject.monitor, KIND, f"its {where} ({heal.action}) {found}", change))
    return findings


def _why_it_cannot_run(heal: Any, host: Host) -> list[tuple[str, str, Severity]]:
    action = heal.action
    reasons: list[tuple[str, str, Severity]] = []
    if action in TOOLS:
        tool, system = TOOLS[action]
        if shutil.which(tool, path=host.shell_path) is None:
            elsewhere = ""
            if action == "launchctl_restart" and not host.is_mac:
                elsewhere = f" (this machine runs {host.platform}, not macOS)"
            if action == "systemctl_restart" and host.is_mac:
                elsewhere = " (this is macOS, which has no systemd)"
            reasons.append(
                (
                    f"can never run: {tool} is not on Horus's PATH{elsewhere}",
                    f"use the heal of the service manager that runs the service here, or install {system}",
                    PROBLEM,
                )
            )
            return reasons
    if action == "launchctl_restart" and heal.domain == "system" and host.euid != 0:
        reasons.append(
            (
                "restarts a job in launchd's system domain, which needs root, and Horus runs as "
                f"{user_name(host.euid)}",
                "run Horus as root (a LaunchDaemon), or install the service as a LaunchAgent and drop domain: system",
                PROBLEM,
            )
        )
    if action == "systemctl_restart" and not heal.user and host.euid != 0:
        reasons.append(
            (
                f"restarts the system unit {heal.unit}, which needs root or a polkit rule, and Horus runs as "
                f"{user_name(host.euid)}",
                "run Horus as root, allow the restart with a polkit rule, or make it a user unit (user: true)",
                WARNING,
            )
        )
    if action == "run_script":
        reasons.extend(_script(heal, host))
    if action == "kill_process" and heal.user is not None and host.euid != 0:
        try:
            uid = uid_of(heal.user)
        except LookupError:
            uid = None
        if uid is not None and uid != host.euid:
            reasons.append(
                (
                    f"signals processes of {user_name(uid)}, and Horus runs as {user_name(host.euid)}, who may not",
                    f"run Horus as {user_name(uid)} or as root, or heal through the service manager instead",
                    PROBLEM,
                )
            )
    return reasons


def _script(heal: Any, host: Host) -> list[tuple[str, str, Severity]]:
    program = "/bin/sh" if heal.shell else heal.command[0]
    if "/" in program:
        path = Path(program) if Path(program).is_absolute() else Path(heal.cwd or "/") / program
        found: str | None = str(path) if path.exists() else None
    else:
        found = shutil.which(program, path=host.shell_path)
        if found is None:
            return [
                (
                    f"can never run: its program {program} is not on Horus's PATH",
                    "give its full path in command, or install it",
                    PROBLEM,
                )
            ]
    if found is None:
        return [(f"can never run: its program {program} does not exist", "correct command, or create it", PROBLEM)]
    if not os.path.isfile(found) or not os.access(found, os.X_OK):
        return [
            (
                f"can never run: its program {found} is not an executable file",
                f"make it executable (chmod +x {found}) or correct command",
                PROBLEM,
            )
        ]
    return []
