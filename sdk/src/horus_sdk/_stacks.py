"""Stack sampling shared by the loop watchdog and the blocking detector, and the lifecycle both share:
a ticker task on the loop and a daemon watcher thread beside it, which take turns through a
:class:`Handover`.

Private: the public names are re-exported where they belong (``horus_sdk.blocking.Frame``).
"""

from __future__ import annotations

import asyncio
import functools
import linecache
import logging
import math
import os
import selectors
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = [
    "HANDOVER_LIMIT",
    "Frame",
    "Handover",
    "RawFrame",
    "innermost_user_frame",
    "raw_stack",
    "sample_thread",
    "start_watcher",
    "stop_ticker",
    "user_frame_depth",
    "with_source",
]

logger = logging.getLogger("horus_sdk")

_MAX_FRAMES = 256
"""Frames kept per stack (the innermost ones): deep recursion must not make a report huge."""


# -- frames ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame as the crash record stores it (``{"file", "line", "function", "code"}``)."""

    file: str
    line: int
    function: str
    code: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function, "code": self.code}


RawFrame = tuple[str, int, str]
"""(file, line, function): what is read from a live frame while holding the GIL, before any file I/O."""


def raw_stack(frame: FrameType | None) -> list[RawFrame]:
    """The stack from ``frame`` outwards, innermost last, as plain tuples.

    Plain tuples because the other thread's frames change as soon as it runs again: everything is read in
    one pass, and the source lines (file I/O, which releases the GIL) are looked up afterwards.
    """
    raw: list[RawFrame] = []
    while frame is not None and len(raw) < _MAX_FRAMES:
        code = frame.f_code
        raw.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    raw.reverse()
    return raw


def with_source(raw: Iterable[RawFrame]) -> tuple[Frame, ...]:
    return tuple(Frame(file, line, function, _source_line(file, line)) for file, line, function in raw)


def _source_line(file: str, line: int) -> str:
    try:
        return linecache.getline(file, line).strip()
    except Exception:  # an unreadable or vanished file costs the code line, never the report
        return ""


def sample_thread(thread_id: int) -> tuple[Frame, ...]:
    """The current stack of thread ``thread_id``, innermost last; empty when the thread is gone."""
    frame = sys._current_frames().get(thread_id)
    raw = raw_stack(frame)
    # Frames keep their locals alive: drop the reference before the (slower) source lookups.
    del frame
    return with_source(raw)


# Where a frame's code lives decides how much it says about the bug. Lower is better:
_OWN, _THIRD_PARTY, _STDLIB, _MACHINERY = range(4)


def _directory(path: str | None) -> str | None:
    return os.path.dirname(path) + os.sep if path else None


def _prefixes(*paths: str | None) -> tuple[str, ...]:
    found: set[str] = set()
    for path in paths:
        if path:
            found.add(path)
            found.add(os.path.realpath(path))
    return tuple(sorted(found))


_SDK_DIR = _directory(__file__)
_MACHINERY_PREFIXES = _prefixes(_directory(asyncio.__file__), selectors.__file__, threading.__file__, _SDK_DIR)
# Where os.py lives is the standard library (sysconfig would know more, at the cost of importing the
# build's configuration into the service just to classify frames).
_STDLIB_PREFIXES = _prefixes(_directory(os.__file__))
_THIRD_PARTY_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


@functools.lru_cache(maxsize=2048)
def _rank(file: str) -> int:
    """How far ``file`` is from the service's own code: asyncio's loop is never the culprit, the stdlib
    frame of the blocking call (``socket.py``) says less than the line that called it."""
    if file.startswith(_MACHINERY_PREFIXES):
        return _MACHINERY
    if any(marker in file for marker in _THIRD_PARTY_MARKERS):
        return _THIRD_PARTY
    if file.startswith(_STDLIB_PREFIXES) or file.startswith("<frozen "):
        return _STDLIB
    return _OWN


def user_frame_depth(stack: Sequence[Frame]) -> tuple[int, int]:
    """(rank, index) of the frame to blame in ``stack``: the innermost of the best-ranked frames.

    Rank 0 is the service's own code; then installed packages, then the standard library; asyncio,
    selectors, threading and horus_sdk itself are blamed only when nothing else is on the stack.
    """
    best = (_MACHINERY + 1, -1)
    for index, frame in enumerate(stack):
        rank = _rank(frame.file)
        if rank <= best[0]:
            best = (rank, index)
    return best


def innermost_user_frame(stack: Sequence[Frame]) -> Frame | None:
    _rank_found, index = user_frame_depth(stack)
    return stack[index] if index >= 0 else None


# -- the watcher's lifecycle -----------------------------------------------------------------------------


HANDOVER_LIMIT = 0.001
"""Longest the loop thread waits for its watcher to take a turn: a watcher that is busy or starved must
never hold the loop up."""


class Handover:
    """How the loop thread and its watcher thread take turns without racing for the GIL.

    A watcher woken by its own timer has to take the GIL from the loop thread. A busy loop lets go of it
    only for the microseconds of each ``select()`` call, so that race lasts milliseconds (sometimes a hundred)
    and the loop runs slower all along. Measured beside a loop doing 56,000 iterations a second: each such
    wake-up cost the loop 0.5 ms to 7.5 ms on average, so a watcher waking 7 times a second took 0.5% to 4.5% of it.

    So while the loop is healthy, its ticker calls :meth:`offer` now and then: the watcher is woken, and
    the loop thread waits for its answer with the GIL let go, about a tenth of a millisecond and never more
    than :data:`HANDOVER_LIMIT`. Offered at least once per watcher sleep, the watcher's own timer fires only
    when the loop stopped ticking: then the GIL is free anyway (a blocking call lets go of it, and the
    interpreter makes a CPU-bound callback let go of it within its switch interval).
    """

    def __init__(self, every: float) -> None:
        self.every = every
        self._turn = threading.Lock()  # held while the watcher has no turn; the loop thread releases it
        self._turn.acquire()
        self._answer = threading.Lock()  # held until the watcher answers; the watcher releases it
        self._answer.acquire()
        self._open = False
        self._stopped = False
        self._last_offer = -math.inf
        self._owes_answer = False  # the watcher's own state

    # -- loop thread ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Offers start counting once the watcher thread runs."""
        self._open = True

    def offer(self, now: float) -> None:
        """Give the watcher a turn, if one is due, and wait a moment for it to be taken."""
        if not self._open or now - self._last_offer < self.every:
            return
        self._last_offer = now
        # An answer that came after the last offer gave up waiting would end this wait at once.
        self._answer.acquire(blocking=False)
        if self._turn.locked():  # otherwise the last turn is still untaken: the watcher is busy
            self._turn.release()
            self._answer.acquire(timeout=HANDOVER_LIMIT)

    def stop(self) -> None:
        """End the watcher's wait for good; it sees :attr:`stopped`."""
        self._open = False
        self._stopped = True
        if self._turn.locked():
            self._turn.release()

    # -- watcher thread ------------------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self._stopped

    def wait(self, timeout: float) -> bool:
        """Answer the turn just taken, then sleep until the next turn (True), ``timeout`` or the stop."""
        if self._owes_answer:
            self._owes_answer = False
            if self._answer.locked():
                self._answer.release()
        if self._stopped:
            return False
        self._owes_answer = self._turn.acquire(timeout=max(0.0, timeout))
        return self._owes_answer


def start_watcher(target: Callable[[], None], name: str, *, failure_event: str) -> threading.Thread | None:
    """Start the daemon watcher thread; None, logged, when the process has no thread to spare (the
    service keeps running unwatched rather than fail because of its watchdog)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError as exc:
        logger.error("%s error=%r", failure_event, exc)
        return None
    return thread


async def stop_ticker(ticker: asyncio.Task[None] | None) -> None:
    """Cancel the loop-side ticker and wait until it has stopped."""
    if ticker is not None:
        ticker.cancel()
        # wait() rather than `await ticker`: a cancellation of the caller must still propagate.
        await asyncio.wait([ticker])
