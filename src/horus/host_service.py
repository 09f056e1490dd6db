"""Horus installed as a service of the host's own service manager (launchd or systemd).

What both managers share lives here: what the service runs (:class:`ServiceSpec`: this venv's ``horus run``
with an absolute config, the ``PATH`` and the config's ``${VAR}``s captured now, because a job inherits
neither from the shell), the files an install writes (:class:`ServiceFile`, written atomically, an existing
different file kept as ``.bak``), running the manager's tool (:func:`run_tool`), and the manager protocol
(:class:`ServiceManager`) that :mod:`horus.host_service_launchd` and :mod:`horus.host_service_systemd`
implement. The command line is :mod:`horus.cli_service`.

An install is a plan first (files with their full content, then commands), so ``--dry-run`` can print exactly
what a real install would write and run, and a real install cannot do something the dry run did not show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from horus.config.loader import referenced_variables
from horus.errors import ServiceToolError
from horus.files import FileTooLarge, NotARegularFile, fsync_directory, read_regular_file, write_file_atomically

__all__ = [
    "DEFAULT_PATH",
    "TCC_FOLDERS",
    "CapturedEnvironment",
    "ManagerState",
    "Scope",
    "ServiceFile",
    "ServiceManager",
    "ServiceSpec",
    "ServiceToolError",
    "Step",
    "ToolResult",
    "WriteOutcome",
    "capture_environment",
    "horus_command",
    "read_service_file",
    "refuse_uncarriable_paths",
    "remove_service_file",
    "run_tool",
    "service_path",
    "tcc_protected",
    "uncarriable",
    "write_service_file",
    "write_service_files",
]

Scope = Literal["user", "system"]

# A job started by launchd or systemd gets a bare PATH; this is what it gets when the shell had none either.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# macOS's privacy framework (TCC) silently denies a launchd job these folders of the user's home.
TCC_FOLDERS = ("Desktop", "Documents", "Downloads")
# A management tool answers in well under a second; this only bounds one that hangs.
TOOL_TIMEOUT_SECONDS = 60.0
# A plist or a unit is a few KiB; a bigger file where one belongs is something else, not to be backed up.
SERVICE_FILE_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CapturedEnvironment:
    """The environment the service gets: ``PATH`` and the config's variables that are set now.

    ``missing``: variables the config refers to with a default (``${VAR:-x}``) that are not set now, so the
    service will use the default. (One without a default that is not set stops the config from loading.)
    ``unusable``: variables set now whose value no unit or plist can carry (see :func:`uncarriable`).
    ``dropped_path_entries``: the relative entries of this shell's PATH, which a service cannot use.
    """

    variables: dict[str, str]
    captured: tuple[str, ...]
    missing: tuple[str, ...]
    unusable: tuple[str, ...] = ()
    dropped_path_entries: tuple[str, ...] = ()

    def masked(self) -> dict[str, str]:
        """The variables with every value but PATH's shown as ``***``: they are often tokens."""
        return {name: value if name == "PATH" else "***" for name, value in self.variables.items()}


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs and with what, whichever manager runs it."""

    scope: Scope
    horus: tuple[str, ...]
    argv: tuple[str, ...]
    config_path: Path
    working_directory: Path
    environment: CapturedEnvironment
    home: Path
    # systemd's WatchdogSec, from the config's self_watch (SelfWatchSettings.systemd_watchdog_seconds).
    watchdog_seconds: int


@dataclass(frozen=True)
class ServiceFile:
    """A file an install writes: its full content, and the same content fit to be shown (secrets masked)."""

    path: Path
    content: bytes
    shown: str


@dataclass(frozen=True)
class ToolResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def said(self) -> str:
        """The tool's last words, for a sentence about why a step failed."""
        lines = [line.strip() for line in (self.stderr + "\n" + self.stdout).splitlines() if line.strip()]
        return " / ".join(lines[-2:]) or "no output"


@dataclass(frozen=True)
class Step:
    """A command of an install or uninstall; ``only_if`` says when a dry run cannot know if it will run."""

    argv: tuple[str, ...]
    only_if: str | None = None


@dataclass(frozen=True)
class ManagerState:
    """What the manager says about the service now."""

    loaded: bool
    running: bool
    pid: int | None
    detail: str
    failed: bool = False


@dataclass(frozen=True)
class WriteOutcome:
    path: Path
    change: Literal["created", "unchanged", "replaced"]
    backup: Path | None = None
    previous: bytes | None = None  # the file's content before, None when there was none


class ServiceManager(Protocol):
    """One init system: the files an install writes and the commands that load, start, stop and ask."""

    kind: str
    validated_with: str
    scope: Scope
    name: str

    def unit_label(self) -> str:
        """How the manager's own commands name the service (``gui/501/dev.horus.daemon``, ``horus.service``)."""
        ...

    def files(self, spec: ServiceSpec) -> list[ServiceFile]:
        """Render every file of the service; raises :class:`ValueError` if one does not validate."""
        ...

    def installed_paths(self) -> list[Path]:
        """Every file an install writes, wherever the name and scope put them."""
        ...

    def directories(self, spec: ServiceSpec) -> list[Path]:
        """Directories the service needs before it starts (its log directory)."""
        ...

    def wrote(self, content: bytes) -> bool:
        """Whether ``content`` is a file `horus service install` wrote (uninstall removes nothing else)."""
        ...

    def masked(self, content: bytes) -> str:
        """A file's text fit to be shown: the values of its environment but PATH masked (old tokens too)."""
        ...

    def validate(self, files: Sequence[ServiceFile]) -> str:
        """Validate the rendered files with the manager's own tool where there is one: a sentence saying how.
        Raises :class:`ValueError` when they do not pass."""
        ...

    def install_commands(self, before: ManagerState | None) -> list[Step]:
        """The commands that load and start the service; ``before`` is its state now (None in a dry run)."""
        ...

    def uninstall_commands(self, before: ManagerState | None) -> list[Step]: ...

    def after_removal_commands(self) -> list[Step]:
        """Commands to run once the files are gone (systemd's daemon-reload)."""
        ...

    def state(self) -> ManagerState: ...

    def logs_hint(self) -> str:
        """Where to look when the service does not run, as a sentence fragment."""
        ...

    def notes(self, spec: ServiceSpec) -> list[str]:
        """Warnings about the host that would keep this service from working (lingering, TCC)."""
        ...


def capture_environment(config_text: str, environ: Mapping[str, str]) -> CapturedEnvironment:
    """``PATH`` (a job does not inherit the shell's) and each variable the config refers to that is set now."""
    path, dropped = service_path(environ.get("PATH") or DEFAULT_PATH)
    variables = {"PATH": path}
    captured, missing, unusable = ["PATH"], [], []
    for name, has_default in sorted(referenced_variables(config_text).items()):
        value = environ.get(name)
        if value is None:
            if has_default:
                missing.append(name)
            continue
        if name == "PATH":
            continue
        if uncarriable(value) is not None:
            unusable.append(name)
            continue
        variables[name] = value
        captured.append(name)
    return CapturedEnvironment(variables, tuple(captured), tuple(missing), tuple(unusable), dropped)


def uncarriable(value: str) -> str | None:
    """What in ``value`` no unit line or plist string can hold, in words, or None when both can hold it: a line
    break (it would end the unit's line), another control character but a tab (XML 1.0 cannot write one), or
    bytes that are not UTF-8 (a service file is UTF-8)."""
    if "\n" in value or "\r" in value:
        return "a line break"
    if any(ord(character) < 0x20 and character != "\t" for character in value):
        return "a control character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "bytes that are not UTF-8"
    return None


def refuse_uncarriable_paths(spec: ServiceSpec, noun: str) -> None:
    """Raise ValueError, in words, if a path the service file names is one it cannot carry (:func:`uncarriable`).
    The captured variables were sifted already; what is left are the user's own paths."""
    named = [("the config's path", str(spec.config_path)), ("the working directory", str(spec.working_directory))]
    named += [(f"the argument {argument!r} of horus run", argument) for argument in spec.argv]
    for what, value in named:
        why = uncarriable(value)
        if why is not None:
            raise ValueError(f"{what} holds {why}, which a {noun} cannot carry; move it to a path without one")


def service_path(path: str) -> tuple[str, tuple[str, ...]]:
    """The shell's PATH fit for a service, and the entries left out: each absolute directory once, in order.

    A relative entry (``.``, ``bin``, ``~/bin``, an empty one) would be looked up from the service's working
    directory, not where the shell was, so it is left out rather than carried along to mean something else;
    so is one that a service file cannot carry (:func:`uncarriable`).
    """
    kept: list[str] = []
    dropped: list[str] = []
    for entry in path.split(os.pathsep):
        if not os.path.isabs(entry) or uncarriable(entry) is not None:
            dropped.append(entry or "(empty)")
        elif entry not in kept:
            kept.append(entry)
    return os.pathsep.join(kept) or DEFAULT_PATH, tuple(dropped)


def horus_command() -> list[str]:
    """How to start this installation of Horus: its venv's ``horus`` script, else ``python -m horus``."""
    python = Path(os.path.abspath(sys.executable))
    script = python.parent / "horus"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-m", "horus"]


def tcc_protected(path: Path, home: Path) -> bool:
    """Whether ``path`` is in a home folder that macOS's privacy framework keeps from launchd jobs."""
    try:
        relative = path.relative_to(home)
    except ValueError:
        return False
    return bool(relative.parts) and relative.parts[0] in TCC_FOLDERS


def run_tool(argv: Sequence[str], *, timeout: float = TOOL_TIMEOUT_SECONDS) -> ToolResult:
    """Run a service manager's tool, found on PATH; a tool that is missing or hangs is a ServiceToolError."""
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError as exc:
        raise ServiceToolError(f"{argv[0]} is not on PATH, so this service manager cannot be used here") from exc
    except PermissionError as exc:
        raise ServiceToolError(f"{argv[0]} cannot be run: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceToolError(f"{' '.join(argv)} did not answer within {timeout:.0f} s") from exc
    return ToolResult(tuple(argv), completed.returncode, completed.stdout, completed.stderr)


def write_service_files(files: Sequence[ServiceFile], *, mode: int = 0o600) -> list[WriteOutcome]:
    """Write every file of an install, or leave them all as they were.

    Each path is looked at before any is written: one that is not a regular file (a FIFO, a directory, a
    symlink) or is far too big to be a service file stops the install with a ServiceToolError, nothing
    written. A write that fails (a full disk) undoes the files written before it, then raises a
    ServiceToolError naming the file. See :func:`write_service_file` for how one file is written.
    """
    previous = [read_service_file(file.path) for file in files]
    outcomes: list[WriteOutcome] = []
    for file, old in zip(files, previous, strict=True):
        try:
            outcomes.append(_write(file.path, file.content, old, mode))
        except _CannotWrite as failure:
            if not outcomes:
                after = "nothing was changed"
            elif _undo(outcomes):
                after = "the files written before it were put back as they were"
            else:
                after = f"{', '.join(str(o.path) for o in outcomes)} could not all be put back as they were"
            raise ServiceToolError(f"cannot write {failure.path}: {failure.reason}; {after}") from failure
    return outcomes


def write_service_file(path: Path, content: bytes, *, mode: int = 0o600) -> WriteOutcome:
    """Write ``content`` at ``path`` atomically (temp file, fsync, rename, fsync of the directory).

    An existing file with other content is first kept as ``<path>.bak`` (written the same way). The mode is
    0600 by default because service files carry the captured variables, which are often tokens.
    """
    return write_service_files([ServiceFile(path, content, "")], mode=mode)[0]


def _write(path: Path, content: bytes, old: bytes | None, mode: int) -> WriteOutcome:
    if old == content:
        return WriteOutcome(path, "unchanged", previous=old)
    backup = None
    if old is not None:
        backup = path.with_name(path.name + ".bak")
        _write_atomically(backup, old, 0o600)
    _write_atomically(path, content, mode)
    return WriteOutcome(path, "created" if old is None else "replaced", backup, previous=old)


class _CannotWrite(Exception):
    """A file of an install (or its backup) could not be written: which, and why in words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _write_atomically(path: Path, content: bytes, mode: int) -> None:
    try:
        write_file_atomically(path, content, mode=mode)
    except OSError as exc:
        # The error's own filename may be the temporary file beside ``path``: the user knows ``path``.
        raise _CannotWrite(path, exc.strerror or str(exc)) from exc


def _undo(outcomes: Sequence[WriteOutcome]) -> bool:
    """Put back what ``outcomes`` changed; whether all of it was. A rename and an unlink need no free space."""
    undone = True
    for outcome in outcomes:
        try:
            if outcome.change == "created":
                os.unlink(outcome.path)
            elif outcome.change == "replaced" and outcome.backup is not None:
                os.replace(outcome.backup, outcome.path)
            fsync_directory(outcome.path.parent)
        except OSError:
            undone = False
    return undone


def read_service_file(path: Path) -> bytes | None:
    """The service file at ``path`` (None: there is none), read without following a link or blocking on a
    FIFO; one that is not a regular file, or too big to be one, is a ServiceToolError."""
    try:
        return read_regular_file(path, max_bytes=SERVICE_FILE_MAX_BYTES, follow_links=False)
    except FileNotFoundError:
        return None
    except NotARegularFile:
        raise ServiceToolError(_not_a_service_file(path)) from None
    except FileTooLarge as exc:
        raise ServiceToolError(
            f"{path} exists and is {exc.size} bytes, too big to be a service file Horus wrote; move it away"
        ) from None
    except OSError as exc:
        raise ServiceToolError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _not_a_service_file(path: Path) -> str:
    # A FIFO, a directory or a link where the service file belongs is not ours to replace or remove.
    return f"{path} exists and is not a regular file, so not a service file Horus wrote; move it away"


def remove_service_file(path: Path) -> bool:
    """Remove ``path`` if it is there (durably); whether it was."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True
