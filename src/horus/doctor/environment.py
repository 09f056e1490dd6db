"""Variables the service reads (in its code, its .env, its compose service) that its plist or unit does not set.

The pitfall of a move from Docker Compose to launchd or systemd: Compose passed every variable of the
``environment:`` block and the .env, the new job passes only what it lists, and the service fails silently.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from horus.doctor.findings import PROBLEM, WARNING, Finding
from horus.doctor.host_env import ALWAYS_SET
from horus.doctor.jobs import VARIABLE_NAME, Job, dotenv_keys
from horus.doctor.reading import SourceWalk, Unreadable, read_bounded
from horus.doctor.subject import Host, Subject

KIND = "environment"

_NAME = r"(['\"])([A-Za-z_][A-Za-z0-9_]*)\1"
# os.environ["X"], environ["X"]; os.environ.get("X"[, default]); os.getenv("X"[, default]).
_PY_INDEX = re.compile(r"\b(?:os\.)?environ\[\s*" + _NAME + r"\s*\]")
_PY_CALL = re.compile(r"\b(?:os\.environ\.get|environ\.get|os\.getenv|getenv)\(\s*" + _NAME + r"\s*(,|\))")
# process.env.X, process.env["X"], with a default when followed by || or ??.
_JS = re.compile(
    r"\bprocess\.env(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(['\"])([A-Za-z_][A-Za-z0-9_]*)\2\s*\])(\s*(?:\|\||\?\?))?"
)
SOURCE_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".ts")
# The service loading its .env itself: python-dotenv's load_dotenv(...), Node's dotenv.
_PY_DOTENV = re.compile(r"\bload_dotenv\(([^)\n]*)")
_JS_DOTENV = re.compile(
    r"require\(\s*['\"]dotenv['\"]\s*\)\.config\(([^)\n]*)"
    r"|import\s+['\"]dotenv/config['\"]"
    r"|\bdotenv\.config\(([^)\n]*)"
)
_STRING = re.compile(r"^\s*(?:dotenv_path\s*=\s*)?(['\"])([^'\"]+)\1")
# A finding names at most this many places a variable is read.
PLACES_LISTED = 3


@dataclass(frozen=True)
class DotenvLoad:
    """Where the service's code loads a .env itself, and what it is found relative to."""

    place: str  # "bot.py line 3"
    # "code": relative to the code (python-dotenv's default, or a path the code computes), so found wherever
    # the job starts; "cwd": relative to the working directory (Node's dotenv, a relative literal path);
    # "absolute": the literal absolute path ``name``.
    relative_to: str
    name: str = ".env"


@dataclass
class Read:
    """Where one variable is read or set, and whether every read has a default."""

    places: list[str] = field(default_factory=list)
    read_in_code: bool = False
    always_defaulted: bool = True  # every read in the code has a default

    def add(self, place: str, *, in_code: bool, defaulted: bool = False) -> None:
        self.places.append(place)
        if in_code:
            self.read_in_code = True
            self.always_defaulted = self.always_defaulted and defaulted
        else:
            # A .env or compose file sets it for the service: no default in the code stands in for it.
            self.always_defaulted = False


def audit(subject: Subject, host: Host) -> list[Finding]:
    if not subject.jobs:
        return []
    reads, env_keys, loads, findings = _what_the_service_reads(subject)
    for job in subject.jobs:
        findings.extend(_unreadable_environment_files(subject, job))
        provided, load_findings = _loaded_by_the_service(subject, job, loads, env_keys)
        findings.extend(load_findings)
        for name, read in reads.items():
            if job.sets(name) or name in ALWAYS_SET[job.manager] or name in provided:
                continue
            findings.append(_missing(subject, job, name, read))
    return findings


def _loaded_by_the_service(
    subject: Subject, job: Job, loads: list[DotenvLoad], env_keys: set[str]
) -> tuple[set[str], list[Finding]]:
    """The .env keys the service gets without its job listing them: its code loads the .env itself, or the
    job's command line does (``set -a; . ./.env; exec ...``); and a load that will miss the file under the job."""
    env_file = subject.env_file
    if env_file is None or not env_keys:
        return set(), []
    # The file's name as a word of the command line (". ./.env", "--env-file=.env"), not as letters inside
    # another name ("/home/me/.environments/bot.py", ".env.example").
    named = re.compile(r"(?<![\w.-])" + re.escape(env_file.name) + r"(?![\w.-])")
    if any(named.search(argument) for argument in job.argv):
        return env_keys, []
    findings = []
    for load in loads:
        if load.relative_to == "code" or (load.relative_to == "absolute" and Path(load.name) == env_file):
            return env_keys, []
        if load.relative_to == "absolute" or (env_file.parent / load.name) != env_file:
            continue  # another file than this .env
        if job.working_directory is not None and (job.working_directory / load.name) == env_file:
            return env_keys, []
        started_in = job.working_directory or Path("/")
        setting = "WorkingDirectory" if job.manager == "launchd" else "WorkingDirectory="
        findings.append(
            Finding(
                PROBLEM,
                subject.monitor,
                KIND,
                f"{load.place} loads {load.name} from the working directory, but the job starts in {started_in}"
                + ("" if job.working_directory else f" (its {job.noun} sets no {setting})")
                + f", so {env_file} is not loaded",
                f"set {setting} to {env_file.parent} in {job.path}, or load the .env by its absolute path",
            )
        )
    return set(), findings


def _missing(subject: Subject, job: Job, name: str, read: Read) -> Finding:
    places = "; ".join(read.places[:PLACES_LISTED])
    if len(read.places) > PLACES_LISTED:
        places += f"; and {len(read.places) - PLACES_LISTED} more"
    if read.read_in_code and read.always_defaulted:
        return Finding(
            WARNING,
            subject.monitor,
            KIND,
            f"the service reads {name} ({places}, with a default) but its {job.noun} does not set it, "
            "so it runs with the default",
            f"{job.how_to_set(name)} if the default is not what it should run with",
        )
    if read.read_in_code:
        found = f"the service reads {name} ({places}) but its {job.noun} does not set it"
    else:
        found = f"{name} is set for the service {places} but its {job.noun} does not set it"
    return Finding(PROBLEM, subject.monitor, KIND, found, job.how_to_set(name))


def _unreadable_environment_files(subject: Subject, job: Job) -> list[Finding]:
    findings = []
    for path, why, optional in job.unreadable_environment_files:
        if optional and why == "it does not exist":
            continue
        consequence = "" if optional else ", so systemd will not start the service"
        findings.append(
            Finding(
                WARNING if optional else PROBLEM,
                subject.monitor,
                KIND,
                f"its unit's EnvironmentFile={path} cannot be read: {why}{consequence}",
                f"create it (readable by the job's user) or correct the path in {job.path}",
            )
        )
    return findings


def _what_the_service_reads(subject: Subject) -> tuple[dict[str, Read], set[str], list[DotenvLoad], list[Finding]]:
    """Each variable the service reads or is given, with where; the keys of its .env; its own .env loads."""
    reads: dict[str, Read] = {}
    env_keys: set[str] = set()
    loads: list[DotenvLoad] = []
    findings: list[Finding] = []

    def read(name: str) -> Read:
        return reads.setdefault(name, Read())

    source_dir = subject.source_dir
    unsearchable = _why_not_searchable(source_dir) if source_dir is not None else None
    if unsearchable is not None:
        findings.append(
            Finding(
                WARNING,
                subject.monitor,
                KIND,
                f"its source_dir {source_dir} cannot be searched ({unsearchable}), so the variables its code reads "
                "were not compared with the job's",
                "set service.source_dir (or the monitor's work_tree) to the directory of the service's code",
            )
        )
    elif source_dir is not None:
        walk = SourceWalk(source_dir, SOURCE_SUFFIXES)
        for relative, text in walk:
            for name, line, defaulted in _reads_in(relative, text):
                read(name).add(f"{relative} line {line}", in_code=True, defaulted=defaulted)
            loads.extend(_dotenv_loads(relative, text))
        if walk.cut_short is not None:
            findings.append(
                Finding(
                    WARNING,
                    subject.monitor,
                    KIND,
                    f"only part of its source_dir {source_dir} was searched ({walk.cut_short}), so variables read "
                    "in the rest were not compared with the job's",
                    "point service.source_dir at the service's own code, not a tree that holds more",
                )
            )
    env_file = subject.env_file
    if env_file is not None:
        try:
            for name in dotenv_keys(read_bounded(env_file)):
                read(name).add(f"in {_shown(env_file, source_dir)}", in_code=False)
                env_keys.add(name)
        except Unreadable as exc:
            findings.append(_unreadable(subject, "its .env", env_file, exc))
    compose_file = subject.compose_file
    if compose_file is not None:
        names, compose_findings = _compose_environment(subject, compose_file)
        findings.extend(compose_findings)
        for name, where in names:
            read(name).add(where, in_code=False)
    return reads, env_keys, loads, findings


def _why_not_searchable(directory: Path) -> str | None:
    """Why the service's source tree cannot be walked, in words; None when it can."""
    try:
        info = directory.stat()
    except FileNotFoundError:
        return "it does not exist"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if not os.access(directory, os.R_OK | os.X_OK):
        return "permission denied"
    return None


def _reads_in(relative: Path, text: str) -> list[tuple[str, int, bool]]:
    """(name, line, has a default) of each environment read in one source file."""
    found = []
    if relative.suffix == ".py":
        for match in _PY_INDEX.finditer(text):
            found.append((match.group(2), match.start(), False))
        for match in _PY_CALL.finditer(text):
            found.append((match.group(2), match.start(), match.group(3) == ","))
    else:
        for match in _JS.finditer(text):
            found.append((match.group(1) or match.group(3), match.start(), match.group(4) is not None))
    return [(name, text.count("\n", 0, offset) + 1, defaulted) for name, offset, defaulted in sorted(found, key=_at)]


def _dotenv_loads(relative: Path, text: str) -> list[DotenvLoad]:
    found = []

    def place(offset: int) -> str:
        return f"{relative} line {text.count(chr(10), 0, offset) + 1}"

    if relative.suffix == ".py":
        for match in _PY_DOTENV.finditer(text):
            argument = match.group(1)
            literal = _STRING.match(argument)
            if literal and literal.group(2).startswith("/"):
                found.append(DotenvLoad(place(match.start()), "absolute", literal.group(2)))
            elif literal and not literal.group(2).startswith("~"):
                found.append(DotenvLoad(place(match.start()), "cwd", literal.group(2)))
            elif "usecwd=True" in argument:
                found.append(DotenvLoad(place(match.start()), "cwd"))
            else:  # no argument: found from the calling file's directory up; or a path the code computes
                found.append(DotenvLoad(place(match.start()), "code"))
    else:
        for match in _JS_DOTENV.finditer(text):
            argument = match.group(1) or match.group(2) or ""
            # dotenv for Node looks in process.cwd() unless given a path.
            found.append(DotenvLoad(place(match.start()), "code" if "path" in argument else "cwd"))
    return found


def _at(item: tuple[str, int, bool]) -> int:
    return item[1]


def _compose_environment(subject: Subject, compose_file: Path) -> tuple[list[tuple[str, str]], list[Finding]]:
    """(name, where) of each variable the compose service sets, from environment: and env_file:."""
    try:
        document = yaml.safe_load(read_bounded(compose_file))
    except Unreadable as exc:
        return [], [_unreadable(subject, "its compose file", compose_file, exc)]
    except yaml.YAMLError as exc:
        return [], [_unreadable(subject, "its compose file", compose_file, Unreadable(f"it is not valid YAML ({exc})"))]
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict) or not services:
        return [], []
    wanted = subject.service.compose_service if subject.service else None
    if wanted is None:
        wanted = next(iter(services)) if len(services) == 1 else subject.monitor
    service = services.get(wanted)
    if not isinstance(service, dict):
        return [], [
            Finding(
                WARNING,
                subject.monitor,
                KIND,
                f"its compose file {compose_file} has no service {wanted!r} (it has {', '.join(map(str, services))})",
                "set service.compose_service to the compose service this monitor's service was",
            )
        ]
    where = f"in compose service {wanted}'s environment:"
    names = [(name, where) for name in _environment_names(service.get("environment"))]
    env_files: Any = service.get("env_file")
    for entry in env_files if isinstance(env_files, list) else [env_files]:
        path_text = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(path_text, str):
            continue
        # Not resolved: read_bounded follows the links itself, and a link loop is then only this file's loss.
        path = compose_file.parent / path_text
        try:
            names.extend(
                (name, f"in compose service {wanted}'s env_file {path_text}")
                for name in dotenv_keys(read_bounded(path))
            )
        except Unreadable:
            continue  # a missing env_file breaks Compose too; it says nothing about the new job
    return names, []


def _environment_names(block: Any) -> list[str]:
    """The names in a compose ``environment:`` block, in its list form (``- A=1``) or mapping form (``A: 1``)."""
    if isinstance(block, dict):
        candidates = [str(key) for key in block]
    elif isinstance(block, list):
        # Only strings ("NAME=value", "NAME"): str() of anything else would expand YAML aliases, and a file of
        # aliases of aliases spells billions of items in a few lines.
        candidates = [item.partition("=")[0].strip() for item in block if isinstance(item, str)]
    else:
        return []
    return [name for name in candidates if VARIABLE_NAME.fullmatch(name)]


def _unreadable(subject: Subject, what: str, path: Path, exc: Unreadable) -> Finding:
    return Finding(
        WARNING,
        subject.monitor,
        KIND,
        f"{what} {path} cannot be read ({exc}), so the variables it sets were not compared with the job's",
        "make it readable, or point service settings at the right file",
    )


def _shown(path: Path, source_dir: Path | None) -> str:
    if source_dir is not None and path.is_relative_to(source_dir):
        return str(path.relative_to(source_dir))
    return str(path)
