"""The program a job runs, found with the job's own PATH, not the shell's.

launchd gives a job /usr/bin:/bin:/usr/sbin:/sbin unless its plist sets PATH, so ``python3`` from Homebrew
(or a script whose ``#!/usr/bin/env python3`` needs it) works in a terminal and fails under launchd.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from horus.doctor.findings import PROBLEM, Finding
from horus.doctor.jobs import SYSTEMD_DEFAULT_PATH, Job
from horus.doctor.reading import Unreadable, read_bounded
from horus.doctor.subject import Host, Subject

KIND = "executables"

# A #! line is at most a few hundred bytes (Linux reads 256, macOS 512).
SHEBANG_BYTES = 512
SCRIPT_MAX_BYTES = 1024 * 1024


def audit(subject: Subject, host: Host) -> list[Finding]:
    findings: list[Finding] = []
    for job in subject.jobs:
        if not job.argv:
            setting = "ProgramArguments" if job.manager == "launchd" else "ExecStart="
            findings.append(
                Finding(
                    PROBLEM,
                    subject.monitor,
                    KIND,
                    f"its {job.noun} {job.path} names no program to run",
                    f"set {setting} to the service's command line",
                )
            )
            continue
        findings.extend(_program(subject, job, host))
    return findings


def _program(subject: Subject, job: Job, host: Host) -> list[Finding]:
    program = job.argv[0]
    where = "ProgramArguments[0]" if job.manager == "launchd" else "ExecStart="
    # systemd looks an ExecStart= program up in its own fixed path whatever Environment=PATH says; the
    # job's PATH matters for what that program then runs (a #!/usr/bin/env line, its own children).
    lookup_path = job.effective_path if job.manager == "launchd" else job.exec_search_path or SYSTEMD_DEFAULT_PATH
    resolved = _resolve(program, lookup_path, job.working_directory)
    if resolved is None:
        return [_not_found(subject, job, program, where, lookup_path, host)]
    problem = _not_runnable(resolved)
    if problem:
        return [
            Finding(
                PROBLEM,
                subject.monitor,
                KIND,
                f"its {job.noun}'s {where} {resolved} {problem}",
                f"make it executable (chmod +x {resolved}) or point {where} at the right program",
            )
        ]
    findings: list[Finding] = []
    interpreter = _env_interpreter(resolved, job.argv)
    if interpreter is not None and _resolve(interpreter, job.effective_path, None) is None:
        findings.append(
            _not_found(subject, job, interpreter, f"the interpreter of {resolved}", job.effective_path, host)
        )
    return findings


def _not_found(subject: Subject, job: Job, program: str, where: str, lookup_path: str, host: Host) -> Finding:
    if job.manager == "systemd" and where == "ExecStart=":
        searched = f"systemd's search path for ExecStart= ({lookup_path}), which Environment=PATH does not change"
        if job.exec_search_path:
            searched = f"its unit's ExecSearchPath= ({lookup_path})"
    elif job.path_value:
        searched = f"the PATH its {job.noun} sets ({lookup_path})"
    else:
        manager = "launchd" if job.manager == "launchd" else "systemd"
        searched = f"{manager}'s default PATH ({lookup_path}), since its {job.noun} sets none"
    on_shell = None if "/" in program else shutil.which(program, path=host.shell_path)
    if on_shell is not None:
        directory = str(Path(on_shell).parent)
        if job.manager == "launchd":
            how = f"add {directory} to PATH under EnvironmentVariables in {job.path}"
        elif where == "ExecStart=":
            how = f"set ExecSearchPath={directory}:{lookup_path} under [Service] in {job.path} (systemd 250 or later)"
        else:
            how = f"add Environment=PATH={directory}:{job.effective_path} under [Service] in {job.path}"
        return Finding(
            PROBLEM,
            subject.monitor,
            KIND,
            f"{where} {program} is not on {searched}, only on your shell's PATH (at {on_shell})",
            f"use the full path {on_shell}, or {how}",
        )
    return Finding(
        PROBLEM,
        subject.monitor,
        KIND,
        f"{where} {program} of its {job.noun} is found nowhere (looked on {searched})",
        f"install it, or give its full path in {job.path}",
    )


def _resolve(program: str, search_path: str, working_directory: Path | None) -> Path | None:
    if "/" in program:
        path = Path(program)
        if not path.is_absolute():
            path = (working_directory or Path("/")) / path
        try:
            return path if path.exists() else None
        except OSError:
            return None
    for directory in search_path.split(os.pathsep):
        if not directory:
            continue
        candidate = Path(directory) / program
        try:
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        except OSError:
            continue
    return None


def _not_runnable(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if not info.st_mode & 0o111 or not os.access(path, os.X_OK):
        return "is not executable"
    return None


def _env_interpreter(program: Path, argv: list[str]) -> str | None:
    """The program that ``/usr/bin/env NAME`` looks up on the job's PATH: in ``argv`` itself, or in the
    ``#!`` line of the script ``program`` is."""
    if program.name == "env":
        rest = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
        return rest[0] if rest and "/" not in rest[0] else None
    try:
        # A compiled program is megabytes and starts with no #!; only a script is small enough to be read.
        head = read_bounded(program, SCRIPT_MAX_BYTES)[:SHEBANG_BYTES]
    except Unreadable:
        return None
    if not head.startswith("#!"):
        return None
    words = head[2:].splitlines()[0].split() if head[2:] else []
    if len(words) >= 2 and Path(words[0]).name == "env":
        rest = [w for w in words[1:] if not w.startswith("-")]
        return rest[0] if rest and "/" not in rest[0] else None
    return None
