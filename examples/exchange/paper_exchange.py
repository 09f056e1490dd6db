"""A paper exchange on loopback: real HTTP over real sockets, for the example bot, the demo and the tests.

It takes orders by client order id, fills them against prices it is told, keeps positions, and can be told
to misbehave the way real exchanges do (accept an order and never answer, reject, drop the connection,
answer 429). It writes down every order request it receives, whatever became of it, so a test can prove
what a bot did and did not send. Standard library only; it listens on 127.0.0.1 only.

In Python::

    with PaperExchange({"BTC-USD": 50000.0}, max_fill=0.3, order_log=path) as exchange:
        exchange.url                      # "http://127.0.0.1:PORT"
        exchange.set_price("BTC-USD", 49000.0)
        exchange.inject("hang", count=1)  # or "reject", "disconnect", "rate_limit", "delay" (seconds=...)
        exchange.set_fills_answer("unavailable")  # or "incomplete"; "normal" again to mend it
        exchange.orders_received()        # the order log

As a script (runs until SIGTERM or SIGINT, then exits 0; argument errors exit 2)::

    python examples/exchange/paper_exchange.py --port 0 --ready-file PATH [--order-log PATH]
        [--max-fill X | --max-fill SYMBOL=X ...] [--min-quantity X | --min-quantity SYMBOL=X ...]
        [--price SYMBOL=PRICE ...] [--position SYMBOL=QTY ...]

Once listening it writes ``{"url": ..., "port": ..., "pid": ...}`` to the ready file atomically (and removes
it on exit). ``--price`` adds a symbol or overrides a default one (BTC-USD 50000, ETH-USD 3000).

HTTP API (JSON in and out; request bodies are bounded to 64 KiB, larger ones get 413; a body that is not
JSON, or not the right shape, gets 400 ``{"error": "..."}``; an unknown path 404, a wrong method 405)

``POST /orders`` ``{"client_order_id", "symbol", "side", "quantity", "type", "price"}``
    client_order_id: 1 to 64 of ``A-Z a-z 0-9 . _ : -``; side: ``buy`` or ``sell``; quantity > 0;
    type: ``market`` or ``limit``; price: required for a limit order, absent (or null) for a market one.
    Unknown fields and unknown symbols are refused with 400. The answer is 200 with the order::

        {"order_id", "client_order_id", "symbol", "side", "type", "quantity", "price", "status",
         "filled_quantity", "remaining_quantity", "avg_price", "reason", "created_at", "duplicate"}

    status is ``filled``, ``partially_filled``, ``open``, ``rejected`` or (later) ``cancelled``.
    remaining_quantity is what is still working, as FIX's LeavesQty: 0 once an order is filled, rejected
    or cancelled. avg_price is null until something fills; reason is null unless the order was rejected.
    - A market order fills at once at the current price. A limit order that can trade at once fills at the
      current price; otherwise it rests ``open`` and fills at its limit price when the price crosses it
      (``set_price`` or ``POST /admin/prices``).
    - ``max_fill``: no order fills more than this in all. The rest stays working (``partially_filled``)
      and never fills by itself: the bot has to cancel it and send another order.
    - ``min_quantity``: an order for less is rejected, its reason starting "below minimum size", so a
      leftover smaller than the minimum cannot be closed (dust).
    - A client_order_id seen before gets the ORIGINAL order as it stands now, with ``"duplicate": true``,
      and changes nothing, whatever the rest of the request says. Rejected orders are remembered too;
      requests refused with 400, 429 or a dropped connection are not (they were never accepted).
``GET /orders`` all remembered orders, oldest first; ``?status=open`` the working ones (open or
    partially filled), ``?status=filled|partially_filled|rejected|cancelled`` those exactly;
    ``&symbol=S`` narrows it. ``{"orders": [...]}``
``GET /orders/<client_order_id>`` the order, or 404.
``DELETE /orders`` cancels every working order (``?symbol=S``: of that symbol): ``{"cancelled": [ids]}``
``DELETE /orders/<client_order_id>`` cancels one: 200 with the order; 404 if unknown; 409
    ``{"error", "order"}`` if it is no longer working (filled, rejected or already cancelled).
``GET /positions`` ``{"positions": {symbol: signed quantity}}``, non-zero ones only.
``GET /prices`` ``{"prices": {symbol: price}}``;  ``GET /time`` ``{"server_time": unix seconds}``.
``GET /fills?since=N`` every fill after fill id N (0: from the start), oldest first, at most 1,000 a page:
    ``{"fills": [{"fill_id", "client_order_id", "order_id", "symbol", "side", "quantity", "price", "at"}],
    "complete": bool, "next": last fill id}``. ``complete`` is false when fills after N were forgotten (only the
    newest 100,000 are kept) or when the page is full (ask again from ``next``): a bot must never take a
    partial history for the whole. When fills were forgotten, ``next`` is null: there is no page that would
    make the history whole, so a client that pages on ``next`` cannot be led to think it is.

Admin, for tests and the demo:

``POST /admin/faults`` ``{"fault": "hang"|"reject"|"disconnect"|"rate_limit"|"delay", "count": N or null,
    "reason": text, "seconds": S}`` puts one fault in force for the next N valid ``POST /orders`` (null: until cleared),
    replacing any earlier fault. Faults touch ``POST /orders`` only, after the request has been read and
    found valid:

    - hang: the order is accepted (it fills or rests) and logged, but no answer ever comes: the connection
      is held until the faults are cleared or the exchange stops, then closed without a reply. (A client
      that gives up and closes its end frees it sooner.) A later request with the same client_order_id
      is a duplicate, which is how a client finds out what became of it.
    - reject: a new order is answered 200 with status ``rejected`` and the reason given (a duplicate still
      gets its original and does not use up the count).
    - disconnect: the connection is closed without a reply; the order is not accepted.
    - rate_limit: 429 ``{"error": "rate limited"}`` with ``Retry-After: 1``; the order is not accepted.
    - delay: the order is accepted (it fills or rests) and logged at once, as usual, but the answer goes out
      only ``seconds`` (default 1) later, or when the faults are cleared: a client killed meanwhile never
      hears it, so its order exists at the exchange while its own record says only that it was sent.
``DELETE /admin/faults`` clears the fault and lets every held connection go: ``{"cleared": true}``
``GET /admin/faults`` ``{"fault": {"fault", "count", "reason"} or null, "held_connections": N}``
``POST /admin/fills`` ``{"answer": "normal"|"unavailable"|"incomplete"}``: how ``GET /fills`` answers from now
    on: as documented; 503 ``{"error"}``; or a page with ``complete`` false and ``next`` null (a broker that
    lost part of its history). ``{"answer": ...}`` back.
``POST /admin/prices`` ``{"symbol", "price"}`` sets a price (and fills the limit orders it crosses).
``GET /admin/orders`` the order log: ``{"orders": [entry, ...]}``, oldest first.

The order log has one entry per ``POST /orders`` received, whatever happened to it::

    {"at": unix seconds, "client_order_id", "symbol", "side", "quantity", "type", "price",
     "outcome": "filled"|"partially_filled"|"open"|"rejected"|"hung"|"disconnected"|"rate_limited"|
                "duplicate"|"invalid",
     "order_id": the order's id or null, "status": the order's status then or null, "reason": why it was
     rejected or invalid, or null}

The fields of an invalid request are kept only when they are of the right kind (text cut to 64 characters).
The last 100000 entries are kept in memory; with ``order_log=PATH`` every entry is also appended to that file
as one JSON line, flushed at once, so a test can read what was sent after the exchange has stopped. The
exchange remembers the last 100000 orders (and every working one, however old). Quantities are kept to 10
decimal places, so float arithmetic leaves no phantom dust of its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeGuard, cast
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["DEFAULT_PRICES", "FAULTS", "MAX_BODY_BYTES", "PaperExchange", "main"]

DEFAULT_PRICES: Mapping[str, float] = {"BTC-USD": 50000.0, "ETH-USD": 3000.0}
FAULTS = ("hang", "reject", "disconnect", "rate_limit", "delay")
FILLS_ANSWERS = ("normal", "unavailable", "incomplete")
DEFAULT_DELAY_SECONDS = 1.0
MAX_BODY_BYTES = 64 * 1024
LOG_ENTRIES_KEPT = 100_000
FILLS_KEPT = 100_000
FILLS_PAGE = 1000
ORDERS_KEPT = 100_000
DEFAULT_REJECT_REASON = "rejected by the paper exchange (injected fault)"

# A client order id travels in URL paths (GET/DELETE /orders/<id>), so it is held to characters that need no
# escaping there; exchanges restrict theirs the same way.
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ORDER_FIELDS = frozenset({"client_order_id", "symbol", "side", "quantity", "type", "price"})
_FAULT_FIELDS = frozenset({"fault", "count", "reason", "seconds"})
_STATUSES = ("open", "partially_filled", "filled", "rejected", "cancelled")
_WORKING = frozenset({"open", "partially_filled"})
_DECIMALS = 10
# A body over the bound is still read and thrown away up to this much before the 413 goes out: closing a
# socket with unread data makes the kernel send a reset, which can destroy the answer before the client reads it.
_DRAIN_LIMIT_BYTES = 1024 * 1024
# How often a held connection looks whether its client has hung up, so abandoned holds do not pile up.
_HOLD_CHECK_SECONDS = 0.2
_STOP_DRAIN_SECONDS = 5.0


class _BadRequest(ValueError):
    """The request is refused before anything happens; the message is for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _tidy(quantity: float) -> float:
    rounded = round(quantity, _DECIMALS)
    return 0.0 if rounded == 0 else rounded


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _per_symbol(value: float | Mapping[str, float] | None, name: str, *, allow_zero: bool) -> dict[str, float] | float:
    """A single bound for every symbol, or one per symbol (symbols not named are unbounded)."""

    def checked(number: object, where: str) -> float:
        if not _is_number(number) or number < 0 or (not allow_zero and number == 0):
            bound = "zero or more" if allow_zero else "more than zero"
            raise ValueError(f"{where} must be a number {bound}, got {number!r}")
        return float(number)

    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(symbol): checked(number, f"{name}[{symbol!r}]") for symbol, number in value.items()}
    return checked(value, name)


@dataclass
class _Order:
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: float
    price: float | None
    created_at: float
    status: str = "open"
    filled_quantity: float = 0.0
    filled_notional: float = 0.0
    reason: str | None = None

    @property
    def working(self) -> bool:
        return self.status in _WORKING

    @property
    def average_price(self) -> float | None:
        if not self.filled_quantity:
            return None
        return round(self.filled_notional / self.filled_quantity, _DECIMALS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "quantity": self.quantity,
            "price": self.price,
            "status": self.status,
            "filled_quantity": self.filled_quantity,
            "remaining_quantity": _tidy(self.quantity - self.filled_quantity) if self.working else 0.0,
            "avg_price": self.average_price,
            "reason": self.reason,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class _OrderRequest:
    client_order_id: str
    symbol: str
    side: str
    quantity: float
    type: str
    price: float | None


@dataclass
class _Fault:
    kind: str
    count: int | None
    reason: str
    seconds: float = DEFAULT_DELAY_SECONDS


@dataclass
class _Answer:
    """What the handler does with one POST /orders: reply, hang up, or hold the connection."""

    action: str  # "reply", "disconnect" or "hold"
    status: int = 200
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    release: threading.Event | None = None
    delay: float = 0.0  # seconds to wait before the reply (the delay fault), cut short by ``release``


def _parse_order(body: object) -> _OrderRequest:
    if not isinstance(body, dict):
        raise _BadRequest("the order must be a JSON object")
    problems: list[str] = []
    unknown = sorted(set(body) - _ORDER_FIELDS)
    if unknown:
        problems.append(f"unknown fields {', '.join(unknown)}")
    cid = body.get("client_order_id")
    if not isinstance(cid, str) or not _CLIENT_ORDER_ID.fullmatch(cid):
        problems.append("client_order_id must be 1 to 64 characters of letters, digits and . _ : -")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        problems.append("symbol must be a non-empty string")
    side = body.get("side")
    if side not in ("buy", "sell"):
        problems.append("side must be buy or sell")
    quantity = body.get("quantity")
    if not _is_number(quantity) or quantity <= 0:
        problems.append("quantity must be a number above zero")
    kind = body.get("type")
    price = body.get("price")
    if kind == "limit":
        if not _is_number(price) or price <= 0:
            problems.append("price must be a number above zero for a limit order")
    elif kind == "market":
        if price is not None:
            problems.append("a market order takes no price")
    else:
        problems.append("type must be market or limit")
    if problems:
        raise _BadRequest("; ".join(problems))
    return _OrderRequest(
        client_order_id=cast(str, cid),
        symbol=cast(str, symbol),
        side=cast(str, side),
        quantity=_tidy(float(cast(float, quantity))),
        type=cast(str, kind),
        price=float(price) if price is not None else None,
    )


def _logged_fields(body: object) -> dict[str, Any]:
    """What a request said, as far as it can be trusted to be the right kind; nothing else is kept."""
    fields: dict[str, Any] = {
        "client_order_id": None,
        "symbol": None,
        "side": None,
        "quantity": None,
        "type": None,
        "price": None,
    }
    if isinstance(body, dict):
        for name in ("client_order_id", "symbol", "side", "type"):
            if isinstance(body.get(name), str):
                fields[name] = body[name][:64]
        for name in ("quantity", "price"):
            if _is_number(body.get(name)):
                fields[name] = body[name]
    return fields


def _peer_has_gone(connection: socket.socket) -> bool:
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class PaperExchange:
    """A loopback exchange in a background thread; ``start()`` it (or use ``with``), ``stop()`` it.

    ``max_fill`` and ``min_quantity`` take one number for every symbol or a mapping per symbol.
    ``positions`` are the positions it starts with. Every method is safe to call from any thread.
    """

    def __init__(
        self,
        prices: Mapping[str, float] | None = None,
        *,
        port: int = 0,
        order_log: Path | str | None = None,
        max_fill: float | Mapping[str, float] | None = None,
        min_quantity: float | Mapping[str, float] = 0.0,
        positions: Mapping[str, float] | None = None,
    ) -> None:
        chosen = dict(DEFAULT_PRICES if prices is None else prices)
        for symbol, price in chosen.items():
            if not _is_number(price) or price <= 0:
                raise ValueError(f"the price of {symbol} must be a number above zero, got {price!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        self._prices = {symbol: float(price) for symbol, price in chosen.items()}
        self._port = port
        self._order_log_path = Path(order_log) if order_log is not None else None
        self._max_fill = _per_symbol(max_fill, "max_fill", allow_zero=False)
        self._min_quantity = _per_symbol(min_quantity, "min_quantity", allow_zero=True)
        self._positions: dict[str, float] = {}
        for symbol, quantity in (positions or {}).items():
            if not _is_number(quantity):
                raise ValueError(f"the starting position in {symbol} must be a number, got {quantity!r}")
            self._positions[symbol] = _tidy(float(quantity))

        # One lock over the book, the faults and the log, so the log's order is the order things happened in.
        self._lock = threading.Lock()
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self._next_order_number = 1
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_ENTRIES_KEPT)
        self._fills: deque[dict[str, Any]] = deque(maxlen=FILLS_KEPT)
        self._next_fill_id = 1
        self._log_file: TextIO | None = None
        self._fault: _Fault | None = None
        self._fills_answer = "normal"
        self._release = threading.Event()
        self._held = 0
        self._in_flight = 0
        self._quiet = threading.Condition(self._lock)
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- life -------------------------------------------------------------------------------------------

    def start(self) -> PaperExchange:
        """Listen on 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the paper exchange is already started")
        with self._lock:
            self._stopping = False
            self._release = threading.Event()
        if self._order_log_path is not None:
            self._log_file = self._order_log_path.open("a", encoding="utf-8")
        try:
            server = _Server(("127.0.0.1", self._port), _Handler)
        except OSError:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            raise
        server.exchange = self
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="paper-exchange", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, let held connections go, wait (up to 5 s) for requests in flight, close the log."""
        server = self._server
        if server is None:
            return
        with self._lock:
            self._stopping = True
            self._release.set()
        server.shutdown()
        with self._quiet:
            self._quiet.wait_for(lambda: self._in_flight == 0, timeout=_STOP_DRAIN_SECONDS)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=_STOP_DRAIN_SECONDS)
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            self._server = None

    def __enter__(self) -> PaperExchange:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the paper exchange is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- helpers for tests ------------------------------------------------------------------------------

    def set_price(self, symbol: str, price: float) -> None:
        """Set (or add) a symbol's price and fill the resting limit orders it crosses, at their limit."""
        if not _is_number(price) or price <= 0:
            raise ValueError(f"the price of {symbol} must be a number above zero, got {price!r}")
        with self._lock:
            self._set_price_locked(symbol, float(price))

    def prices(self) -> dict[str, float]:
        with self._lock:
            return dict(self._prices)

    def positions(self) -> dict[str, float]:
        """Signed quantity per symbol, non-zero ones only."""
        with self._lock:
            return {symbol: quantity for symbol, quantity in self._positions.items() if quantity}

    def open_orders(self) -> list[dict[str, Any]]:
        """The working orders (open or partially filled), oldest first."""
        with self._lock:
            return [order.as_dict() for order in self._orders.values() if order.working]

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        with self._lock:
            order = self._orders.get(client_order_id)
            return order.as_dict() if order else None

    def fills(self, since: int = 0) -> dict[str, Any]:
        """The fills after fill id ``since``, as ``GET /fills?since=`` answers (a page, and whether it is all)."""
        with self._lock:
            oldest = self._fills[0]["fill_id"] if self._fills else self._next_fill_id
            page = [dict(fill) for fill in self._fills if fill["fill_id"] > since][:FILLS_PAGE]
            last = self._next_fill_id - 1
            if self._fills_answer == "incomplete":
                return {"fills": page, "complete": False, "next": None}
        forgotten = since + 1 < oldest
        full = bool(page) and page[-1]["fill_id"] < last
        following = None if forgotten else page[-1]["fill_id"] if page else since
        return {"fills": page, "complete": not forgotten and not full, "next": following}

    def set_fills_answer(self, answer: str) -> None:
        """How ``GET /fills`` answers from now on: "normal", "unavailable" (503) or "incomplete"."""
        if answer not in FILLS_ANSWERS:
            raise ValueError(f"the fills answer must be one of {', '.join(FILLS_ANSWERS)}, got {answer!r}")
        with self._lock:
            self._fills_answer = answer

    def _fills_unavailable(self) -> bool:
        with self._lock:
            return self._fills_answer == "unavailable"

    def orders_received(self) -> list[dict[str, Any]]:
        """The order log: one entry per POST /orders received, oldest first."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def inject(
        self, fault: str, count: int | None = None, reason: str | None = None, seconds: float | None = None
    ) -> None:
        """Put a fault in force for the next ``count`` valid order requests (None: until cleared); ``seconds``
        is how long the delay fault holds each answer back."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}, got {fault!r}")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ValueError(f"count must be a whole number of 1 or more, or None, got {count!r}")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"reason must be text, got {reason!r}")
        if seconds is not None and (not _is_number(seconds) or not 0 < seconds <= 60):
            raise ValueError(f"seconds must be a number above 0 and at most 60, got {seconds!r}")
        with self._lock:
            self._fault = _Fault(
                fault, count, reason or DEFAULT_REJECT_REASON, DEFAULT_DELAY_SECONDS if seconds is None else seconds
            )

    def clear_faults(self) -> None:
        """End the fault in force and close every held connection without a reply."""
        with self._lock:
            self._fault = None
            self._release.set()
            self._release = threading.Event()

    def held_connections(self) -> int:
        """How many order requests are being held without an answer right now (the hang fault)."""
        with self._lock:
            return self._held

    # --- the book (every _locked method runs under self._lock) ------------------------------------------

    def _receive_order(self, request: _OrderRequest) -> _Answer:
        with self._lock:
            if request.symbol not in self._prices:
                self._record(request, "invalid", reason=f"unknown symbol {request.symbol}")
                return _Answer("reply", 400, {"error": f"unknown symbol {request.symbol}"})
            fault = self._fault
            if fault is not None and fault.kind in ("rate_limit", "disconnect"):
                self._use_fault()
                if fault.kind == "rate_limit":
                    self._record(request, "rate_limited")
                    return _Answer("reply", 429, {"error": "rate limited"}, (("Retry-After", "1"),))
                self._record(request, "disconnected")
                return _Answer("disconnect")
            existing = self._orders.get(request.client_order_id)
            if existing is not None:
                if fault is not None and fault.kind == "hang":
                    return self._hold_locked(request, existing)
                self._record(request, "duplicate", existing)
                return _Answer("reply", 200, {**existing.as_dict(), "duplicate": True})
            if fault is not None and fault.kind == "reject":
                self._use_fault()
                order = self._new_order_locked(request)
                order.status = "rejected"
                order.reason = fault.reason
            else:
                order = self._new_order_locked(request)
                self._place_locked(order)
            if fault is not None and fault.kind == "hang":
                return self._hold_locked(request, order)
            self._record(request, order.status, order)
            delay = 0.0
            if fault is not None and fault.kind == "delay":
                self._use_fault()
                delay = fault.seconds
            return _Answer("reply", 200, {**order.as_dict(), "duplicate": False}, delay=delay, release=self._release)

    def _hold_locked(self, request: _OrderRequest, order: _Order) -> _Answer:
        self._use_fault()
        self._record(request, "hung", order)
        if self._stopping:
            return _Answer("disconnect")
        return _Answer("hold", release=self._release)

    def _use_fault(self) -> None:
        fault = self._fault
        if fault is not None and fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self._fault = None

    def _new_order_locked(self, request: _OrderRequest) -> _Order:
        order = _Order(
            order_id=f"paper-{self._next_order_number:08d}",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            quantity=request.quantity,
            price=request.price,
            created_at=time.time(),
        )
        self._next_order_number += 1
        self._orders[order.client_order_id] = order
        self._forget_old_orders_locked()
        return order

    def _forget_old_orders_locked(self) -> None:
        # Idempotency needs the ids; memory needs a bound. Finished orders go first, oldest first.
        excess = len(self._orders) - ORDERS_KEPT
        if excess <= 0:
            return
        finished = list(islice((cid for cid, order in self._orders.items() if not order.working), excess))
        for cid in finished:
            del self._orders[cid]

    def _place_locked(self, order: _Order) -> None:
        minimum = self._bound(self._min_quantity, order.symbol)
        if minimum is not None and order.quantity < minimum:
            order.status = "rejected"
            order.reason = f"below minimum size: {order.quantity:g} {order.symbol} is under the minimum of {minimum:g}"
            return
        current = self._prices[order.symbol]
        if order.type == "market" or self._crosses(order, current):
            self._fill_locked(order, current)

    @staticmethod
    def _crosses(order: _Order, price: float) -> bool:
        limit = cast(float, order.price)
        return price <= limit if order.side == "buy" else price >= limit

    @staticmethod
    def _bound(bounds: dict[str, float] | float, symbol: str) -> float | None:
        return bounds.get(symbol) if isinstance(bounds, dict) else bounds

    def _fill_locked(self, order: _Order, price: float) -> None:
        room = order.quantity - order.filled_quantity
        cap = self._bound(self._max_fill, order.symbol)
        if cap is not None:
            room = min(room, cap - order.filled_quantity)
        quantity = _tidy(room)
        if quantity <= 0:
            return
        order.filled_quantity = _tidy(order.filled_quantity + quantity)
        order.filled_notional += quantity * price
        signed = quantity if order.side == "buy" else -quantity
        self._positions[order.symbol] = _tidy(self._positions.get(order.symbol, 0.0) + signed)
        self._fills.append(
            {
                "fill_id": self._next_fill_id,
                "client_order_id": order.client_order_id,
                "order_id": order.order_id,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": quantity,
                "price": price,
                "at": time.time(),
            }
        )
        self._next_fill_id += 1
        order.status = "filled" if order.filled_quantity >= order.quantity else "partially_filled"

    def _set_price_locked(self, symbol: str, price: float) -> None:
        self._prices[symbol] = price
        for order in self._orders.values():
            if order.working and order.symbol == symbol and order.type == "limit" and self._crosses(order, price):
                self._fill_locked(order, cast(float, order.price))

    def _cancel_locked(self, order: _Order) -> None:
        order.status = "cancelled"

    def _cancel_all(self, symbol: str | None) -> list[str]:
        with self._lock:
            cancelled = []
            for order in self._orders.values():
                if order.working and (symbol is None or order.symbol == symbol):
                    self._cancel_locked(order)
                    cancelled.append(order.client_order_id)
            return cancelled

    def _cancel_one(self, client_order_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            order = self._orders.get(client_order_id)
            if order is None:
                return 404, {"error": f"no order {client_order_id}"}
            if not order.working:
                problem = f"order {client_order_id} is {order.status}, not working"
                return 409, {"error": problem, "order": order.as_dict()}
            self._cancel_locked(order)
            return 200, order.as_dict()

    def _list_orders(self, status: str | None, symbol: str | None) -> list[dict[str, Any]]:
        with self._lock:
            chosen = []
            for order in self._orders.values():
                if status == "open" and not order.working:
                    continue
                if status not in (None, "open") and order.status != status:
                    continue
                if symbol is not None and order.symbol != symbol:
                    continue
                chosen.append(order.as_dict())
            return chosen

    def _fault_state(self) -> dict[str, Any]:
        with self._lock:
            fault = self._fault
            described = None
            if fault is not None:
                described = {"fault": fault.kind, "count": fault.count, "reason": fault.reason}
                if fault.kind == "delay":
                    described["seconds"] = fault.seconds
            return {"fault": described, "held_connections": self._held}

    # --- the order log ----------------------------------------------------------------------------------

    def _record(
        self, request: _OrderRequest, outcome: str, order: _Order | None = None, reason: str | None = None
    ) -> None:
        fields = {
            "client_order_id": request.client_order_id,
            "symbol": request.symbol,
            "side": request.side,
            "quantity": request.quantity,
            "type": request.type,
            "price": request.price,
        }
        self._append_log_locked(fields, outcome, order, reason)

    def _record_invalid(self, body: object, reason: str) -> None:
        with self._lock:
            self._append_log_locked(_logged_fields(body), "invalid", None, reason)

    def _append_log_locked(
        self, fields: dict[str, Any], outcome: str, order: _Order | None, reason: str | None
    ) -> None:
        entry = {
            "at": time.time(),
            **fields,
            "outcome": outcome,
            "order_id": order.order_id if order else None,
            "status": order.status if order else None,
            "reason": reason if reason is not None else (order.reason if order else None),
        }
        self._log.append(entry)
        if self._log_file is not None:
            try:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()
            except OSError as exc:
                # The in-memory log still has it; a test fixture must not fail an order for its own disk.
                print(f"paper exchange: could not write the order log: {exc}", file=sys.stderr)

    # --- connection bookkeeping for the handler ---------------------------------------------------------

    @contextmanager
    def _serving(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._quiet:
                self._in_flight -= 1
                self._quiet.notify_all()

    def _hold(self, connection: socket.socket, release: threading.Event) -> None:
        with self._lock:
            self._held += 1
        # Non-blocking, so that looking for a hung-up client never waits on the socket's own timeout.
        connection.setblocking(False)
        try:
            while not release.wait(_HOLD_CHECK_SECONDS):
                if _peer_has_gone(connection):
                    return
        finally:
            with self._lock:
                self._held -= 1


class _Server(ThreadingHTTPServer):
    exchange: PaperExchange
    # A bot's burst of orders (or a test's) must queue, not be refused, while the handlers start.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive connection ever holds a thread.
    protocol_version = "HTTP/1.0"
    # Bounds every read and write on the socket: a client that stops halfway through a body frees its thread.
    timeout = 10

    @property
    def exchange(self) -> PaperExchange:
        return cast(_Server, self.server).exchange

    def handle(self) -> None:
        with self.exchange._serving():
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the order log is the record that matters; access lines would only be noise in test output

    # --- plumbing ---------------------------------------------------------------------------------------

    def _reply(self, status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_json(self) -> object:
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise _BadRequest("a JSON body with a Content-Length header is required")
        try:
            length = int(declared)
        except ValueError:
            raise _BadRequest(f"Content-Length must be a whole number, got {declared[:40]!r}") from None
        if length < 0:
            raise _BadRequest(f"Content-Length must not be negative, got {length}")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            if length <= _DRAIN_LIMIT_BYTES:
                self.rfile.read(length)
            raise _BadRequest(f"the body is {length} bytes, over the limit of {MAX_BODY_BYTES}", status=413)
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise _BadRequest(f"the body ended after {len(raw)} of {length} bytes")

        def refuse_constant(name: str) -> None:
            raise ValueError(f"{name} is not a number JSON allows")

        try:
            return json.loads(raw, parse_constant=refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise _BadRequest(f"the body is not valid JSON: {exc}") from None

    def _route(self) -> tuple[list[str], dict[str, list[str]]]:
        parts = urlsplit(self.path)
        segments = [unquote(segment) for segment in parts.path.split("/") if segment]
        return segments, parse_qs(parts.query)

    @staticmethod
    def _one(query: dict[str, list[str]], name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    def _not_found(self) -> None:
        self._reply(404, {"error": f"nothing at {urlsplit(self.path).path}"})

    def _wrong_method(self, allowed: str) -> None:
        self._reply(405, {"error": f"{self.command} is not allowed here; use {allowed}"}, (("Allow", allowed),))

    # --- methods ----------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        segments, query = self._route()
        exchange = self.exchange
        if segments == ["orders"]:
            status = self._one(query, "status")
            if status is not None and status not in _STATUSES:
                self._reply(400, {"error": f"status must be one of {', '.join(_STATUSES)}, got {status!r}"})
                return
            self._reply(200, {"orders": exchange._list_orders(status, self._one(query, "symbol"))})
        elif len(segments) == 2 and segments[0] == "orders":
            order = exchange.order(segments[1])
            if order is None:
                self._reply(404, {"error": f"no order {segments[1]}"})
            else:
                self._reply(200, order)
        elif segments == ["positions"]:
            self._reply(200, {"positions": exchange.positions()})
        elif segments == ["prices"]:
            self._reply(200, {"prices": exchange.prices()})
        elif segments == ["time"]:
            self._reply(200, {"server_time": time.time()})
        elif segments == ["fills"]:
            since = self._one(query, "since") or "0"
            if not since.isdigit():
                self._reply(400, {"error": f"since must be a fill id (a whole number), got {since!r}"})
                return
            if exchange._fills_unavailable():
                self._reply(503, {"error": "the fills history is unavailable (injected)"})
                return
            self._reply(200, exchange.fills(int(since)))
        elif segments == ["admin", "orders"]:
            self._reply(200, {"orders": exchange.orders_received()})
        elif segments == ["admin", "faults"]:
            self._reply(200, exchange._fault_state())
        else:
            self._not_found()

    def do_POST(self) -> None:
        segments, _ = self._route()
        if segments == ["orders"]:
            self._post_order()
        elif segments == ["admin", "faults"]:
            self._post_fault()
        elif segments == ["admin", "prices"]:
            self._post_price()
        elif segments == ["admin", "fills"]:
            self._post_fills_answer()
        elif segments in (["positions"], ["prices"], ["time"], ["fills"], ["admin", "orders"]) or (
            len(segments) == 2 and segments[0] == "orders"
        ):
            self._wrong_method("GET" if segments != ["orders"] else "GET, POST, DELETE")
        else:
            self._not_found()

    def do_DELETE(self) -> None:
        segments, query = self._route()
        exchange = self.exchange
        if segments == ["orders"]:
            self._reply(200, {"cancelled": exchange._cancel_all(self._one(query, "symbol"))})
        elif len(segments) == 2 and segments[0] == "orders":
            status, body = exchange._cancel_one(segments[1])
            self._reply(status, body)
        elif segments == ["admin", "faults"]:
            exchange.clear_faults()
            self._reply(200, {"cleared": True})
        elif segments in (["positions"], ["prices"], ["time"], ["admin", "orders"], ["admin", "prices"]):
            self._wrong_method("GET" if segments != ["admin", "prices"] else "POST")
        else:
            self._not_found()

    def _post_order(self) -> None:
        exchange = self.exchange
        body: object = None
        try:
            body = self._read_json()
            request = _parse_order(body)
        except _BadRequest as exc:
            exchange._record_invalid(body, str(exc))
            self._reply(exc.status, {"error": str(exc)})
            return
        answer = exchange._receive_order(request)
        if answer.delay and answer.release is not None:
            answer.release.wait(answer.delay)
        if answer.action == "reply":
            self._reply(answer.status, answer.body or {}, answer.headers)
            return
        if answer.action == "hold" and answer.release is not None:
            exchange._hold(self.connection, answer.release)
        # Hung or dropped: no status line, no headers; the server closes the socket when this returns.
        self.close_connection = True

    def _post_fault(self) -> None:
        try:
            body = self._read_json()
            if not isinstance(body, dict):
                raise _BadRequest("the fault must be a JSON object")
            unknown = sorted(set(body) - _FAULT_FIELDS)
            if unknown:
                raise _BadRequest(f"unknown fields {', '.join(unknown)}")
            # inject() checks each value's kind itself, with the message the client gets.
            self.exchange.inject(
                cast(str, body.get("fault")), body.get("count"), body.get("reason"), body.get("seconds")
            )
        except _BadRequest as exc:
            self._reply(exc.status, {"error": str(exc)})
            return
        except ValueError as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, self.exchange._fault_state())

    def _post_fills_answer(self) -> None:
        try:
            body = self._read_json()
            if not isinstance(body, dict) or set(body) != {"answer"}:
                raise _BadRequest('the body must be {"answer": "normal"|"unavailable"|"incomplete"}')
            self.exchange.set_fills_answer(body["answer"])
        except ValueError as exc:  # _BadRequest is one
            self._reply(getattr(exc, "status", 400), {"error": str(exc)})
            return
        self._reply(200, {"answer": body["answer"]})

    def _post_price(self) -> None:
        try:
            body = self._read_json()
            if not isinstance(body, dict) or set(body) != {"symbol", "price"} or not isinstance(body["symbol"], str):
                raise _BadRequest('the body must be {"symbol": text, "price": number}')
            self.exchange.set_price(body["symbol"], body["price"])
        except _BadRequest as exc:
            self._reply(exc.status, {"error": str(exc)})
            return
        except ValueError as exc:
            self._reply(400, {"error": str(exc)})
            return
        self._reply(200, {"prices": self.exchange.prices()})


# --- the script -----------------------------------------------------------------------------------------


def _symbol_number(text: str) -> tuple[str, float]:
    symbol, equals, number = text.partition("=")
    if not equals or not symbol:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=NUMBER, got {text!r}")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=NUMBER, but {number!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: the number must be finite")
    return symbol, value


def _number_or_per_symbol(text: str) -> float | tuple[str, float]:
    if "=" in text:
        return _symbol_number(text)
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or SYMBOL=NUMBER, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: the number must be finite")
    return value


def _combine(
    parser: argparse.ArgumentParser, option: str, given: list[float | tuple[str, float]] | None
) -> float | dict[str, float] | None:
    if not given:
        return None
    singles = [value for value in given if isinstance(value, float)]
    pairs = [value for value in given if isinstance(value, tuple)]
    if (singles and pairs) or len(singles) > 1:
        parser.error(f"give {option} once as a number, or once per symbol as SYMBOL=NUMBER, not both")
    return singles[0] if singles else dict(pairs)


def _write_ready_file(path: Path, content: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A paper exchange on 127.0.0.1 (see the module docstring).")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--ready-file", type=Path, help="where to write {url, port, pid} once listening")
    parser.add_argument("--order-log", type=Path, help="append every order request received here, as JSON lines")
    parser.add_argument("--max-fill", type=_number_or_per_symbol, action="append", metavar="X|SYMBOL=X")
    parser.add_argument("--min-quantity", type=_number_or_per_symbol, action="append", metavar="X|SYMBOL=X")
    parser.add_argument("--price", type=_symbol_number, action="append", default=[], metavar="SYMBOL=PRICE")
    parser.add_argument("--position", type=_symbol_number, action="append", default=[], metavar="SYMBOL=QTY")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    try:
        exchange = PaperExchange(
            {**DEFAULT_PRICES, **dict(args.price)},
            port=args.port,
            order_log=args.order_log,
            max_fill=_combine(parser, "--max-fill", args.max_fill),
            min_quantity=_combine(parser, "--min-quantity", args.min_quantity) or 0.0,
            positions=dict(args.position),
        )
    except ValueError as exc:
        parser.error(str(exc))

    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())
    try:
        exchange.start()
    except OSError as exc:
        print(f"paper exchange: cannot start: {exc}", file=sys.stderr)
        return 1
    wrote_ready_file = False
    try:
        if args.ready_file is not None:
            try:
                _write_ready_file(args.ready_file, {"url": exchange.url, "port": exchange.port, "pid": os.getpid()})
            except OSError as exc:
                print(f"paper exchange: cannot write the ready file {args.ready_file}: {exc}", file=sys.stderr)
                return 1
            wrote_ready_file = True
        print(f"paper exchange listening on {exchange.url}", flush=True)
        stopping.wait()
    finally:
        exchange.stop()
        if wrote_ready_file:
            # A ready file left behind would tell the next reader an exchange listens where none does.
            args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
