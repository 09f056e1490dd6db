"""What one audit looks at: a :class:`Subject` (a monitor, its service's files and jobs) on a :class:`Host`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from horus.doctor.files import ServiceFiles
from horus.doctor.findings import PROBLEM, WARNING, Finding
from horus.doctor.jobs import Job, load_plist, load_unit
from horus.doctor.reading import Unreadable

__all__ = ["Host", "Subject"]

ENV_FILE_NAMES = (".env",)
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")


@dataclass(frozen=True)
class Host:
    """The machine the audit runs on: a seam, so a test can ask what a Mac would say."""

    platform: str = sys.platform
    euid: int = field(default_factory=os.geteuid)
    # The PATH of the shell the doctor runs in: Horus's own when it runs the heals, and what a job lacks.
    shell_path: str = field(default_factory=lambda: os.environ.get("PATH", os.defpath))

    @property
    def is_mac(self) -> bool:
        return self.platform == "darwin"


@dataclass
class Subject:
    """A monitor as the doctor sees it."""

    monitor: str
    service: ServiceFiles | None = None
    checks: Sequence[Any] = ()  # the check and verify options
    heals: Sequence[Any] = ()  # the heal, or every step of the escalation
    evidence: Any = None
    jobs: list[Job] = field(default_factory=list)
    # Findings made while reading the jobs: a plist or unit that is missing or cannot be read.
    reading_findings: list[Finding] = field(default_factory=list)

    @classmethod
    def of_monitor(cls, monitor: Any) -> Subject:
        """The subject for a MonitorConfig, jobs loaded."""
        heals = list(monitor.escalation or ([monitor.heal] if monitor.heal is not None else []))
        checks = [c for c in (monitor.check, monitor.verify) if c is not None]
        subject = cls(monitor.name, monitor.service, checks, heals, monitor.evidence)
        subject.load_jobs()
        return subject

    def load_jobs(self) -> None:
        if self.service is None:
            return
        for path, loader in ((self.service.plist, load_plist), (self.service.unit, load_unit)):
            if path is None:
                continue
            try:
                self.jobs.append(loader(path))
            except Unreadable as exc:
                noun = "plist" if loader is load_plist else "unit"
                if str(exc) == "it does not exist":
                    # Often a default (from the monitor's label or unit) that is not where the job lives.
                    severity = WARNING
                    found = f"its {noun} {path} does not exist, so the service's job was not audited"
                    change = f"set service.{noun} to the file the job is installed from, or install the job"
                else:
                    severity = PROBLEM
                    found = f"its {noun} {path} cannot be read: {exc}"
                    change = f"fix or regenerate the {noun}; until then the service cannot be audited, nor started"
                self.reading_findings.append(Finding(severity, self.monitor, "job", found, change))

    @property
    def source_dir(self) -> Path | None:
        return self.service.source_dir if self.service else None

    @property
    def env_file(self) -> Path | None:
        if self.service is None:
            return None
        if self.service.env_file is not None:
            return self.service.env_file
        return _first_file(self.service.source_dir, ENV_FILE_NAMES)

    @property
    def compose_file(self) -> Path | None:
        if self.service is None:
            return None
        if self.service.compose_file is not None:
            return self.service.compose_file
        return _first_file(self.service.source_dir, COMPOSE_FILE_NAMES)


def _first_file(directory: Path | None, names: Sequence[str]) -> Path | None:
    if directory is None:
        return None
    for name in names:
        candidate = directory / name
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue
    return None
