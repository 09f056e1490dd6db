"""Field types shared by check and heal options, so every plugin validates the same way."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationInfo, field_validator

from horus.processes import validate_pattern

__all__ = [
    "AbsolutePath",
    "CommandLine",
    "ExpandedPath",
    "PositiveSeconds",
    "ProcessPatternOptions",
    "SignalName",
    "require_locatable_program",
    "require_shell_for_strings",
    "resolve_signal",
]


def _expand_user(path: Path) -> Path:
    return Path(os.path.expanduser(path))


ExpandedPath = Annotated[Path, AfterValidator(_expand_user)]
"""A filesystem path; a leading ``~`` is expanded to the home directory. Prefer :data:`AbsolutePath`."""

# Linux's limit on one name in a path (macOS has the same): a longer name cannot exist on any filesystem.
NAME_MAX = 255


def _absolute(path: Path) -> Path:
    text = str(path)
    if "\0" in text:
        raise ValueError("must not contain a NUL character")
    if not path.is_absolute():
        if text.startswith("~"):
            raise ValueError(f"{text.split('/')[0]}: no such user")
        # A daemon under launchd or systemd runs in "/", so a relative path would silently name another file.
        raise ValueError("must be an absolute path (or start with ~)")
    longest = max(path.parts, key=lambda part: len(os.fsencode(part)))
    size = len(os.fsencode(longest))
    if size > NAME_MAX:
        # Shortened: the whole name would push the rest of the message off the screen.
        shown = f"{longest[:20]}…{longest[-10:]}"
        raise ValueError(f"a name in the path is {size} bytes, the system allows {NAME_MAX}: got {shown!r}")
    return path


AbsolutePath = Annotated[Path, AfterValidator(_expand_user), AfterValidator(_absolute)]
"""An absolute filesystem path, or one under ``~`` (expanded to the home directory); anything else is refused,
because what a relative path names depends on the directory Horus was started in."""

PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A duration in seconds, greater than zero."""


def resolve_signal(value: str | int) -> signal.Signals:
    """``"SIGTERM"``, ``"TERM"`` or ``15`` to :class:`signal.Signals`; ValueError when unknown."""
    if isinstance(value, int):
        try:
            return signal.Signals(value)
        except ValueError:
            raise ValueError(f"unknown signal number {value}") from None
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name]
    except KeyError:
        raise ValueError(f"unknown signal {value!r}; use a name such as SIGTERM, SIGINT or SIGKILL") from None


def _signal_name(value: object) -> object:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return resolve_signal(value).name
    return value


SignalName = Annotated[str, BeforeValidator(_signal_name)]
"""A signal, written ``SIGTERM``, ``TERM`` or ``15``; stored as its canonical name."""


def _check_command(value: object) -> object:
    if isinstance(value, list):
        if not value:
            raise ValueError("argv must not be empty")
        if not all(isinstance(part, str) for part in value):
            raise ValueError("every argv element must be a string")
    elif isinstance(value, str) and not value.strip():
        raise ValueError("command must not be empty")
    return value


CommandLine = Annotated[list[str] | str, BeforeValidator(_check_command)]
"""An argv list, or a shell string (allowed only together with ``shell: true``)."""


def require_shell_for_strings(command: list[str] | str, shell: bool) -> None:
    """The one rule for every ``command`` + ``shell`` pair; raises ValueError when they disagree.

    A string split on spaces would only guess at quoting, so running one through a shell must be
    an explicit choice.
    """
    if isinstance(command, str) and not shell:
        raise ValueError(
            "command is a single string: give an argv list such as "
            '["/usr/local/bin/healthcheck", "--quick"], or set shell: true to run it with /bin/sh'
        )
    if isinstance(command, list) and shell:
        raise ValueError("shell: true runs one string with /bin/sh, so command must be a string, not a list")


def require_locatable_program(command: list[str] | str, cwd: Path | None) -> None:
    """The rule for an argv's program; raises ValueError when it depends on where Horus was started.

    A program named with a slash is found from the working directory, which for a daemon under launchd
    or systemd is "/"; so unless ``cwd`` says where it is, it must be absolute. A bare name is looked up
    on PATH, as in a shell. A shell string is the shell's to interpret, so it is not checked.
    """
    if not isinstance(command, list) or not command or cwd is not None:
        return
    program = command[0]
    if program.startswith("~"):
        raise ValueError(f"command[0] {program!r}: ~ is not expanded in a program path; write it in full")
    if "/" in program and not program.startswith("/"):
        raise ValueError(
            f"command[0] is a relative program path {program!r}: give an absolute path, "
            "or set cwd to the directory it is relative to"
        )


class ProcessPatternOptions(BaseModel):
    """``process_pattern`` and ``regex``: how process_alive and kill_process both name processes, so a
    pattern means the same to the check that watches a process and the heal that kills it."""

    # Declared before process_pattern so that its validator sees it and can compile the regex.
    regex: bool = False
    process_pattern: str

    @field_validator("process_pattern")
    @classmethod
    def _valid_pattern(cls, value: str, info: ValidationInfo) -> str:
        return validate_pattern(value, regex=info.data.get("regex", False))
