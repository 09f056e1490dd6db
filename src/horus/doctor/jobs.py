"""What a launchd plist or a systemd unit makes of a service: the :class:`Job` the doctor audits.

Read from the files themselves (plistlib for a plist, a small reader for the unit and its drop-ins), not
from the running manager: the files are what the next start will use.
"""

from __future__ import annotations

import plistlib
import pwd
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from horus.doctor.reading import Unreadable, read_bounded, read_bounded_bytes

__all__ = [
    "LAUNCHD_DEFAULT_PATH",
    "SYSTEMD_DEFAULT_PATH",
    "Job",
    "dotenv_keys",
    "load_plist",
    "load_unit",
]

# The PATH a launchd job gets when its plist sets none (launchd's _PATH_STDPATH).
LAUNCHD_DEFAULT_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
# The PATH systemd gives services, and searches for an ExecStart= program named without a slash.
SYSTEMD_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How a shell, a .env or Environment= name a variable.
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ExecStart= prefixes that change how systemd runs the command, not which program it is.
_EXEC_PREFIXES = "@-:+!|"
_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=")


@dataclass
class Job:
    """The parts of a service's plist or unit that the doctor audits."""

    manager: Literal["launchd", "systemd"]
    path: Path  # the plist or unit file
    argv: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    # Keys from EnvironmentFile= files, with the file they came from.
    environment_from_files: dict[str, Path] = field(default_factory=dict)
    # EnvironmentFile= files that cannot be read: (path, why, optional with "-").
    unreadable_environment_files: list[tuple[Path, str, bool]] = field(default_factory=list)
    working_directory: Path | None = None
    # (the setting, the path): StandardOutPath, StandardErrorPath, StandardOutput=file:...
    log_paths: list[tuple[str, Path]] = field(default_factory=list)
    user: str | None = None  # UserName / User=; None: the user who installs the job
    # ExecSearchPath= (systemd 250+): where a bare ExecStart= program is looked for instead of systemd's default.
    exec_search_path: str | None = None
    # Whether the manager starts the service again when it exits: the plist's KeepAlive (True, False, a dict
    # of conditions, or None when absent), the unit's Restart= (None when absent, which means "no").
    keep_alive: object = None
    restart: str | None = None
    system: bool = False  # a LaunchDaemon or a system unit, rather than a user's agent or --user unit

    @property
    def noun(self) -> str:
        return "plist" if self.manager == "launchd" else "unit"

    @property
    def path_value(self) -> str | None:
        """The PATH the job sets for itself, if it does."""
        return self.environment.get("PATH")

    @property
    def effective_path(self) -> str:
        default = LAUNCHD_DEFAULT_PATH if self.manager == "launchd" else SYSTEMD_DEFAULT_PATH
        return self.path_value or default

    def sets(self, name: str) -> bool:
        return name in self.environment or name in self.environment_from_files

    def how_to_set(self, name: str) -> str:
        if self.manager == "launchd":
            return f"add it under EnvironmentVariables in {self.path}"
        return f"add Environment={name}=... under [Service] in {self.path}, or put it in an EnvironmentFile="


def load_plist(path: Path) -> Job:
    """The job a launchd plist describes; raises Unreadable when it cannot be read or is not a job."""
    # As bytes: a plist may be binary (plutil -convert binary1), which no text decoding leaves whole.
    content = read_bounded_bytes(path)
    try:
        data = plistlib.loads(content)
    except Exception as exc:  # plistlib raises whatever its XML or binary parser met (ExpatError, KeyError...)
        raise Unreadable(f"it is not a valid plist ({exc})") from None
    if not isinstance(data, dict):
        raise Unreadable("it does not hold a dictionary, so it describes no job")
    job = Job("launchd", path, system=str(path).startswith(("/Library/LaunchDaemons", "/System/")))
    arguments = data.get("ProgramArguments")
    program = data.get("Program")
    if isinstance(arguments, list) and all(isinstance(a, str) for a in arguments):
        job.argv = list(arguments)
    if isinstance(program, str) and program:
        job.argv = [program, *job.argv[1:]]
    env = data.get("EnvironmentVariables")
    if isinstance(env, dict):
        # Scalars only: a binary plist may refer to one array from itself over and over, and str() of it
        # would spell out billions of items. launchd takes strings here anyway.
        job.environment = {
            k: str(v) for k, v in env.items() if isinstance(k, str) and isinstance(v, str | int | float | bool)
        }
    if isinstance(data.get("WorkingDirectory"), str):
        job.working_directory = Path(data["WorkingDirectory"])
    for key in ("StandardOutPath", "StandardErrorPath"):
        if isinstance(data.get(key), str) and data[key]:
            job.log_paths.append((key, Path(data[key])))
    job.keep_alive = data.get("KeepAlive")
    if isinstance(data.get("UserName"), str) and data["UserName"]:
        job.user = data["UserName"]
    return job


def load_unit(path: Path) -> Job:
    """The job a systemd unit file (and its ``NAME.d/*.conf`` drop-ins) describes; raises Unreadable."""
    settings: list[tuple[str, str]] = _service_settings(read_bounded(path))
    drop_ins = path.parent / f"{path.name}.d"
    try:
        confs = sorted(drop_ins.glob("*.conf")) if drop_ins.is_dir() else []
    except OSError:
        confs = []
    for conf in confs[:32]:
        try:
            settings.extend(_service_settings(read_bounded(conf)))
        except Unreadable:
            continue
    job = Job("systemd", path, system="/systemd/user" not in str(path) and "/.config/" not in str(path))
    for key, value in settings:
        if key == "User":
            job.user = value or None
    home = _home_of(job.user)
    for key, raw in settings:
        value = _specifiers(raw, home)
        if key == "ExecStart":
            if not value:
                job.argv = []  # an empty ExecStart= resets the list, as in a drop-in that replaces it
                continue
            try:
                words = shlex.split(value)
            except ValueError:
                words = value.split()
            if words:
                words[0] = words[0].lstrip(_EXEC_PREFIXES)
                job.argv = words
        elif key == "Environment":
            if not value:
                job.environment.clear()
                continue
            try:
                assignments = shlex.split(value)
            except ValueError:
                assignments = value.split()
            for assignment in assignments:
                name, sep, setting = assignment.partition("=")
                if sep and VARIABLE_NAME.fullmatch(name):
                    job.environment[name] = setting
        elif key == "EnvironmentFile" and value:
            optional = value.startswith("-")
            env_path = Path(value.lstrip("-"))
            try:
                for name in dotenv_keys(read_bounded(env_path)):
                    job.environment_from_files.setdefault(name, env_path)
            except Unreadable as exc:
                job.unreadable_environment_files.append((env_path, str(exc), optional))
        elif key == "Restart":
            job.restart = value or None
        elif key == "ExecSearchPath":
            job.exec_search_path = ":".join(value.split()) or None
        elif key == "WorkingDirectory" and value and value != "~":
            job.working_directory = Path(value.lstrip("-"))
        elif key in ("StandardOutput", "StandardError"):
            kind, _, target = value.partition(":")
            if kind in ("file", "append", "truncate") and target:
                job.log_paths.append((f"{key}={kind}:", Path(target)))
    return job


def dotenv_keys(text: str) -> list[str]:
    """The variable names a .env (or an EnvironmentFile=) sets, in order."""
    keys = []
    for line in text.splitlines():
        if line.lstrip().startswith(("#", ";")):
            continue
        found = _DOTENV_LINE.match(line)
        if found and VARIABLE_NAME.fullmatch(found.group(1)):
            keys.append(found.group(1))
    return keys


def _service_settings(text: str) -> list[tuple[str, str]]:
    """``(key, value)`` of each setting in the [Service] section, continuation lines joined."""
    settings: list[tuple[str, str]] = []
    section = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def _specifiers(value: str, home: str | None) -> str:
    """The few systemd specifiers that matter to paths (%h home, %% a percent sign)."""
    if "%" not in value:
        return value
    return re.sub(r"%[h%]", lambda m: "%" if m.group() == "%%" else (home or m.group()), value)


def _home_of(user: str | None) -> str | None:
    try:
        return pwd.getpwnam(user).pw_dir if user else str(Path.home())
    except (KeyError, RuntimeError):
        return None
