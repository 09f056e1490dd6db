"""The service's versions: an id for the source tree, its snapshot under ``versions/``, and the preflight."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

MAX_FILES = 5000
# The watcher walks the tree every --watch-interval on the runner's one thread: a tree of a hundred thousand
# directories (with few files) took seconds a walk, seconds in which no crash or request was seen.
MAX_DIRS = 2000
MAX_TOTAL_BYTES = 100 * 1024 * 1024
PREFLIGHT_TIMEOUT = 30.0
_SKIPPED_DIRS = {"__pycache__", ".git"}
_UNFINISHED = ".staging-"  # a version being copied in, or one being pruned: never a version to run


class SourceError(Exception):
    """The source tree cannot be made a version (too large, unreadable); the message says why."""


def _skipped_dir(name: str) -> bool:
    return name in _SKIPPED_DIRS or name.startswith(".")


def left_out_of_versions(relative: Path) -> bool:
    """Whether a directory at ``relative`` under the source is left out of every version (a dot-directory such
    as ``.horus/``, a cache, or anything under one)."""
    return any(_skipped_dir(part) for part in relative.parts)


def source_files(source: Path) -> list[str]:
    """The relative paths of the files a version holds, sorted; skips caches, VCS and dot-entries."""
    if not source.is_dir():
        # Moved away or deleted mid-deploy: an empty tree would otherwise become a version of its own.
        raise SourceError(f"the source {source} is not a directory (moved or deleted?)")
    found: list[str] = []
    total = 0
    walked = 0
    for root, dirs, files in os.walk(source, onerror=lambda exc: _unlisted(exc, source)):
        walked += 1
        if walked > MAX_DIRS:
            raise SourceError(f"{source} holds more than {MAX_DIRS} directories; a version is at most that many")
        dirs[:] = sorted(d for d in dirs if not _skipped_dir(d))
        for name in files:
            if name.startswith(".") or name.endswith(".pyc"):
                continue
            path = Path(root) / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue  # gone since the directory was listed (an editor's temp file): not part of the tree
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror}") from exc
            if not path.is_file() or path.is_symlink():
                continue
            total += st.st_size
            found.append(path.relative_to(source).as_posix())
            if len(found) > MAX_FILES:
                raise SourceError(f"{source} holds more than {MAX_FILES} files; a version is at most that many")
            if total > MAX_TOTAL_BYTES:
                raise SourceError(f"{source} holds more than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB of files")
    return sorted(found)


def _unlisted(exc: OSError, source: Path) -> None:
    """A directory that cannot be listed: a version without its files would run as if complete. One gone since
    its parent was listed is not part of the tree any more, but the source itself gone is no tree at all."""
    if isinstance(exc, FileNotFoundError) and os.fspath(exc.filename) != os.fspath(source):
        return
    raise SourceError(f"cannot list {exc.filename}: {exc.strerror}") from exc


def source_signature(source: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap fingerprint (path, size, mtime) polled by the watcher; the version id is computed only once
    the tree has stayed still."""
    signature = []
    for relative in source_files(source):
        with contextlib.suppress(OSError):
            st = (source / relative).stat()
            signature.append((relative, st.st_size, st.st_mtime_ns))
    return tuple(signature)


def version_of(source: Path) -> str:
    """The first 12 hex digits of sha256 over the sorted relative paths and contents of the tree."""
    digest = hashlib.sha256()
    for relative in source_files(source):
        try:
            content = (source / relative).read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {source / relative}: {exc.strerror}") from exc
        encoded = os.fsencode(relative)  # a name may be any bytes, not only UTF-8
        digest.update(len(encoded).to_bytes(8, "big") + encoded + len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.hexdigest()[:12]


def snapshot(source: Path, versions_dir: Path) -> tuple[str, Path]:
    """Copy ``source`` to ``versions_dir/VERSION`` (kept if already there); returns (version, its path).

    The id is computed from the copy, so a file edited while being copied cannot give the copy the id of
    other contents."""
    versions_dir.mkdir(mode=0o700, exist_ok=True)
    _remove_unfinished(versions_dir)
    staging = versions_dir / f"{_UNFINISHED}{os.getpid()}"
    staging.mkdir(mode=0o700)
    try:
        for relative in source_files(source):
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, target)
        version = version_of(staging)
        final = versions_dir / version
        if final.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
            os.utime(final)
        else:
            os.replace(staging, final)
        return version, final
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SourceError(f"cannot copy {source} to {versions_dir}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def prune_versions(versions_dir: Path, *, keep: int, protected: set[str]) -> None:
    """Keep the newest ``keep`` snapshots, and always those in ``protected`` (the active, previous, standby)."""
    with contextlib.suppress(OSError):
        entries = sorted(
            (p for p in versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for stale in entries[keep:]:
            if stale.name not in protected:
                # Out of sight first: a kill -9 in the middle of rmtree would leave a half version under its
                # own name, which snapshot() would take for whole the next time these contents come back.
                doomed = versions_dir / f"{_UNFINISHED}pruned-{stale.name}"
                os.replace(stale, doomed)
                shutil.rmtree(doomed, ignore_errors=True)


def _remove_unfinished(versions_dir: Path) -> None:
    """What a runner killed in the middle of a copy or a prune left behind. Only the one runner that holds
    the state dir's lock snapshots into it, so every such entry is a leftover."""
    with contextlib.suppress(OSError):
        for entry in versions_dir.iterdir():
            if entry.name.startswith(_UNFINISHED):
                shutil.rmtree(entry, ignore_errors=True)


# Imports the entry by path under another name than __main__, so its `if __name__ == "__main__"` does not run.
_IMPORT_BY_PATH = (
    "import importlib.util, sys\n"
    "path = sys.argv[1]\n"
    "sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(path)))\n"
    "spec = importlib.util.spec_from_file_location('horus_preflight_entry', path)\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules['horus_preflight_entry'] = module\n"
    "spec.loader.exec_module(module)\n"
)
_IMPORT_MODULE = "import importlib, sys\nsys.path.insert(0, '')\nimportlib.import_module(sys.argv[1])\n"


def preflight(snapshot_dir: Path, command: list[str], check_command: str | None, env: dict[str, str]) -> str | None:
    """None when the version may start, else a sentence saying why not."""
    for relative in source_files(snapshot_dir):
        if not relative.endswith(".py"):
            continue
        try:
            source = (snapshot_dir / relative).read_bytes()
            compile(source, relative, "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"{relative} line {exc.lineno}: {exc.msg}"
        except (ValueError, OSError) as exc:
            return f"{relative}: {exc}"
        except (RecursionError, MemoryError):
            # CPython's parser gives up on an expression nested thousands deep with these, not a SyntaxError.
            return f"{relative}: nested too deeply for Python to compile"
    import_command = _import_command(command)
    if import_command is not None:
        failure = _run_check(import_command, snapshot_dir, env, what=f"importing {' '.join(command[1:3])}")
        if failure:
            return failure
    if check_command:
        failure = _run_check(shlex.split(check_command), snapshot_dir, env, what=f"the check {check_command!r}")
        if failure:
            return failure
    return None


def _import_command(command: list[str]) -> list[str] | None:
    if len(command) < 2 or not Path(command[0]).name.startswith("python"):
        return None
    if command[1].endswith(".py"):
        return [command[0], "-c", _IMPORT_BY_PATH, command[1]]
    if command[1] == "-m" and len(command) >= 3:
        return [command[0], "-c", _IMPORT_MODULE, command[2]]
    return None


def _run_check(argv: list[str], cwd: Path, env: dict[str, str], *, what: str) -> str | None:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PREFLIGHT_TIMEOUT,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return f"{what} did not finish within {PREFLIGHT_TIMEOUT:.0f} s"
    except OSError as exc:
        return f"{what} could not run: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    tail = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()][-3:]
    status = f"code {done.returncode}" if done.returncode >= 0 else f"signal {-done.returncode}"
    return f"{what} failed ({status})" + (": " + " | ".join(t.strip() for t in tail) if tail else "")


def python_env() -> dict[str, str]:
    """The environment of a preflight: the runner's, without the channel of an instance."""
    env = dict(os.environ)
    env.pop("HORUS_RUNNER_FD", None)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


__all__ = ["SourceError", "preflight", "prune_versions", "snapshot", "source_signature", "version_of"]
