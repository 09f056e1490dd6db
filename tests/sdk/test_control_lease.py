"""The instance side of a runner's handover, inside Control: standby, promotion, release, resume, exit.

A test plays the runner on the other end of a real socketpair (the runner itself is tested in
test_runner.py, and the whole reload with the example bot in tests/test_hot_reload_end_to_end.py)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from horus_sdk import Control, Order, OrderJournal
from horus_sdk.control import HandedOver, LeaseLost
from horus_sdk.control_files import read_status, status_path
from horus_sdk.lease import Lease, LeaseError

BUY = Order("BTC-USD", "buy", 1.0)


class PlayedRunner:
    """The runner's end of the channel: orders go out, the instance's events come back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10)
        self.pending = b""

    def on(self, event: str, op: str) -> threading.Thread:
        """Answer ``event`` with ``op`` from a thread: a HandedOver is a SystemExit, which asyncio lets out
        of the loop when it ends a task other than the test's own, so the test awaits cycle() itself."""
        seen: list[dict[str, Any]] = []

        def answer() -> None:
            message = self._next()
            seen.append(message)
            if message.get("event") == event:
                self.order(op)

        thread = threading.Thread(target=answer, daemon=True)
        thread.seen = seen  # type: ignore[attr-defined]
        thread.start()
        return thread

    def order(self, op: str) -> None:
        self.sock.sendall(json.dumps({"op": op}).encode() + b"\n")

    async def expect(self, event: str) -> dict[str, Any]:
        message = await asyncio.to_thread(self._next)
        assert message.get("event") == event, message
        return message

    def _next(self) -> dict[str, Any]:
        while b"\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the instance closed its channel")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlayedRunner:
    runner_end, instance_end = socket.socketpair()
    monkeypatch.setenv("HORUS_RUNNER_FD", str(instance_end.detach()))
    monkeypatch.setenv("HORUS_RUNNER_LEASE", str(tmp_path / "lease"))
    monkeypatch.setenv("HORUS_RUNNER_VERSION", "v2")
    monkeypatch.setenv("HORUS_RUNNER_HANDOVER_TIMEOUT", "2")
    played = PlayedRunner(runner_end)
    yield played
    runner_end.close()


async def cycles_until_handed_over(control: Control) -> None:
    for _ in range(500):
        await control.cycle()
        await asyncio.sleep(0.01)


async def promoted(control: Control, runner: PlayedRunner) -> int:
    """Drive a standby through ready and promotion; returns its epoch."""
    first = asyncio.ensure_future(control.cycle())
    await runner.expect("ready")
    runner.order("promote")
    await first
    return int((await runner.expect("promoted"))["epoch"])


async def trading(control: Control, runner: PlayedRunner) -> int:
    """A started Control driven to its first trading cycle under the played runner; returns its epoch."""
    await runner.expect("hello")
    await promoted(control, runner)
    control.reconciled({})
    await control.cycle()
    return int((await runner.expect("trading"))["epoch"])


async def test_a_standby_refuses_every_order_and_writes_nothing_until_promoted(
    runner: PlayedRunner, tmp_path: Path
) -> None:
    control = Control(tmp_path / "control", poll_interval=0.05)
    async with control:
        hello = await runner.expect("hello")
        assert hello["pid"] == os.getpid() and hello["version"] == "v2"
        assert control.standby and control.epoch is None
        refused = control.permit(BUY)
        assert not refused and "standby" in refused.reason
        assert not status_path(tmp_path / "control").exists(), "a standby wrote the trading instance's status"

        epoch = await promoted(control, runner)
        assert epoch == 1 and control.epoch == 1 and not control.standby
        assert read_status(tmp_path / "control")["lease"] == {"epoch": 1, "version": "v2"}
        assert not control.permit(BUY), "trading before its reconcile"
        control.reconciled({})
        await control.cycle()
        assert (await runner.expect("trading"))["epoch"] == 1
        assert control.permit(BUY)


async def test_a_handover_releases_at_the_cycle_boundary_then_exits(runner: PlayedRunner, tmp_path: Path) -> None:
    control = Control(tmp_path / "control", poll_interval=0.05)
    async with control:
        await trading(control, runner)

        runner.order("handover")
        await asyncio.sleep(0.1)  # the order arrives mid-cycle: nothing changes until the boundary
        assert control.permit(BUY)
        answering = runner.on("released", "exit")
        with pytest.raises(HandedOver, match="handed trading over"):
            await control.cycle()
        answering.join(5)
        assert answering.seen[0]["epoch"] == 1  # type: ignore[attr-defined]
        assert not control.permit(BUY), "an instance that released the lease may not trade"
    assert Lease(tmp_path / "lease").try_acquire() == 2, "the lease was not given back"


async def test_resume_after_a_failed_takeover_trades_on_with_a_larger_epoch(
    runner: PlayedRunner, tmp_path: Path
) -> None:
    journal = OrderJournal(tmp_path / "orders.db")
    assert journal.epoch == 1
    control = Control(tmp_path / "control", poll_interval=0.05, journal=journal)
    async with control:
        await runner.expect("hello")
        epoch = await promoted(control, runner)
        assert epoch == 2, "the lease's epoch must be above the journal's own"
        assert journal.epoch == 2 and journal.new_client_order_id().startswith("h2-")
        control.reconciled({})
        await control.cycle()
        await runner.expect("trading")
        runner.order("handover")
        await asyncio.sleep(0.1)
        boundary = asyncio.ensure_future(control.cycle())
        await runner.expect("released")
        # The new version took the lease (epoch 3) and failed; the runner reaped it, then says resume.
        standby_lease = Lease(tmp_path / "lease")
        assert standby_lease.try_acquire(at_least=journal.highest_epoch()) == 3
        standby_lease.release()
        runner.order("resume")
        await boundary
        resumed = await runner.expect("resumed")
        assert resumed["epoch"] == 4 and control.epoch == 4 and journal.epoch == 4
        assert control.permit(BUY)
        assert read_status(tmp_path / "control")["lease"]["epoch"] == 4
    journal.close()


async def test_a_runner_that_goes_away_ends_the_active_instance_at_its_next_boundary(
    runner: PlayedRunner, tmp_path: Path
) -> None:
    control = Control(tmp_path / "control", poll_interval=0.05)
    async with control:
        await runner.expect("hello")
        await promoted(control, runner)
        control.reconciled({})
        runner.sock.close()
        with pytest.raises(HandedOver, match="runner is gone"):
            await cycles_until_handed_over(control)
    assert Lease(tmp_path / "lease").try_acquire() == 2


async def test_a_standby_whose_runner_goes_away_ends_without_trading(runner: PlayedRunner, tmp_path: Path) -> None:
    control = Control(tmp_path / "control", poll_interval=0.05)
    async with control:
        await runner.expect("hello")
        closing = threading.Thread(target=lambda: (runner._next(), runner.sock.close()), daemon=True)
        closing.start()  # at "ready", the runner goes away
        with pytest.raises(HandedOver, match="went away"):
            await control.ready()  # not in a task: asyncio lets a SystemExit out of the loop from one
    assert not status_path(tmp_path / "control").exists()


async def a_cycle_stopped_in_its_middle(control: Control, runner: PlayedRunner) -> None:
    async with control.cycle():
        runner.order("stop")
        await asyncio.sleep(0.1)  # the order arrives mid-cycle: this cycle still trades to its end
        assert control.permit(BUY)


async def test_a_stop_order_releases_at_the_end_of_the_cycle_block_and_exits_without_waiting(
    runner: PlayedRunner, tmp_path: Path
) -> None:
    control = Control(tmp_path / "control", poll_interval=0.05)
    async with control:
        await trading(control, runner)
        with pytest.raises(HandedOver, match="asked it to stop"):
            await a_cycle_stopped_in_its_middle(control, runner)
        assert (await runner.expect("released"))["epoch"] == 1
        assert not control.permit(BUY)


def test_only_one_holder_at_a_time_and_the_epoch_only_grows(tmp_path: Path) -> None:
    first, second = Lease(tmp_path / "lease"), Lease(tmp_path / "lease")
    assert first.try_acquire() == 1
    assert second.try_acquire() is None
    first.release()
    assert second.try_acquire(at_least=10) == 11
    second.release()
    assert first.try_acquire() == 12
    assert first.holder() is not None and first.holder()["pid"] == os.getpid()  # type: ignore[index]


def test_a_lease_file_others_may_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lease"
    path.touch()
    path.chmod(0o666)
    with pytest.raises(LeaseError, match="others may write"):
        Lease(path).try_acquire()


async def test_a_standby_told_to_stop_ends_at_once_without_waiting_to_be_promoted(
    runner: PlayedRunner, tmp_path: Path
) -> None:
    """The runner stopping (SIGTERM) during a reload tells its standby "stop": it waited for a promotion that
    would never come, until the runner's --stop-timeout ran out and it was terminated."""
    control = Control(tmp_path / "control", poll_interval=0.05)
    async with control:
        await runner.expect("hello")
        stopping = runner.on("ready", "stop")
        backstop = threading.Timer(5.0, runner.sock.close)  # a runner that goes away ends the wait in any case
        backstop.start()
        started = time.monotonic()
        try:
            with pytest.raises(HandedOver):
                await control.ready()
        finally:
            backstop.cancel()
        assert time.monotonic() - started < 3.0, "the standby waited for a promotion after it was told to stop"
        stopping.join(5)
    assert not status_path(tmp_path / "control").exists()


def test_a_lease_whose_file_was_deleted_or_replaced_is_lost_and_says_so(tmp_path: Path) -> None:
    """The flock is on the file the holder opened. Deleted (an operator's rm -rf of the state dir) or replaced,
    a new holder locks a new file at the same path while the first still holds the old one: two traders."""
    path = tmp_path / "lease"
    first = Lease(path)
    assert first.try_acquire() == 1
    assert first.lost() is None
    path.unlink()
    second = Lease(path)
    assert second.try_acquire() is not None  # the hole: the kernel sees two different files
    assert first.lost() == f"the lease file {path} was deleted or replaced while this instance held it"
    assert second.lost() is None
    first.release()
    assert first.lost() is None  # not held: nothing to lose


async def test_an_instance_whose_lease_file_is_deleted_stops_trading_at_its_next_boundary(
    runner: PlayedRunner, tmp_path: Path
) -> None:
    async with Control(tmp_path / "control") as control:
        await trading(control, runner)
        assert control.permit(BUY).allowed
        (tmp_path / "lease").unlink()
        with pytest.raises(LeaseLost) as lost:
            await control.cycle()
        assert lost.value.code != 0, "a lost lease is no clean handover: whatever supervises the bot restarts it"
        assert "was deleted or replaced while this instance held it" in str(lost.value)
        assert not control.permit(BUY).allowed
        assert "another instance may be trading" in control.permit(BUY).reason
