"""The paths a service uses, as named by its job and by its monitor: shared by the privacy and writable audits."""

from __future__ import annotations

import pwd
from dataclasses import dataclass
from pathlib import Path

from horus.doctor.jobs import Job
from horus.doctor.subject import Subject

__all__ = ["UsedPath", "home_of", "used_paths"]

# The file a check type watches that the service itself writes: its log, its heartbeat.
WRITTEN_BY_THE_SERVICE = {"log_staleness": "log_file", "heartbeat": "path"}


@dataclass(frozen=True)
class UsedPath:
    path: Path
    where: str  # "its plist's StandardOutPath", "its check's log_file"
    written: bool  # the service writes it (a log, a heartbeat), rather than only reading it
    job: Job | None = None  # the job that names it; None for the monitor's own settings


def used_paths(subject: Subject) -> list[UsedPath]:
    found: list[UsedPath] = []
    for job in subject.jobs:
        setting = "ProgramArguments" if job.manager == "launchd" else "ExecStart="
        for argument in job.argv:
            if argument.startswith(("/", "~/")):
                found.append(UsedPath(Path(argument).expanduser(), f"its {job.noun}'s {setting}", False, job))
        if job.working_directory is not None:
            found.append(UsedPath(job.working_directory, f"its {job.noun}'s WorkingDirectory", False, job))
        for key, path in job.log_paths:
            found.append(UsedPath(path, f"its {job.noun}'s {key}", True, job))
    for options in subject.checks:
        attribute = WRITTEN_BY_THE_SERVICE.get(options.type)
        value = getattr(options, attribute, None) if attribute else None
        if isinstance(value, Path):
            found.append(UsedPath(value, f"its {options.type} check's {attribute}", True))
    evidence = subject.evidence
    for log in getattr(evidence, "logs", None) or ():
        found.append(UsedPath(log, "its evidence logs", True))
    if subject.source_dir is not None:
        found.append(UsedPath(subject.source_dir, "its source_dir", False))
    unique: dict[tuple[Path, str], UsedPath] = {}
    for used in found:
        unique.setdefault((used.path, used.where), used)
    return list(unique.values())


def home_of(user: str | None) -> Path | None:
    """The home directory of ``user``, or of the user running the doctor when None."""
    try:
        return Path(pwd.getpwnam(user).pw_dir) if user else Path.home()
    except (KeyError, RuntimeError):
        return None
