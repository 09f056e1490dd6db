"""Horus as a launchd job: a LaunchAgent (``--user``) or a LaunchDaemon (``--system``).

The plist is written with :mod:`plistlib` and read back with it before anything is written. It keeps Horus
alive (``KeepAlive``, ``RunAtLoad``, a ``ThrottleInterval`` between restarts) and carries what launchd does not
pass on: the ``PATH`` and the config's variables, captured at install.
"""

from __future__ import annotations

import os
import plistlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from horus.host_service import (
    ManagerState,
    Scope,
    ServiceFile,
    ServiceSpec,
    Step,
    refuse_uncarriable_paths,
    run_tool,
    tcc_protected,
)

__all__ = ["DEFAULT_LABEL", "Launchd", "parse_print"]

DEFAULT_LABEL = "dev.horus.daemon"
THROTTLE_INTERVAL_SECONDS = 10
EXIT_TIMEOUT_SECONDS = 30

_STATE = re.compile(r"^\s*state = (.+)$", re.MULTILINE)
_PID = re.compile(r"^\s*pid = (\d+)$", re.MULTILINE)
_LAST_EXIT = re.compile(r"^\s*last exit (?:code|reason) = (.+)$", re.MULTILINE)


def parse_print(output: str) -> tuple[str | None, int | None, str | None]:
    """``launchctl print``'s state, pid and last exit, each None when it does not say."""
    state = _STATE.search(output)
    pid = _PID.search(output)
    last_exit = _LAST_EXIT.search(output)
    return (
        state.group(1).strip() if state else None,
        int(pid.group(1)) if pid else None,
        last_exit.group(1).strip() if last_exit else None,
    )


class Launchd:
    kind = "launchd"
    validated_with = "read back with plistlib"

    def __init__(self, scope: Scope, name: str | None, home: Path) -> None:
        self.scope = scope
        self.name = name or DEFAULT_LABEL
        self.home = home

    @property
    def domain(self) -> str:
        return "system" if self.scope == "system" else f"gui/{os.getuid()}"

    def unit_label(self) -> str:
        return f"{self.domain}/{self.name}"

    @property
    def plist_path(self) -> Path:
        folder = Path("/Library/LaunchDaemons") if self.scope == "system" else self.home / "Library" / "LaunchAgents"
        return folder / f"{self.name}.plist"

    @property
    def log_directory(self) -> Path:
        return Path("/var/log/horus") if self.scope == "system" else self.home / "Library" / "Logs" / "horus"

    def installed_paths(self) -> list[Path]:
        return [self.plist_path]

    def directories(self, spec: ServiceSpec) -> list[Path]:
        # launchd opens the log files itself but does not create their directory: without it the job
        # starts with no output at all.
        return [self.log_directory]

    def job(self, spec: ServiceSpec, environment: dict[str, str]) -> dict[str, Any]:
        return {
            "Label": self.name,
            "ProgramArguments": list(spec.argv),
            "RunAtLoad": True,
            "KeepAlive": True,
            "ThrottleInterval": THROTTLE_INTERVAL_SECONDS,
            "ExitTimeOut": EXIT_TIMEOUT_SECONDS,
            "EnvironmentVariables": environment,
            "WorkingDirectory": str(spec.working_directory),
            "StandardOutPath": str(self.log_directory / f"{self.name}.out.log"),
            "StandardErrorPath": str(self.log_directory / f"{self.name}.err.log"),
            "ProcessType": "Standard",
        }

    def files(self, spec: ServiceSpec) -> list[ServiceFile]:
        job = self.job(spec, spec.environment.variables)
        refuse_uncarriable_paths(spec, "plist")
        content = plistlib.dumps(job, fmt=plistlib.FMT_XML, sort_keys=True)
        if plistlib.loads(content) != job:
            raise ValueError(f"the plist for {self.name} does not read back as it was written")
        shown = plistlib.dumps(self.job(spec, spec.environment.masked()), fmt=plistlib.FMT_XML, sort_keys=True)
        return [ServiceFile(self.plist_path, content, shown.decode())]

    def wrote(self, content: bytes) -> bool:
        # A plist has no room for a "written by" line: Horus's is one whose job is `horus run` (the venv's
        # horus script, or python -m horus).
        try:
            document = plistlib.loads(content)
        except (plistlib.InvalidFileException, ExpatError, ValueError):
            return False
        argv = document.get("ProgramArguments") if isinstance(document, dict) else None
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or "run" not in argv:
            return False
        return Path(argv[0]).name == "horus" or argv[1:3] == ["-m", "horus"]

    def masked(self, content: bytes) -> str:
        try:
            document = plistlib.loads(content)
        except (plistlib.InvalidFileException, ExpatError, ValueError):
            return "(not a plist that can be read)"
        environment = document.get("EnvironmentVariables")
        if isinstance(environment, dict):
            document["EnvironmentVariables"] = {k: v if k == "PATH" else "***" for k, v in environment.items()}
        return plistlib.dumps(document, fmt=plistlib.FMT_XML, sort_keys=True).decode()

    def validate(self, files: Sequence[ServiceFile]) -> str:
        for file in files:
            document = plistlib.loads(file.content)
            missing = [key for key in ("Label", "ProgramArguments") if key not in document]
            if missing:
                raise ValueError(f"{file.path}: the plist has no {', '.join(missing)}")
        return "the plist was read back with plistlib"

    def install_commands(self, before: ManagerState | None) -> list[Step]:
        steps = []
        if before is None or before.loaded:
            # A loaded job keeps its old plist until it is booted out, and bootstrap refuses a loaded job.
            steps.append(Step(("launchctl", "bootout", self.unit_label()), "if the job is loaded now"))
        # Enabled before bootstrap, not after: a job once disabled stays disabled across bootouts, and launchd
        # refuses to bootstrap a disabled job ("Service is disabled").
        steps.append(Step(("launchctl", "enable", self.unit_label())))
        steps.append(Step(("launchctl", "bootstrap", self.domain, str(self.plist_path))))
        steps.append(Step(("launchctl", "kickstart", self.unit_label())))
        return steps

    def uninstall_commands(self, before: ManagerState | None) -> list[Step]:
        if before is not None and not before.loaded:
            return []
        return [Step(("launchctl", "bootout", self.unit_label()), "if the job is loaded now")]

    def after_removal_commands(self) -> list[Step]:
        return []

    def state(self) -> ManagerState:
        result = run_tool(["launchctl", "print", self.unit_label()])
        if not result.ok:
            return ManagerState(False, False, None, f"launchctl print {self.unit_label()} says: {result.said()}")
        state, pid, last_exit = parse_print(result.stdout)
        running = state == "running" and pid is not None
        detail = f"launchd says state = {state or 'unknown'}"
        if last_exit and not running:
            detail += f", last exit {last_exit}"
        return ManagerState(True, running, pid, detail)

    def logs_hint(self) -> str:
        return f"its output is in {self.log_directory}"

    def notes(self, spec: ServiceSpec) -> list[str]:
        notes = []
        for what, path in (("the config", spec.config_path), ("Horus itself", Path(spec.argv[0]))):
            if tcc_protected(path, spec.home):
                notes.append(
                    f"{what} is under {path.relative_to(spec.home).parts[0]} ({path}): macOS's privacy protection "
                    "(TCC) may deny a launchd job that folder; move it elsewhere or grant Full Disk Access"
                )
        return notes
