"""An example trading bot behind horus-sdk's kill switch, trading on the paper exchange.

    python examples/sdk/trading_bot.py --exchange URL --control DIR [--symbol BTC-USD] [--cycle 0.2]
        [--quantity 0.01] [--reduce-after N] [--halt-after N] [--window S] [--dust QTY]
        [--call-timeout S] [--block-loop-after S] [--log FILE]

The strategy is deliberately trivial (it keeps one or two lots: it buys while it holds less than two and
sells when it holds two); everything around it is what a bot that runs real money unattended needs:

- ``Control`` in DIR: it asks ``control.permit(order)`` before every order and logs each decision with
  the price it saw and how old that price was. ``horus control NAME halt|reduce|flatten|resume`` (or
  ``issue_command``) steers it through DIR, also while the bot is down: a halt written then is in force
  when it starts again.
- Automatic trips: ``--reduce-after`` rejects or errors within ``--window`` seconds allow only orders that
  reduce the position (the bot then sells its position down); ``--halt-after`` close the position and
  halt. Both hold until a resume with a reason; no restart is needed.
- Its own ``cancel_all()``, ``positions()`` and ``flatten()`` for the SDK: a flatten that fills in part is
  retried on what is left, and a leftover at or under ``--dust`` counts as closed.
- Every exchange call runs in a thread under a ``deadline``: a hung exchange is an error, never a hung bot.
  A refused or dropped connection marks the broker disconnected; the next answer, connected again.
- A ``Heartbeat`` (DIR/heartbeat.json) with a ``prices`` channel: a price older than 5 s may not open
  new exposure.
- ``--block-loop-after S`` blocks the event loop for good after S seconds, like a synchronous call in
  async code: the SDK's watcher thread still acknowledges a halt, and status.json's last cycle goes stale.

One log line per order sent, denied, rejected or failed, to ``--log`` (or stderr), beginning ``ORDER``
(``FLATTEN`` for the flatten's own orders), with the SDK's own lines (``horus_sdk control.trip ...``).
SIGTERM or Ctrl-C stops it cleanly: exit 0. Standard library and horus-sdk only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import math
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from horus_sdk import Control, Heartbeat, Mode, Order, Trips, deadline

log = logging.getLogger("trading_bot")

PRICE_FEED = "prices"
PRICE_MAX_AGE_SECONDS = 5.0
HEARTBEAT_SECONDS = 0.5
# An answer is a few KiB at most; a larger one is not from the exchange we know.
MAX_ANSWER_BYTES = 1024 * 1024
# Quantities sent are rounded to the 10 decimal places the exchange keeps, so float noise sends no phantom dust.
QUANTITY_DIGITS = 10


class ExchangeUnreachable(Exception):
    """The connection was refused, reset or closed without an answer: the broker is not there."""


class ExchangeError(Exception):
    """The exchange answered, but with an error (an HTTP error status, or no JSON)."""


class Exchange:
    """The paper exchange's HTTP API over urllib; each call runs in a thread under a deadline."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    async def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        # The thread's own socket timeout ends the request too, so a hung call never keeps a worker thread
        # long after the deadline gave up on it.
        async with deadline(f"exchange {method} {path}", self.timeout):
            return await asyncio.to_thread(self._request, method, path, body)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            with error:
                detail = _error_text(error.read(MAX_ANSWER_BYTES))
            raise ExchangeError(f"{method} {path} answered {error.code}: {detail}") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise TimeoutError(f"{method} {path}: no connection within {self.timeout:g} s") from None
            raise ExchangeUnreachable(f"{method} {path}: {error.reason}") from None
        except ConnectionError as error:  # refused, reset, or closed with no answer (RemoteDisconnected)
            raise ExchangeUnreachable(f"{method} {path}: {error or type(error).__name__}") from None
        except http.client.HTTPException as error:
            raise ExchangeError(f"{method} {path}: a broken answer ({type(error).__name__})") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise ExchangeError(f"{method} {path}: an answer over {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(raw)
        except ValueError:
            raise ExchangeError(f"{method} {path}: the answer is not JSON") from None


# What an exchange call may raise; each was already logged and told to the Control when it reaches the caller.
EXCHANGE_FAILURES = (ExchangeUnreachable, ExchangeError, TimeoutError)


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error"))
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")


class TradingBot:
    """The strategy and the broker hooks ``Control`` calls (``positions``, ``cancel_all``, ``flatten``)."""

    def __init__(self, exchange: Exchange, heartbeat: Heartbeat, args: argparse.Namespace) -> None:
        self.exchange = exchange
        self.heartbeat = heartbeat
        self.symbol: str = args.symbol
        self.lot: float = args.quantity
        self.block_loop_after: float | None = args.block_loop_after
        self.control: Control | None = None  # given once the Control exists: it needs the bot as its hooks
        self.price: float | None = None
        self.price_at: float | None = None  # monotonic time the price was read
        self.started = time.monotonic()
        # Client order ids are unique across restarts too: an exchange answers a repeated id with the old order.
        self._run = uuid.uuid4().hex[:8]
        self._orders_made = 0

    @property
    def gate(self) -> Control:
        if self.control is None:
            raise RuntimeError("the bot trades only behind its Control")
        return self.control

    # -- the hooks Control calls --------------------------------------------------------------------------

    async def positions(self) -> dict[str, float]:
        answer = await self._call("GET", "/positions")
        positions = answer.get("positions") if isinstance(answer, dict) else None
        if not isinstance(positions, dict):
            error = ExchangeError(f"GET /positions: no positions in {answer!r:.200}")
            self.gate.record_error(error)
            raise error
        return {str(symbol): float(quantity) for symbol, quantity in positions.items()}

    async def cancel_all(self) -> None:
        answer = await self._call("DELETE", "/orders")
        cancelled = answer.get("cancelled") if isinstance(answer, dict) else None
        if cancelled:
            log.info("CANCEL %d working order(s): %s", len(cancelled), ", ".join(map(str, cancelled)))

    async def flatten(self, positions: Mapping[str, float]) -> None:
        """One market order against each position; the SDK re-reads positions to see what filled."""
        for symbol, quantity in positions.items():
            side = "sell" if quantity > 0 else "buy"
            order = Order(symbol, side, round(abs(quantity), QUANTITY_DIGITS), client_order_id=self._new_id("f"))
            permit = self.gate.permit(order)
            self.gate.decision("flatten", symbol=symbol, side=side, quantity=order.quantity, permit=permit)
            if not permit:
                log.warning("FLATTEN denied %s: %s", _describe(order), permit.reason)
                continue
            await self._send(order, "FLATTEN")

    # -- one cycle ----------------------------------------------------------------------------------------

    async def reconcile(self, stop: asyncio.Event, cycle_seconds: float) -> None:
        """Learn the true positions before trading: until then the gate says RECONCILING to every order."""
        while not stop.is_set():
            await self.gate.cycle()
            try:
                positions = await self.positions()
            except EXCHANGE_FAILURES as exc:
                log.warning("RECONCILE cannot read positions yet: %s", exc)
            else:
                self.gate.reconciled(positions=positions)
                log.info("RECONCILED positions: %s", _positions_text(positions))
                return
            await _pause(stop, cycle_seconds)

    async def cycle(self) -> None:
        control = self.gate
        await control.cycle()
        self._block_loop_when_due()
        try:
            await self._read_price()
            positions = await self.positions()
        except EXCHANGE_FAILURES:
            return  # _call has said why and told the Control; without a position there is nothing to decide
        control.set_positions(positions)
        position = positions.get(self.symbol, 0.0)
        if self.price is not None:
            control.exposure(notional={self.symbol: round(abs(position) * self.price, 2)})
        wanted = self._signal(position, control.mode)
        if wanted is None:
            return
        side, quantity = wanted
        order = Order(self.symbol, side, quantity, feed=PRICE_FEED, client_order_id=self._new_id("t"))
        permit = control.permit(order)
        price_age = None if self.price_at is None else round(time.monotonic() - self.price_at, 3)
        control.decision(
            "signal",
            symbol=self.symbol,
            side=side,
            quantity=quantity,
            position=position,
            price=self.price,
            price_age_seconds=price_age,
            permit=permit,
            client_order_id=order.client_order_id,
        )
        if not permit:
            log.info("ORDER denied %s: %s", _describe(order), permit.reason)
            return
        with contextlib.suppress(*EXCHANGE_FAILURES):
            await self._send(order, "ORDER")

    def _signal(self, position: float, mode: Mode) -> tuple[str, float] | None:
        """(side, quantity) to trade now, or None. REDUCING allows only orders that reduce the position, so
        then the bot works its position down a lot at a time instead of asking for what would be refused."""
        if mode is Mode.REDUCING:
            if position > 0:
                return "sell", round(min(self.lot, position), QUANTITY_DIGITS)
            if position < 0:
                return "buy", round(min(self.lot, -position), QUANTITY_DIGITS)
            return None
        holds_two_lots = position >= 2 * self.lot * (1 - 1e-9)
        return ("sell" if holds_two_lots else "buy"), self.lot

    async def _read_price(self) -> None:
        answer = await self._call("GET", "/prices")
        price = answer.get("prices", {}).get(self.symbol) if isinstance(answer, dict) else None
        if not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
            # The last good price stays, and ages: once it is older than its limit, the gate allows no
            # new exposure on it.
            log.warning("PRICE none for %s in %r", self.symbol, answer)
            return
        self.price, self.price_at = float(price), time.monotonic()
        self.heartbeat.progress(PRICE_FEED)

    async def _send(self, order: Order, label: str) -> None:
        body = {
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side,
            "quantity": order.quantity,
            "type": "market",
        }
        try:
            answer = await self._call("POST", "/orders", body)
        except EXCHANGE_FAILURES as exc:
            log.warning("%s failed %s: %s", label, _describe(order), exc)
            raise
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == "rejected":
            reason = str(answer.get("reason") or "no reason given")
            # Logged before the Control hears of it, so that a trip it sets off reads after its cause.
            log.warning("%s rejected %s: %s", label, _describe(order), reason)
            self.gate.record_reject(reason)
            return
        filled, left = answer.get("filled_quantity", 0), answer.get("remaining_quantity", 0)
        price = answer.get("avg_price")
        if left:
            outcome = f"filled {filled} of {order.quantity:g} at {price}, {left} left working"
        elif filled:
            outcome = f"filled at {price}"
        else:
            outcome = str(status)
        log.info("%s sent %s: %s", label, _describe(order), outcome)
        if left and label == "ORDER":
            # A market order's remainder never fills by itself here; the next cycle decides afresh.
            with contextlib.suppress(*EXCHANGE_FAILURES):
                await self._call("DELETE", f"/orders/{order.client_order_id}")

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """An exchange call, with what it says about the broker told to the Control."""
        control = self.gate
        try:
            answer = await self.exchange.call(method, path, body)
        except ExchangeUnreachable as exc:
            # Not counted as an error: a connection lost is the disconnect trips' business (REDUCING after
            # a while, flatten after longer), not a burst of rejects.
            control.broker_disconnected(str(exc))
            log.warning("EXCHANGE unreachable: %s", exc)
            raise
        except (ExchangeError, TimeoutError) as exc:
            control.record_error(exc)
            log.warning("EXCHANGE error: %s", exc)
            raise
        control.broker_connected()
        return answer

    def _new_id(self, kind: str) -> str:
        self._orders_made += 1
        return f"{kind}-{self._run}-{self._orders_made}"

    def _block_loop_when_due(self) -> None:
        if self.block_loop_after is None or time.monotonic() - self.started < self.block_loop_after:
            return
        log.warning("blocking the event loop on purpose (--block-loop-after): no cycle runs again")
        # asyncio's own SIGTERM handler would wait for the loop, which never runs again: end from the signal.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
            signal.signal(signum, _exit_now)
        while True:
            time.sleep(3600)  # the stuck loop this option exists to show


def _exit_now(signum: int, frame: object) -> None:
    log.info("received %s while the loop is blocked: stopping", signal.Signals(signum).name)
    raise SystemExit(0)


def _describe(order: Order) -> str:
    return f"{order.side} {order.quantity:g} {order.symbol} ({order.client_order_id})"


def _positions_text(positions: Mapping[str, float]) -> str:
    return ", ".join(f"{symbol} {quantity:g}" for symbol, quantity in positions.items()) or "flat"


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep until the next cycle, or less when asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="An example trading bot behind horus-sdk's kill switch.")
    parser.add_argument("--exchange", required=True, help="the paper exchange's URL")
    parser.add_argument("--control", type=Path, required=True, help="the control dir (control.json, status.json)")
    parser.add_argument("--symbol", default="BTC-USD")
    parser.add_argument("--cycle", type=_positive, default=0.2, help="seconds between cycles")
    parser.add_argument("--quantity", type=_positive, default=0.01, help="one lot")
    parser.add_argument("--reduce-after", type=_whole, default=5, help="rejects or errors in the window: REDUCING")
    parser.add_argument("--halt-after", type=_whole, default=10, help="rejects or errors in the window: flatten, halt")
    parser.add_argument("--window", type=_positive, default=60.0, help="seconds in which failures are counted")
    parser.add_argument("--dust", type=_not_negative, default=0.0, help="a leftover this small counts as closed")
    parser.add_argument("--call-timeout", type=_positive, default=2.0, help="seconds an exchange call may take")
    parser.add_argument("--block-loop-after", type=_not_negative, default=None, metavar="S")
    parser.add_argument("--log", type=Path, default=None, help="log file (default: stderr)")
    return parser.parse_args(argv)


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text}")
    return value


def _whole(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text}")
    return value


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    heartbeat = Heartbeat(args.control / "heartbeat.json", interval=HEARTBEAT_SECONDS)
    bot = TradingBot(Exchange(args.exchange, args.call_timeout), heartbeat, args)
    trips = Trips(
        window_seconds=args.window, reduce_after_failures=args.reduce_after, halt_after_failures=args.halt_after
    )
    control = Control(
        args.control,
        hooks=bot,
        trips=trips,
        heartbeat=heartbeat,
        feeds={PRICE_FEED: PRICE_MAX_AGE_SECONDS},
        dust=args.dust,
        hook_timeout=args.call_timeout * 3,
    )
    bot.control = control
    # The Control first: it creates the control dir the heartbeat file lives in.
    async with control, heartbeat:
        log.info("started pid=%s exchange=%s mode=%s", os.getpid(), args.exchange, control.mode)
        await bot.reconcile(stop, args.cycle)
        while not stop.is_set():
            try:
                await bot.cycle()
            except Exception as exc:
                # A bug of the bot's own counts toward the trips like a failed call: ten of them halt it.
                log.exception("CYCLE failed: %s", exc)
                control.record_error(exc)
            await _pause(stop, args.cycle)
        log.info("stopping: mode=%s", control.mode)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        **({"filename": str(args.log)} if args.log is not None else {"stream": sys.stderr}),
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
