"""Log and state paths the job's user cannot write: a missing directory, or no permission.

launchd opens StandardOutPath and StandardErrorPath before the program starts and creates no directory for
them; a service whose log directory is missing or not its user's runs blind, or not at all.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from horus.doctor.findings import PROBLEM, Finding
from horus.doctor.paths import UsedPath, used_paths
from horus.doctor.subject import Host, Subject

KIND = "writable"


@dataclass(frozen=True)
class Writer:
    name: str
    uid: int
    gids: frozenset[int]
    is_me: bool


def audit(subject: Subject, host: Host) -> list[Finding]:
    findings = []
    for used in used_paths(subject):
        if not used.written:
            continue
        job = used.job or (subject.jobs[0] if subject.jobs else None)
        writer = _writer(job.user if job is not None else None, host)
        if writer is None:
            noun = job.noun if job is not None else "job"
            findings.append(
                Finding(
                    PROBLEM,
                    subject.monitor,
                    KIND,
                    f"its {noun} runs as user {job.user if job else '?'}, who does not exist on this machine",
                    "create the user or correct UserName / User=",
                )
            )
            break
        problem = _why_not_writable(used, writer, host)
        if problem is not None:
            findings.append(Finding(PROBLEM, subject.monitor, KIND, *problem))
    return findings


def _why_not_writable(used: UsedPath, writer: Writer, host: Host) -> tuple[str, str] | None:
    path = used.path
    try:
        is_link = path.is_symlink()
    except OSError:
        is_link = False
    if is_link:
        # launchd and systemd open the file the link leads to: that is what has to be writable.
        try:
            path = path.resolve(strict=True)
        except FileNotFoundError:
            path = Path(os.path.realpath(used.path))
            if not path.parent.is_dir():
                return (
                    f"{used.where} {used.path} is a link to {path}, which is in {path.parent}, which does not exist",
                    f"create it (mkdir -p {path.parent}) or point the link or the setting at a file that can be",
                )
        except (RuntimeError, OSError):  # RuntimeError: Python before 3.13 on a loop
            return (
                f"{used.where} {used.path} is a symbolic link that leads back to itself, so nothing can be written "
                "through it",
                f"remove the link {used.path}, or point it at the log file",
            )
    try:
        exists = path.exists()
    except OSError:
        exists = False
    if exists:
        if path.is_dir():
            return None  # a crash or work dir: the files in it are what is written
        if _may_write(path, writer, host):
            return None
        return (
            f"{used.where} {path} cannot be written by {writer.name}, the user the service runs as",
            f"give it to that user (chown {writer.name} {path}) or make it writable for them",
        )
    parent = path.parent
    if not parent.exists():
        return (
            f"{used.where} {path} is in {parent}, which does not exist (and neither launchd nor systemd creates it)",
            f"create it: mkdir -p {parent}" + (f" && chown {writer.name} {parent}" if not writer.is_me else ""),
        )
    if not _may_write(parent, writer, host, directory=True):
        return (
            f"{used.where} {path} does not exist yet and {writer.name}, the user the service runs as, "
            f"cannot create it in {parent}",
            f"create it and give it to that user (touch {path} && chown {writer.name} {path}), or choose a "
            "directory the user owns",
        )
    return None


def _writer(user: str | None, host: Host) -> Writer | None:
    if user is None or (user.isdigit() and int(user) == host.euid):
        return Writer(
            pwd.getpwuid(host.euid).pw_name if _has_name(host.euid) else str(host.euid),
            host.euid,
            frozenset({os.getegid(), *os.getgroups()}),
            True,
        )
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        return None
    gids = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Writer(entry.pw_name, entry.pw_uid, gids, entry.pw_uid == host.euid)


def _has_name(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _may_write(path: Path, writer: Writer, host: Host, *, directory: bool = False) -> bool:
    if writer.is_me:
        # The kernel's answer, ACLs and read-only mounts included.
        return os.access(path, os.W_OK | (os.X_OK if directory else 0))
    if writer.uid == 0:
        return True
    try:
        info = path.stat()
    except OSError:
        return False
    need = stat.S_IWOTH | (stat.S_IXOTH if directory else 0)
    if info.st_uid == writer.uid:
        shift = 6
    elif info.st_gid in writer.gids:
        shift = 3
    else:
        shift = 0
    return (info.st_mode >> shift) & need == need
