"""Deadlines on awaits that must not hang, and a guard for streams that go quiet.

An ``await`` on an external call with no limit is how a trading bot sat still for seven hours. A deadline
turns that hang into an exception that names the operation, and while it runs the operation is listed in
:func:`horus_sdk.operations.in_flight`, so a crash record says what the process was waiting for::

    async with deadline("place_maker_order", 30):
        order_id = await client.place_maker_order(market, side, size)

    @deadline("place_maker_order", 30)
    async def place_maker_order(...): ...

    async for tick in guard_stream(feed, max_gap=60, name="ticks"):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from horus_sdk import operations

__all__ = ["Deadline", "DeadlineExceeded", "StreamStalled", "deadline", "guard_stream"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _seconds(seconds: float) -> str:
    return f"{seconds:g}"


class DeadlineExceeded(TimeoutError):
    """``operation`` did not finish within ``seconds``; a TimeoutError, so existing handlers still catch it."""

    def __init__(self, operation: str, seconds: float) -> None:
        super().__init__(f"{operation} did not finish within {_seconds(seconds)} s")
        self.operation = operation
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.operation, self.seconds)


class StreamStalled(TimeoutError):
    """Stream ``stream`` sent nothing for ``seconds``: reconnect rather than wait on it again."""

    def __init__(self, stream: str, seconds: float) -> None:
        super().__init__(f"stream {stream!r} sent nothing for {_seconds(seconds)} s")
        self.stream = stream
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.stream, self.seconds)


class Deadline:
    """What :func:`deadline` returns: an async context manager and a decorator for async functions."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self._token: int | None = None
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> Deadline:
        if self._timeout is not None:
            raise RuntimeError(f"deadline({self.name!r}) is already in use; call deadline() for each use")
        timeout = asyncio.timeout(self.seconds)
        await timeout.__aenter__()
        self._timeout = timeout
        self._token = operations.begin(self.name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout, self._timeout = self._timeout, None
        token, self._token = self._token, None
        try:
            if timeout is not None:
                await timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as timed_out:
            if timeout is None or not timeout.expired():
                raise
            # Chained to the cancellation, whose traceback shows the await that was stuck.
            raise DeadlineExceeded(self.name, self.seconds) from (exc or timed_out)
        finally:
            if token is not None:
                operations.end(token)

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"deadline({self.name!r}) decorates async functions, not {func!r}")
        name, seconds = self.name, self.seconds

        @functools.wraps(func)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            # A fresh Deadline per call: concurrent calls each get their own timer and in-flight entry.
            async with Deadline(name, seconds):
                return await func(*args, **kwargs)

        return limited


def deadline(name: str, seconds: float) -> Deadline:
    """Limit an await to ``seconds``: ``async with deadline("place_maker_order", 30):`` or as a decorator.

    Raises :class:`DeadlineExceeded` when the limit passes; while running, ``name`` is in
    :func:`horus_sdk.operations.in_flight`.
    """
    return Deadline(name, seconds)


async def guard_stream(source: AsyncIterable[T], max_gap: float, *, name: str = "stream") -> AsyncIterator[T]:
    """Yield from ``source``; raise :class:`StreamStalled` when the next item takes longer than ``max_gap``.

    The source is closed (``aclose()``) when the guard gives up or the consumer stops. To close it at once
    when you ``break``, wrap the guard: ``async with contextlib.aclosing(guard_stream(...)) as ticks:``.
    """
    iterator = aiter(source)
    stalled: StreamStalled | None = None
    try:
        while True:
            timeout = asyncio.timeout(max_gap)
            try:
                async with timeout:
                    item = await anext(iterator)
            except StopAsyncIteration:
                if not timeout.expired():
                    return
                # The feed swallowed the cancellation and ended: still a stall, not a clean end.
                stalled = StreamStalled(name, max_gap)
                raise stalled from None
            except Exception as exc:
                if not timeout.expired():
                    raise
                # Usually TimeoutError, but a feed may fail in its own way as the cancellation hits it.
                stalled = StreamStalled(name, max_gap)
                raise stalled from exc
            yield item
    finally:
        await _close(iterator, max_gap, stalled)


async def _close(iterator: AsyncIterator[Any], limit: float, stalled: StreamStalled | None) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    if stalled is None:
        # Bounded all the same: a close that hangs on a dead connection would be the original hang again.
        async with asyncio.timeout(limit):
            await aclose()
        return
    try:
        async with asyncio.timeout(limit):
            await aclose()
    except Exception as exc:
        # The stall is the news: a failing close must not replace StreamStalled in the caller's handler.
        with contextlib.suppress(Exception):
            stalled.add_note(f"closing stream {stalled.stream!r} also failed: {exc!r}")
