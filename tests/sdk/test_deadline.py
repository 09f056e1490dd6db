"""deadline() turns a hung await into an exception that names it; guard_stream() does the same for feeds."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import AsyncIterator

import pytest

from horus_sdk import operations
from horus_sdk.deadline import DeadlineExceeded, StreamStalled, deadline, guard_stream
from tests.support import wait_until


def in_flight_names() -> list[str]:
    return [op.name for op in operations.in_flight()]


async def collect(stream: AsyncIterator[int], into: list[int] | None = None) -> list[int]:
    received = [] if into is None else into
    async for item in stream:
        received.append(item)
    return received


async def test_seed_000_a_hung_order_raises_deadline_exceeded_naming_it() -> None:
    """The 7-hour hang: place_maker_order() never returned; now it fails fast and says which call hung."""

    async def place_maker_order() -> None:
        async with deadline("place_maker_order", 0.2):
            await asyncio.Event().wait()

    task = asyncio.create_task(place_maker_order())
    await wait_until(lambda: "place_maker_order" in in_flight_names(), timeout=2)
    (op,) = [op for op in operations.in_flight() if op.name == "place_maker_order"]
    assert 0 <= op.age() < 5

    with pytest.raises(DeadlineExceeded) as caught:
        await task

    assert str(caught.value) == "place_maker_order did not finish within 0.2 s"
    assert caught.value.operation == "place_maker_order"
    assert caught.value.seconds == 0.2
    assert isinstance(caught.value, TimeoutError)
    assert "place_maker_order" not in in_flight_names()


async def test_decorator_form_limits_each_call() -> None:
    @deadline("fetch_book", 0.1)
    async def fetch_book(market: str, hang: bool) -> str:
        if hang:
            await asyncio.Event().wait()
        return f"book:{market}"

    assert fetch_book.__name__ == "fetch_book"
    assert await fetch_book("ETH", hang=False) == "book:ETH"
    with pytest.raises(DeadlineExceeded, match=r"^fetch_book did not finish within 0\.1 s$"):
        await fetch_book("ETH", hang=True)
    assert "fetch_book" not in in_flight_names()


async def test_concurrent_decorated_calls_are_each_in_flight() -> None:
    release = asyncio.Event()

    @deadline("wait_for_fill", 30)
    async def wait_for_fill() -> None:
        await release.wait()

    tasks = [asyncio.create_task(wait_for_fill()) for _ in range(3)]
    await wait_until(lambda: in_flight_names().count("wait_for_fill") == 3, timeout=2)
    release.set()
    await asyncio.gather(*tasks)
    assert "wait_for_fill" not in in_flight_names()


async def test_a_body_that_finishes_in_time_returns_and_leaves_no_operation() -> None:
    async with deadline("cancel_order", 5) as d:
        assert "cancel_order" in in_flight_names()
        await asyncio.sleep(0)
    assert d.name == "cancel_order"
    assert "cancel_order" not in in_flight_names()


async def test_errors_from_the_body_pass_through_unchanged() -> None:
    with pytest.raises(ConnectionResetError):
        async with deadline("place_maker_order", 5):
            raise ConnectionResetError("peer went away")
    assert "place_maker_order" not in in_flight_names()


async def test_an_inner_timeout_is_not_reported_as_this_deadline() -> None:
    with pytest.raises(TimeoutError) as caught:
        async with deadline("outer", 5), asyncio.timeout(0.01):
            await asyncio.Event().wait()
    assert not isinstance(caught.value, DeadlineExceeded)


async def test_cancelling_the_caller_still_cancels_and_unregisters() -> None:
    async def hold() -> None:
        async with deadline("hold", 30):
            await asyncio.Event().wait()

    task = asyncio.create_task(hold())
    await wait_until(lambda: "hold" in in_flight_names(), timeout=2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "hold" not in in_flight_names()


def test_deadline_decorates_only_async_functions() -> None:
    def not_async() -> None:
        pass

    with pytest.raises(TypeError, match="async functions"):
        deadline("x", 1)(not_async)


def test_the_exceptions_survive_pickling() -> None:
    err = pickle.loads(pickle.dumps(DeadlineExceeded("place_maker_order", 30)))
    assert (str(err), err.operation, err.seconds) == (
        "place_maker_order did not finish within 30 s",
        "place_maker_order",
        30,
    )
    stalled = pickle.loads(pickle.dumps(StreamStalled("ticks", 60)))
    assert (str(stalled), stalled.stream) == ("stream 'ticks' sent nothing for 60 s", "ticks")


class Feed:
    """An async generator feed that sends ``items`` then, unless ``end``, goes quiet; records its closing."""

    def __init__(self, items: list[int], *, end: bool = False) -> None:
        self.items = items
        self.end = end
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[int]:
        try:
            for item in self.items:
                yield item
            if not self.end:
                await asyncio.Event().wait()  # the socket is open, nothing arrives
        finally:
            self.closed.set()


async def test_guard_stream_raises_stream_stalled_on_a_quiet_feed_and_closes_it() -> None:
    feed = Feed([1, 2])
    received: list[int] = []
    with pytest.raises(StreamStalled) as caught:
        await collect(guard_stream(feed, 0.2, name="ticks"), received)

    assert received == [1, 2]
    assert str(caught.value) == "stream 'ticks' sent nothing for 0.2 s"
    assert caught.value.stream == "ticks"
    assert caught.value.seconds == 0.2
    assert isinstance(caught.value, TimeoutError)
    assert feed.closed.is_set()


async def test_guard_stream_passes_every_item_of_a_finite_stream() -> None:
    feed = Feed([1, 2, 3], end=True)
    assert await collect(guard_stream(feed, 1)) == [1, 2, 3]
    assert feed.closed.is_set()


async def test_guard_stream_closes_the_feed_when_the_consumer_stops_early() -> None:
    feed = Feed([1, 2, 3], end=True)
    async with contextlib.aclosing(guard_stream(feed, 1)) as ticks:
        async for tick in ticks:
            if tick == 1:
                break
    assert feed.closed.is_set()

    # Without aclosing() the loop's async-generator finalizer closes it soon after.
    other = Feed([1, 2, 3], end=True)
    async for tick in guard_stream(other, 1):
        if tick == 1:
            break
    await asyncio.wait_for(other.closed.wait(), timeout=2)


async def test_guard_stream_accepts_an_iterator_without_aclose() -> None:
    class Quiet:
        def __init__(self) -> None:
            self.queue: asyncio.Queue[int] = asyncio.Queue()
            self.queue.put_nowait(7)

        def __aiter__(self) -> Quiet:
            return self

        async def __anext__(self) -> int:
            return await self.queue.get()

    received: list[int] = []
    with pytest.raises(StreamStalled, match="'stream' sent nothing"):
        await collect(guard_stream(Quiet(), 0.1), received)
    assert received == [7]


async def test_a_stall_is_reported_even_when_the_feed_fails_as_it_is_cancelled() -> None:
    async def broken_feed() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.Event().wait()
        finally:
            raise ConnectionResetError("close failed")

    with pytest.raises(StreamStalled) as caught:
        await collect(guard_stream(broken_feed(), 0.1, name="book"))
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_a_stall_is_reported_even_when_aclose_fails() -> None:
    class Unclosable:
        def __aiter__(self) -> Unclosable:
            return self

        async def __anext__(self) -> int:
            await asyncio.Event().wait()
            return 0

        async def aclose(self) -> None:
            raise ConnectionResetError("close failed")

    with pytest.raises(StreamStalled) as caught:
        await collect(guard_stream(Unclosable(), 0.1, name="book"))
    assert any("close failed" in note for note in caught.value.__notes__)


async def test_a_hanging_aclose_does_not_hang_the_stall() -> None:
    class Hangs:
        def __aiter__(self) -> Hangs:
            return self

        async def __anext__(self) -> int:
            await asyncio.Event().wait()
            return 0

        async def aclose(self) -> None:
            await asyncio.Event().wait()

    with pytest.raises(StreamStalled):
        await collect(guard_stream(Hangs(), 0.1, name="book"))
