"""Fakes that are real enough to trust, for Horus's tests and for users testing their own configs.

- :class:`StubCommands` puts recording stand-ins for ``launchctl``, ``systemctl`` or ``docker`` first
  on PATH, so the exact command lines a heal would run can be asserted without those systems.
- :class:`ShiftedClock` is the system clock with a wall-clock offset you can jump, to prove that a
  wall clock jump neither triggers nor suppresses a heal.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

from horus.clock import SystemClock

__all__ = ["ShiftedClock", "StubCommands"]

_STUB_TEMPLATE = """#!{python}
import json, os, sys
record = {record!r}
with open(record, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:]}}) + "\\n")
reply = json.load(open({reply!r}))
for rule in reply["rules"]:
    if all(arg in sys.argv[1:] for arg in rule["when"]):
        sys.stdout.write(rule["stdout"]); sys.stderr.write(rule["stderr"]); sys.exit(rule["exit_code"])
sys.stdout.write(reply["stdout"]); sys.stderr.write(reply["stderr"]); sys.exit(reply["exit_code"])
"""


class StubCommands:
    """Recording stand-ins for external programs, placed in ``directory``.

    Put ``directory`` first on PATH (``prepend_to_path``), ``install`` a stub, run the code under
    test, then read ``calls(name)``: one argv list (without the program name) per invocation.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def install(self, name: str, *, stdout: str = "", stderr: str = "", exit_code: int = 0) -> Path:
        """Create (or reset) the stub ``name`` with its default reply."""
        reply = {"stdout": stdout, "stderr": stderr, "exit_code": exit_code, "rules": []}
        self._reply_file(name).write_text(json.dumps(reply))
        self._record_file(name).write_text("")
        path = self.directory / name
        path.write_text(
            _STUB_TEMPLATE.format(
                python=sys.executable,
                record=str(self._record_file(name)),
                reply=str(self._reply_file(name)),
            )
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    def reply_when(self, name: str, args: list[str], *, stdout: str = "", stderr: str = "", exit_code: int = 0) -> None:
        """When every string in ``args`` is among the stub's arguments, give this reply instead."""
        reply = json.loads(self._reply_file(name).read_text())
        reply["rules"].append({"when": args, "stdout": stdout, "stderr": stderr, "exit_code": exit_code})
        self._reply_file(name).write_text(json.dumps(reply))

    def calls(self, name: str) -> list[list[str]]:
        text = self._record_file(name).read_text()
        return [json.loads(line)["argv"] for line in text.splitlines() if line.strip()]

    def prepend_to_path(self, environ: dict[str, str] | None = None) -> str:
        """The PATH value with this directory first (set it with monkeypatch or in a child's env)."""
        current = (environ if environ is not None else os.environ).get("PATH", "")
        return f"{self.directory}{os.pathsep}{current}"

    def _record_file(self, name: str) -> Path:
        return self.directory / f".{name}.calls.jsonl"

    def _reply_file(self, name: str) -> Path:
        return self.directory / f".{name}.reply.json"


class ShiftedClock(SystemClock):
    """The system clock whose wall time can be jumped; monotonic time and sleeping stay real."""

    def __init__(self) -> None:
        self.offset = 0.0

    def jump(self, seconds: float) -> None:
        self.offset += seconds

    def wall(self) -> float:
        return time.time() + self.offset
