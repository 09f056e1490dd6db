"""Paths under the folders macOS's privacy framework (TCC) guards: a launchd job is refused access to them
unless its program was granted it, and the refusal looks like a missing file or a silent hang."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from horus.doctor.findings import PROBLEM, WARNING, Finding
from horus.doctor.paths import home_of, used_paths
from horus.doctor.subject import Host, Subject

KIND = "privacy"

# Relative to a home directory; Library/Mobile Documents is iCloud Drive.
PROTECTED = {
    "Documents": "~/Documents",
    "Downloads": "~/Downloads",
    "Desktop": "~/Desktop",
    "Library/Mobile Documents": "iCloud Drive",
}


def audit(subject: Subject, host: Host) -> list[Finding]:
    findings = []
    for used in used_paths(subject):
        user = used.job.user if used.job is not None else None
        homes = {h for h in (home_of(user), home_of(None)) if h is not None}
        folder = _protected_folder(used.path, homes)
        if folder is None:
            continue
        if host.is_mac:
            severity, consequence = PROBLEM, "macOS blocks a launchd job from it unless its program was granted access"
        else:
            severity, consequence = WARNING, "if this moves to a Mac, macOS will block a launchd job from it"
        findings.append(
            Finding(
                severity,
                subject.monitor,
                KIND,
                f"{used.where} {used.path} is under {folder}, a privacy-protected folder: {consequence}",
                "move it out (to ~/Services, ~/Library/Application Support or /usr/local/var, say), "
                "or grant the program Full Disk Access in System Settings > Privacy & Security",
            )
        )
    return findings


def _protected_folder(path: Path, homes: set[Path]) -> str | None:
    candidates = [path]
    with contextlib.suppress(OSError, ValueError):  # a link into a protected folder is under it too
        candidates.append(Path(os.path.realpath(path)))
    for candidate in candidates:
        for home in homes:
            for relative, shown in PROTECTED.items():
                if candidate.is_relative_to(home / relative):
                    return shown
    return None
