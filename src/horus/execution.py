"""The seam through which Horus runs programs: health commands, heal scripts, launchctl, systemctl, docker.

Every program runs in its own session (process group), with a timeout, and is recorded in
:mod:`horus.children` (pid, start time, a marker in its environment) before anything else is awaited. On
timeout or cancellation the program is killed with its whole group, its descendants and every process that
carries its marker (so ``setsid`` does not escape), and a later Horus ends what a killed one left running.
A program is judged by its exit status: once it has exited, its output is read for a moment more and then
no longer, so a background child that holds the output open cannot turn an exit 0 into a timeout.
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
from typing import Literal

from horus import children
from horus.errors import ExecError
from horus.log import get_logger

__all__ = ["CommandResult", "run_command"]

OUTPUT_TAIL_BYTES = 4096

log = get_logger("horus.execution")


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
    what: str = "command",
    leftovers: Literal["keep", "end"] = "keep",
) -> CommandResult:
    """Run a program to completion and return its exit code and the tail of its output.

    ``command`` is an argv list, or a shell string when ``shell`` is true. ``stdin``, when given, is
    written to the program's standard input, which is then closed; otherwise it reads /dev/null.
    Raises :class:`ExecError` when the program cannot be started (permanent) or runs past ``timeout``
    (killed, not permanent).
    Without ``timeout`` the caller bounds it by cancelling, which kills the program's whole group too.
    ``what`` says what the program is for (``"command check"``), in Horus's record and in its logs.
    ``leftovers``: what to do with processes the program leaves running once it has exited: ``"keep"``
    hands them off (a repair script may start a service), ``"end"`` kills them (a probe leaves nothing).
    """
    if isinstance(command, str) != shell:
        raise ExecError("a shell string needs shell=True and an argv list needs shell=False", permanent=True)
    argv: tuple[str, ...] = ("/bin/sh", "-c", command) if isinstance(command, str) else tuple(command)
    if not argv:
        raise ExecError("empty command", permanent=True)
    # Checked first: a missing working directory would otherwise be reported as a missing program.
    if cwd is not None:
        _check_working_directory(cwd)
    token = children.new_token()
    # The marker is inherited by every descendant that keeps its environment, whatever session it moves to.
    full_env = {**os.environ, **(env or {}), children.MARKER: token}
    program = command.split(maxsplit=1)[0] if isinstance(command, str) and command.strip() else argv[0]
    loop = asyncio.get_running_loop()
    children.record(token, what=what, program=program)
    started = time.monotonic()
    transport: asyncio.SubprocessTransport | None = None
    try:
        transport, capture = await loop.subprocess_exec(
            lambda: _Capture(loop),
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
    finally:
        if transport is None:
            children.forget(token)  # never started (or cancelled while starting, which ends it)
    pid = transport.get_pid()
    since = children.started(token, pid).create_time
    try:
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            assert isinstance(pipe, asyncio.WriteTransport)
            # Buffered by the transport and written as the program reads; a program that exits without
            # reading it all breaks the pipe, which is no error: its exit code tells.
            pipe.write(stdin)
            pipe.close()
        try:
            async with asyncio.timeout(timeout):
                # Shielded: a cancelled wait would cancel the future itself, which then says nothing more.
                await asyncio.shield(capture.exited)
        except TimeoutError as exc:
            _kill_everything(pid, token, since)
            await _reaped(capture)
            raise ExecError(f"{argv[0]} did not finish within {timeout:g} s and was killed", permanent=False) from exc
        except BaseException:
            _kill_everything(pid, token, since)
            await _reaped(capture)
            raise
        # The program has exited: what it printed last is normally already read. A background child that
        # inherited the output may hold it open for ever; it must not hold up the verdict.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OUTPUT_DRAIN_SECONDS):
                await asyncio.shield(capture.output_closed)
        exit_code = transport.get_returncode()
        assert exit_code is not None
        if leftovers == "end":
            await asyncio.to_thread(_end_leftovers, pid, token, since)
    finally:
        children.forget(token)
        transport.close()
    return CommandResult(
        argv=argv,
        exit_code=exit_code,
        output_tail=capture.tail.decode("utf-8", errors="replace"),
        duration_seconds=time.monotonic() - started,
    )


# After the program exits, how long what it printed last may take to arrive before reading stops.
OUTPUT_DRAIN_SECONDS = 0.2
# After SIGKILL, how long to wait for the program to be reaped (it cannot ignore SIGKILL; this bounds a
# process stuck in the kernel, which Horus cannot help anyway).
REAPED_SECONDS = 5.0


class _Capture(asyncio.SubprocessProtocol):
    """Keeps the tail of the output; says when the program exited and when its output closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tail = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.tail.extend(data.encode() if isinstance(data, str) else data)
        del self.tail[:-OUTPUT_TAIL_BYTES]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1 and not self.output_closed.done():
            self.output_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _kill_everything(pid: int, token: str, since: float | None) -> None:
    """SIGKILL a program that is still running, with its group, its descendants and whatever has its marker.

    Done at once, not in a thread: it runs on a timeout or a cancellation, when the caller must not be
    kept waiting, and a cancelled caller could not wait for a thread anyway.
    """
    # Found before anything is killed: once a parent dies its children move to init and out of its tree.
    found = children.tree_of(pid)
    # The program leads its own session, so its pid is also its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    found += [proc for proc, _ in children.marked([token], since=since)]
    children.end(found, grace=0)
    # Once more: something may have forked between the look and the kill.
    children.end([proc for proc, _ in children.marked([token], since=since)], grace=0)


def _end_leftovers(pid: int, token: str, since: float | None) -> None:
    """Kill what a program that has exited left running: its group and whatever has its marker."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    left = [proc for proc, _ in children.marked([token], since=since)]
    if left:
        children.end(left, grace=0)
        log.info("execution.leftovers_ended", pid=pid, pids=sorted(p.pid for p in left))


async def _reaped(capture: _Capture) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(asyncio.wait_for(asyncio.shield(capture.exited), REAPED_SECONDS))


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
