"""An example trading bot behind horus-sdk's kill switch, trading on the paper exchange.

    python examples/sdk/trading_bot.py --exchange URL --control DIR [--symbol BTC-USD] [--cycle 0.2]
        [--quantity 0.01] [--reduce-after N] [--halt-after N] [--window S] [--dust QTY]
        [--call-timeout S] [--block-loop-after S] [--log FILE]
        [--journal FILE] [--id-prefix P] [--max-orders N]

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

- An order journal (``--journal``, default DIR/orders.db; client order ids ``--id-prefix``, default ``h``):
  every order goes through ``horus_sdk.orders.submit``, so its intent is committed before it is sent, and
  an ambiguous outcome is looked up by client id, never resent. The bot's positions live in the journal,
  moved in the same transaction as every fill it records, so a kill -9 never leaves them a fill behind.
- At start, before any order: ``resolve_in_doubt`` (orders a killed run left INTENT, SENT or UNRESOLVED),
  then a reconcile with the exchange (open orders, positions, fills since the journal's checkpoint, paged
  until complete): fills made while the bot was down are applied, its own orders from an older run are
  canceled, and the exchange's positions win. Until a reconcile is complete the bot stays RECONCILING (it
  cycles, sends nothing) and tries again every few seconds. The fills checkpoint moves on only to a fill no
  later than the first fill of any order the journal has not finished.
- ``--max-orders N``: send no new order once the journal holds N orders, counted across restarts (the bot
  keeps cycling). For tests, ``HORUS_EXAMPLE_PAUSE_AFTER_INTENT=SECONDS`` sleeps (blocking) between the
  committed intent and the send, logging ``PAUSE after intent <id>`` first, so that a kill can land there.

One log line per order sent, denied, rejected or failed, to ``--log`` (or stderr), beginning ``ORDER``
(``FLATTEN`` for the flatten's own orders), with the SDK's own lines (``horus_sdk control.trip ...``).
Under a runner (``python -m horus_sdk.runner ... -- python trading_bot.py ...``) it starts as a standby:
it reconciles read-only, then ``control.ready()`` waits for the runner's handover; only the instance that
holds the lease trades and beats the heartbeat, and its epoch is in every client order id.

SIGUSR1 reconciles again on demand (the outcome in status.json's ``reconcile`` and the log).
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from horus_sdk import (
    Control,
    Heartbeat,
    JournalEntry,
    Mode,
    Order,
    OrderJournal,
    OrderState,
    Permit,
    Reconciliation,
    Trips,
    deadline,
    resolve_in_doubt,
    run_reconcile,
    submit,
)
from horus_sdk.reconcile import Fetched

log = logging.getLogger("trading_bot")

PRICE_FEED = "prices"
PRICE_MAX_AGE_SECONDS = 5.0
HEARTBEAT_SECONDS = 0.5
# An answer is a few KiB at most; a larger one is not from the exchange we know.
MAX_ANSWER_BYTES = 1024 * 1024
# Quantities sent are rounded to the 10 decimal places the exchange keeps, so float noise sends no phantom dust.
QUANTITY_DIGITS = 10
POSITIONS_STATE = "positions"
FILLS_CHECKPOINT = "fills"
RECONCILE_RETRY_SECONDS = 3.0
PAUSE_AFTER_INTENT_ENV = "HORUS_EXAMPLE_PAUSE_AFTER_INTENT"
# Lookups of an order whose answer was lost, this far apart: the exchange may still be taking it in.
LOOKUPS = 3
LOOKUP_INTERVAL_SECONDS = 0.5
_SIGN = {"buy": 1.0, "sell": -1.0}


class ExchangeUnreachable(Exception):
    """The connection was refused, reset or closed without an answer: the broker is not there."""


class ExchangeError(Exception):
    """The exchange answered, but with an error (an HTTP error status, or no JSON)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when there was one
        self.body = body  # the answer's JSON, when it had one


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
                raw = error.read(MAX_ANSWER_BYTES)
            raise ExchangeError(
                f"{method} {path} answered {error.code}: {_error_text(raw)}", error.code, _json_or_none(raw)
            ) from None
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


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error"))
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")


class PositionJournal(OrderJournal):
    """An order journal whose every recorded fill moves the persisted positions in the same transaction.

    ``submit``, the start's lookups and the reconcile all record fills through ``record_fill``; doing the
    position's arithmetic there, inside its transaction, means no kill can ever commit the one without the
    other."""

    def record_fill(self, client_order_id: str, cumulative_filled: float, avg_price: float | None) -> JournalEntry:
        with self.transaction():
            before = self.get(client_order_id)
            entry = super().record_fill(client_order_id, cumulative_filled, avg_price)
            moved = entry.filled_quantity - (before.filled_quantity if before is not None else 0.0)
            if moved:
                positions = self.positions()
                held = positions.get(entry.symbol, 0.0) + _SIGN[entry.side] * moved
                positions[entry.symbol] = round(held, QUANTITY_DIGITS)
                self.put_state(POSITIONS_STATE, {s: q for s, q in positions.items() if q})
            return entry

    def positions(self) -> dict[str, float]:
        """The bot's own positions, as its last committed fill left them."""
        saved = self.get_state(POSITIONS_STATE, {})
        return {str(symbol): float(quantity) for symbol, quantity in saved.items()} if isinstance(saved, dict) else {}


class _Granted:
    """The gate ``submit`` asks just before it marks an order sent. The bot asked the Control itself a moment
    earlier, with nothing awaited since (so a denial never becomes a journal entry, nor a reject): that answer
    stands, and the order is counted once. An unresolved order still goes to the Control."""

    def __init__(self, control: Control, permit: Permit, pause: float) -> None:
        self.control = control
        self.granted = permit
        self.pause = pause

    def permit(self, order: Any) -> Permit:
        if self.pause:
            log.info("PAUSE after intent %s for %g s", order.client_order_id, self.pause)
            time.sleep(self.pause)  # blocking on purpose: a test's kill must find the intent and nothing sent
        return self.granted

    def order_unresolved(self, client_order_id: str, why: str) -> None:
        self.control.order_unresolved(client_order_id, why)


class TradingBot:
    """The strategy and the broker hooks ``Control`` calls (``positions``, ``cancel_all``, ``flatten``)."""

    def __init__(
        self, exchange: Exchange, heartbeat: Heartbeat, journal: PositionJournal, args: argparse.Namespace
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self.max_orders: int | None = args.max_orders
        self.call_timeout: float = args.call_timeout
        self.pause_after_intent = _pause_after_intent()
        self.orders_in_journal = len(journal.orders())
        self._fills_seen: list[dict[str, Any]] = []
        self._fills_next: int | None = None
        self.heartbeat = heartbeat
        self.symbol: str = args.symbol
        self.lot: float = args.quantity
        self.block_loop_after: float | None = args.block_loop_after
        self.control: Control | None = None  # given once the Control exists: it needs the bot as its hooks
        self.price: float | None = None
        self.price_at: float | None = None  # monotonic time the price was read
        self.started = time.monotonic()

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
            for cid in cancelled:
                if self.journal.get(str(cid)) is not None:
                    # The answer names the orders only: what each had filled comes from its lookup.
                    with contextlib.suppress(*EXCHANGE_FAILURES):
                        self._record(await self.lookup(str(cid)))

    async def flatten(self, positions: Mapping[str, float]) -> None:
        """One market order against each position; the SDK re-reads positions to see what filled."""
        for symbol, quantity in positions.items():
            side = "sell" if quantity > 0 else "buy"
            order = Order(symbol, side, round(abs(quantity), QUANTITY_DIGITS))
            permit = self.gate.permit(order)
            self.gate.decision("flatten", symbol=symbol, side=side, quantity=order.quantity, permit=permit)
            if not permit:
                log.warning("FLATTEN denied %s: %s", _describe(order), permit.reason)
                continue
            await self._send(order, permit, "FLATTEN")

    # -- one cycle ----------------------------------------------------------------------------------------

    async def reconcile(self, stop: asyncio.Event, cycle_seconds: float) -> None:
        """Learn the truth before trading: until then the gate says RECONCILING to every order.

        First the orders a killed run left in doubt are looked up by client id; then the journal is reconciled
        with the exchange, again every few seconds until the exchange's report is complete."""
        control = self.gate
        resolved = await resolve_in_doubt(self.journal, self.lookup, control=control, lookup_timeout=self.call_timeout)
        for entry in resolved:
            log.info("RESOLVED %s at start: %s%s", entry.client_order_id, entry.state, _reason(entry))
        next_try = 0.0
        while not stop.is_set():
            await control.cycle()
            if time.monotonic() >= next_try:
                result = await self.reconcile_once()
                log.info("RECONCILE %s", result.summary())
                for item in result.differences:
                    log.info("RECONCILE %s: %s", item.kind, item.detail)
                if result.complete:
                    return
                next_try = time.monotonic() + RECONCILE_RETRY_SECONDS
            await _pause(stop, cycle_seconds)

    async def reconcile_once(self) -> Reconciliation:
        """One reconcile; a complete one is acted on (fills applied, positions adopted, stale orders canceled)
        and adopted by the Control, an incomplete one only shown."""
        journal = self.journal
        checkpoint = int(journal.checkpoint(FILLS_CHECKPOINT) or 0)
        result = await self._compare(checkpoint)
        lost = [item.client_order_id for item in result.items if item.kind == "lost" and item.client_order_id]
        if result.complete and lost:
            # An order the journal has working that the exchange has not open: its lookup says what became
            # of it (canceled by a flatten's cancel_all just before a kill, say), and then compare again.
            for cid in lost:
                with contextlib.suppress(*EXCHANGE_FAILURES):
                    self._record(await self.lookup(cid))
            result = await self._compare(checkpoint)
        if result.complete and result.positions is not None:
            with journal.transaction():
                for fill in result.fills_to_apply:
                    journal.record_fill(fill.client_order_id, fill.filled_quantity, fill.avg_price)
                journal.put_state(POSITIONS_STATE, {s: q for s, q in result.positions.items() if q})
                journal.set_checkpoint(FILLS_CHECKPOINT, self._next_checkpoint(checkpoint))
            for cid in result.to_cancel:
                with contextlib.suppress(*EXCHANGE_FAILURES):
                    await self.cancel(cid)
        result.adopt(self.gate)
        return result

    async def look_before_trading(self) -> None:
        """A standby's read-only reconcile: what it would find, logged; nothing is applied or canceled,
        because the running version still trades on this journal and this exchange account."""
        try:
            result = await self._compare(int(self.journal.checkpoint(FILLS_CHECKPOINT) or 0))
        except EXCHANGE_FAILURES as exc:
            log.warning("STANDBY cannot look at the exchange yet: %s", exc)
            return
        log.info("STANDBY reconcile (read-only): %s", result.summary())

    async def _compare(self, checkpoint: int) -> Reconciliation:
        journal = self.journal
        return await run_reconcile(
            self._fetch_open_orders,
            self._fetch_positions,
            self._fetch_fills,
            checkpoint,
            known_orders=journal.orders(),
            known_positions=journal.positions(),
            current_epoch=journal.epoch,
            timeout=self.call_timeout * 3,
            epoch_of=journal.epoch_of,
        )

    def _next_checkpoint(self, checkpoint: int) -> int:
        """The last fill fetched, or just before the first fill of an order the journal has not finished:
        reconcile sums an order's fills since the checkpoint, so none of an unfinished order's may fall behind it."""
        unfinished = {entry.client_order_id for entry in self.journal.orders() if not entry.final}
        firsts = [int(f["fill_id"]) - 1 for f in self._fills_seen if f.get("client_order_id") in unfinished]
        newest = self._fills_next if self._fills_next is not None else checkpoint
        return max(checkpoint, min([newest, *firsts]))

    async def _fetch_open_orders(self) -> Any:
        answer = await self.exchange.call("GET", "/orders?status=open")
        return answer["orders"]

    async def _fetch_positions(self) -> Any:
        answer = await self.exchange.call("GET", "/positions")
        return answer["positions"]

    async def _fetch_fills(self, since: int) -> Fetched:
        """Every fill after ``since``, page by page; a page that says it is not whole and gives no next page
        makes the whole answer incomplete."""
        fills: list[dict[str, Any]] = []
        self._fills_seen, self._fills_next = [], None
        while True:
            page = await self.exchange.call("GET", f"/fills?since={since}")
            fills.extend(page["fills"])
            following = page.get("next")
            if page.get("complete") is True:
                self._fills_seen, self._fills_next = fills, int(following) if following is not None else since
                return Fetched(fills)
            if not isinstance(following, int) or following <= since:
                return Fetched(fills, complete=False, reason=f"the fills after {since} are not all there")
            since = following

    async def lookup(self, client_order_id: str) -> Any:
        """The order as the exchange has it, or None when it does not know it (``submit``'s lookup)."""
        try:
            return await self.exchange.call("GET", f"/orders/{client_order_id}")
        except ExchangeError as exc:
            if exc.status == 404:
                return None
            raise

    async def cancel(self, client_order_id: str) -> None:
        """Cancel one order and record what the exchange says became of it."""
        try:
            answer = await self._call("DELETE", f"/orders/{client_order_id}")
        except ExchangeError as exc:
            if exc.status != 409 or not isinstance(exc.body, dict):
                raise
            answer = exc.body.get("order")  # no longer working: filled, or canceled already
        log.info("CANCEL %s: %s", client_order_id, answer.get("status") if isinstance(answer, dict) else answer)
        self._record(answer)

    def _record(self, answer: Any) -> None:
        """Write what the exchange says of one of our orders (its fills, whether it is still working)."""
        if not isinstance(answer, dict):
            return
        entry = self.journal.get(str(answer.get("client_order_id")))
        if entry is None:
            return
        filled, price, status = answer.get("filled_quantity") or 0.0, answer.get("avg_price"), answer.get("status")
        with self.journal.transaction():
            if entry.in_doubt:
                entry = self.journal.mark_acked(entry.client_order_id, answer.get("order_id"))
            if filled > entry.filled_quantity:
                entry = self.journal.record_fill(entry.client_order_id, filled, price)
            if status in ("cancelled", "rejected") and not entry.final:
                self.journal.mark_canceled(entry.client_order_id, f"{status} at the exchange")

    async def cycle(self) -> None:
        control = self.gate
        await control.cycle()
        self._block_loop_when_due()
        try:
            await self._read_price()
        except EXCHANGE_FAILURES:
            return  # _call has said why and told the Control; without a price there is nothing to decide
        positions = self.journal.positions()
        control.set_positions(positions)
        position = positions.get(self.symbol, 0.0)
        if self.price is not None:
            control.exposure(notional={self.symbol: round(abs(position) * self.price, 2)})
        wanted = self._signal(position, control.mode)
        if wanted is None:
            return
        if self.max_orders is not None and self.orders_in_journal >= self.max_orders:
            return  # --max-orders: enough orders for this run's purpose; keep cycling, send nothing new
        side, quantity = wanted
        order = Order(self.symbol, side, quantity, feed=PRICE_FEED)
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
        )
        if not permit:
            log.info("ORDER denied %s: %s", _describe(order), permit.reason)
            return
        with contextlib.suppress(*EXCHANGE_FAILURES):
            await self._send(order, permit, "ORDER")

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

    async def _send(self, order: Order, permit: Permit, label: str) -> None:
        """Through the journal: intent committed, sent once, its outcome recorded (``submit``)."""
        self.orders_in_journal += 1
        entry = await submit(
            self.journal,
            self._post_order,
            self.lookup,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            control=_Granted(self.gate, permit, self.pause_after_intent),
            lookups=LOOKUPS,
            lookup_interval=LOOKUP_INTERVAL_SECONDS,
            send_timeout=self.call_timeout,
        )
        what = f"{order.side} {order.quantity:g} {order.symbol} ({entry.client_order_id})"
        if entry.state is OrderState.REJECTED:
            reason = entry.reason or "no reason given"
            # Logged before the Control hears of it, so that a trip it sets off reads after its cause.
            log.warning("%s rejected %s: %s", label, what, reason)
            self.gate.record_reject(reason)
            return
        if entry.state is OrderState.UNRESOLVED:
            log.error("%s unresolved %s: %s", label, what, entry.reason)  # submit has told the Control
            return
        left = round(entry.quantity - entry.filled_quantity, QUANTITY_DIGITS)
        if entry.state is OrderState.FILLED:
            outcome = f"filled at {entry.avg_price}"
        elif entry.filled_quantity:
            outcome = (
                f"filled {entry.filled_quantity:g} of {order.quantity:g} at {entry.avg_price}, {left:g} left working"
            )
        else:
            outcome = str(entry.state)
        log.info("%s sent %s: %s", label, what, outcome)
        if entry.state in (OrderState.ACKED, OrderState.PARTIALLY_FILLED) and label == "ORDER":
            # A market order's remainder never fills by itself here; the next cycle decides afresh.
            with contextlib.suppress(*EXCHANGE_FAILURES):
                await self.cancel(entry.client_order_id)

    async def _post_order(
        self, client_order_id: str, symbol: str, side: str, quantity: float, type: str, price: float | None
    ) -> Any:
        body: dict[str, Any] = {
            "client_order_id": client_order_id,
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "type": type,
        }
        if price is not None:
            body["price"] = price
        try:
            return await self._call("POST", "/orders", body)
        except EXCHANGE_FAILURES as exc:
            log.warning("ORDER failed %s %g %s (%s): %s", side, quantity, symbol, client_order_id, exc)
            raise

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
    return f"{order.side} {order.quantity:g} {order.symbol}"


def _reason(entry: JournalEntry) -> str:
    return f" ({entry.reason})" if entry.reason else ""


def _pause_after_intent() -> float:
    text = os.environ.get(PAUSE_AFTER_INTENT_ENV, "")
    try:
        seconds = float(text) if text else 0.0
    except ValueError:
        seconds = 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


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
    parser.add_argument("--journal", type=Path, default=None, help="the order journal (default: CONTROL/orders.db)")
    parser.add_argument("--id-prefix", default="h", help="this bot's client order ids begin with it (default h)")
    parser.add_argument("--max-orders", type=_whole, default=None, metavar="N")
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
    # Reconcile on demand too, not only at start: `kill -USR1 <pid>` (the result is in status.json).
    reconcile_now = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, reconcile_now.set)
    heartbeat = Heartbeat(args.control / "heartbeat.json", interval=HEARTBEAT_SECONDS)
    args.control.mkdir(mode=0o700, parents=True, exist_ok=True)  # the journal's default home
    journal = PositionJournal(args.journal or args.control / "orders.db", id_prefix=args.id_prefix)
    bot = TradingBot(Exchange(args.exchange, args.call_timeout), heartbeat, journal, args)
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
        journal=journal,  # under a runner, the lease's epoch goes into every client order id
    )
    bot.control = control
    # The Control first: it creates the control dir the heartbeat file lives in.
    with journal:
        async with control:
            if control.standby:
                # Under a runner: warm up while the running version trades, then wait for the handover.
                await bot.look_before_trading()
                if not await _ready_unless_stopped(control, stop):
                    return 0
            async with heartbeat:  # only the instance that trades beats: a standby's beats would mislead
                await _trade(bot, control, journal, stop, reconcile_now, args)
    return 0


async def _ready_unless_stopped(control: Control, stop: asyncio.Event) -> bool:
    """Wait to be promoted; False when asked to stop first (SIGTERM to a standby ends it at once)."""
    ready = asyncio.ensure_future(control.ready())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if ready.done():
        ready.result()  # a HandedOver (the runner went away) ends the bot here
        return True
    ready.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ready
    return False


async def _trade(
    bot: TradingBot,
    control: Control,
    journal: PositionJournal,
    stop: asyncio.Event,
    reconcile_now: asyncio.Event,
    args: argparse.Namespace,
) -> None:
    log.info(
        "started pid=%s exchange=%s mode=%s journal=%s epoch=%s",
        os.getpid(),
        args.exchange,
        control.mode,
        journal.path,
        journal.epoch,
    )
    await bot.reconcile(stop, args.cycle)
    while not stop.is_set():
        try:
            if reconcile_now.is_set():
                reconcile_now.clear()
                log.info("RECONCILE on demand: %s", (await bot.reconcile_once()).summary())
            await bot.cycle()
        except Exception as exc:
            # A bug of the bot's own counts toward the trips like a failed call: ten of them halt it.
            log.exception("CYCLE failed: %s", exc)
            control.record_error(exc)
        await _pause(stop, args.cycle)
    log.info("stopping: mode=%s", control.mode)


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
