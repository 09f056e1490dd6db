"""The seam through which Horus runs programs: health commands, heal scripts, launchctl, systemctl, docker.

Every program runs in its own session (process group), with a timeout; on timeout or cancellation the
whole group is killed, so a hung health script can never leave children behind or hold up Horus.
Output is read as it comes and only its tail is kept, so a chatty program cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from horus.errors import ExecError

__all__ = ["CommandResult", "run_command"]

OUTPUT_TAIL_BYTES = 4096


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    output_tail: str
    duration_seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def last_line(self) -> str:
        lines = [line for line in self.output_tail.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


async def run_command(
    command: Sequence[str] | str,
    *,
    timeout: float | None = None,
    shell: bool = False,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> CommandResult:
    """Run a program to completion and return its exit code and the tail of its output.

    ``command`` is an argv list, or a shell string when ``shell`` is true. ``stdin``, when given, is
    written to the program's standard input, which is then closed; otherwise it reads /dev/null.
    Raises :class:`ExecError` when the program cannot be started (permanent) or runs past ``timeout``
    (killed, not permanent).
    Without ``timeout`` the caller bounds it by cancelling, which kills the program's whole group too.
    """
    if isinstance(command, str) != shell:
        raise ExecError("a shell string needs shell=True and an argv list needs shell=False", permanent=True)
    argv: tuple[str, ...] = ("/bin/sh", "-c", command) if isinstance(command, str) else tuple(command)
    if not argv:
        raise ExecError("empty command", permanent=True)
    # Checked first: a missing working directory would otherwise be reported as a missing program.
    if cwd is not None:
        _check_working_directory(cwd)
    full_env = None if env is None else {**os.environ, **env}
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ExecError(f"{argv[0]}: not found", permanent=True) from exc
    except PermissionError as exc:
        raise ExecError(f"{argv[0]}: permission denied", permanent=True) from exc
    except OSError as exc:
        raise ExecError(f"{argv[0]}: cannot start: {exc.strerror or exc}", permanent=True) from exc

    tail = bytearray()

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            del tail[:-OUTPUT_TAIL_BYTES]

    async def feed(data: bytes) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program exited or closed its input without reading it all: its exit code tells
        finally:
            proc.stdin.close()

    try:
        async with asyncio.timeout(timeout):
            # Written while the output is read, so neither side waits on a full pipe.
            if stdin is None:
                await drain()
            else:
                await asyncio.gather(feed(stdin), drain())
            exit_code = await proc.wait()
    except TimeoutError as exc:
        await _kill_group(proc)
        raise ExecError(f"{argv[0]} did not finish within {timeout:g} s and was killed", permanent=False) from exc
    except BaseException:
        await _kill_group(proc)
        raise
    return CommandResult(
        argv=argv,
        exit_code=exit_code,
        output_tail=tail.decode("utf-8", errors="replace"),
        duration_seconds=time.monotonic() - started,
    )


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The program leads its own session, so its pid is also its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.shield(proc.wait())


def _check_working_directory(cwd: str | os.PathLike[str]) -> None:
    """Say what is wrong with a working directory in words (one stat, before spawning)."""
    try:
        st = os.stat(cwd)
    except FileNotFoundError:
        raise ExecError(f"working directory {cwd} does not exist", permanent=True) from None
    except NotADirectoryError:
        raise ExecError(f"working directory {cwd}: a path component is not a directory", permanent=True) from None
    except PermissionError:
        raise ExecError(
            f"working directory {cwd}: permission denied (Horus runs as uid {os.getuid()})", permanent=True
        ) from None
    except OSError as exc:
        raise ExecError(f"working directory {cwd}: {exc.strerror or exc}", permanent=False) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ExecError(f"working directory {cwd} is not a directory", permanent=True)
