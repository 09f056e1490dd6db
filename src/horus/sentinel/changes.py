"""What changed since a service was last healthy: commits in its git work tree, and the config file.

A failure that begins right after a deploy is most often caused by it, so an incident names the commits
made since the service was last seen healthy. Git is run as a program (``git -C TREE log``), through
the same seam as every other command, never through a library.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from horus.errors import ExecError
from horus.execution import run_command

__all__ = ["Commit", "Commits", "config_changed_since", "recent_commits"]

GIT_TIMEOUT_SECONDS = 10.0
FILES_PER_COMMIT = 50
# Separators git never writes in a name or subject: record, then field.
_RECORD = "\x1e"
_FIELD = "\x1f"


@dataclass(frozen=True)
class Commit:
    sha: str
    at: float  # committer time, Unix seconds
    author: str
    subject: str
    files: tuple[str, ...] = ()

    @property
    def short_sha(self) -> str:
        return self.sha[:10]


class Commits(list[Commit]):
    """Commits, newest first. When git could not answer, the list is empty and ``reason`` says why."""

    def __init__(self, commits: list[Commit] | None = None, *, reason: str | None = None) -> None:
        super().__init__(commits or [])
        self.reason = reason


async def recent_commits(
    work_tree: Path, since: float, limit: int = 10, *, timeout: float = GIT_TIMEOUT_SECONDS
) -> Commits:
    """The newest ``limit`` commits in ``work_tree`` committed at or after ``since`` (Unix seconds).

    Never raises: without git, outside a git work tree, or when git fails, the result is empty with a
    ``reason``. Only the newest commits are kept when their file lists are very long.
    """
    if limit <= 0:
        return Commits()
    if not work_tree.is_dir():  # noqa: ASYNC240 - one stat
        return Commits(reason=f"{work_tree} is not a directory")
    argv = [
        "git",
        "-C",
        str(work_tree),
        "log",
        f"--since=@{math.floor(since)}",
        f"--max-count={limit}",
        # Oldest first, so that when the output is longer than what run_command keeps (its tail), the
        # newest commits are the ones that survive.
        "--reverse",
        "--name-only",
        f"--format={_RECORD}%H{_FIELD}%ct{_FIELD}%an{_FIELD}%s",
    ]
    try:
        result = await run_command(argv, timeout=timeout, env={"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except ExecError as exc:
        return Commits(reason="git is not installed" if "not found" in str(exc) else str(exc))
    if not result.ok:
        return Commits(reason=f"git log failed: {result.last_line() or f'exit status {result.exit_code}'}")
    return Commits(_parse(result.output_tail)[::-1])


def _parse(output: str) -> list[Commit]:
    records = output.split(_RECORD)
    # The first piece is empty, or the end of a record whose start fell out of the kept output.
    commits = []
    for record in records[1:]:
        header, _, rest = record.partition("\n")
        fields = header.split(_FIELD)
        if len(fields) != 4:
            continue
        sha, committed, author, subject = fields
        try:
            at = float(committed)
        except ValueError:
            continue
        files = tuple(line for line in rest.splitlines() if line.strip())[:FILES_PER_COMMIT]
        commits.append(Commit(sha=sha, at=at, author=author, subject=subject, files=files))
    return commits


def config_changed_since(path: Path, since: float) -> bool:
    """Whether the file at ``path`` was modified after ``since`` (Unix seconds); False when it is missing."""
    try:
        return os.stat(path).st_mtime > since
    except OSError:
        return False
