"""The paper exchange (examples/exchange/paper_exchange.py) for tests.

Examples are scripts, not a package, so the module is loaded by its path. It runs either in a thread of the
test (``running_exchange``), where a test can set prices and faults in Python, or as its own process
(``exchange_process``), as the demo and the example bot run it; ``ExchangeClient`` speaks its HTTP API with
urllib, the way a standard-library bot would.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from horus_sdk.control_files import read_status
from horus_sdk.decisions import tail

EXCHANGE_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "exchange" / "paper_exchange.py"
_MODULE_NAME = "paper_exchange"


def load_paper_exchange() -> ModuleType:
    """The paper exchange module, loaded once from its file."""
    loaded = sys.modules.get(_MODULE_NAME)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, EXCHANGE_SCRIPT)
    assert spec is not None and spec.loader is not None, f"cannot load {EXCHANGE_SCRIPT}"
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: dataclasses look their module up in sys.modules while they are built.
    sys.modules[_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


@contextlib.contextmanager
def running_exchange(prices: dict[str, float] | None = None, **options: Any) -> Iterator[Any]:
    """A started PaperExchange in this process, stopped when the block ends."""
    exchange = load_paper_exchange().PaperExchange(prices, **options)
    with exchange:
        yield exchange


@dataclass
class ExchangeReply:
    status: int
    body: Any
    headers: dict[str, str]


class ExchangeClient:
    """A small urllib client for the exchange; HTTP errors come back as replies, not exceptions."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        timeout: float | None = None,
    ) -> ExchangeReply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return ExchangeReply(response.status, json.loads(response.read()), dict(response.headers))
        except urllib.error.HTTPError as error:
            with error:
                return ExchangeReply(error.code, json.loads(error.read()), dict(error.headers))

    def get(self, path: str) -> ExchangeReply:
        return self.request("GET", path)

    def delete(self, path: str) -> ExchangeReply:
        return self.request("DELETE", path)

    def place(
        self,
        client_order_id: str,
        *,
        symbol: str = "BTC-USD",
        side: str = "buy",
        quantity: float = 1.0,
        type: str = "market",
        price: float | None = None,
        timeout: float | None = None,
    ) -> ExchangeReply:
        order: dict[str, Any] = {
            "client_order_id": client_order_id,
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "type": type,
        }
        if price is not None:
            order["price"] = price
        return self.request("POST", "/orders", order, timeout=timeout)


def send_order_raw(url: str, order: dict[str, Any], timeout: float = 10.0) -> socket.socket:
    """Send one POST /orders over a plain socket and return the socket unread, so a test can watch what the
    exchange does with the connection (answer, hold it, close it) without an HTTP client giving up first."""
    address = urlsplit(url)
    body = json.dumps(order).encode()
    head = (
        f"POST /orders HTTP/1.0\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    connection = socket.create_connection((address.hostname, address.port), timeout=timeout)
    connection.sendall(head.encode() + body)
    return connection


@dataclass
class ExchangeProcess:
    process: subprocess.Popen[bytes]
    url: str
    pid: int
    ready_file: Path
    stderr: Path

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM it and wait for it to exit; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def wait_for_ready_file(process: subprocess.Popen[bytes], ready_file: Path, stderr: Path, timeout: float) -> dict:
    """The ready file's contents once it appears; fails at once, with the process's stderr, if it exits first."""
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"the paper exchange exited with {process.returncode} before it was ready: {stderr.read_text()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"the paper exchange wrote no ready file within {timeout} s: {stderr.read_text()}")
        time.sleep(0.02)
    # The exchange writes it atomically (a rename), so a file that exists is whole.
    return json.loads(ready_file.read_text())


@contextlib.contextmanager
def exchange_process(directory: Path, *arguments: str, timeout: float = 20.0) -> Iterator[ExchangeProcess]:
    """The exchange as its own process, ready to take orders; killed when the block ends if still running."""
    name = uuid.uuid4().hex[:12]
    ready_file = directory / f"exchange-{name}.ready"
    stderr = directory / f"exchange-{name}.stderr"
    with stderr.open("wb") as stderr_handle:
        process = subprocess.Popen(
            [sys.executable, str(EXCHANGE_SCRIPT), "--port", "0", "--ready-file", str(ready_file), *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_handle,
        )
    try:
        ready = wait_for_ready_file(process, ready_file, stderr, timeout)
        yield ExchangeProcess(process, ready["url"], ready["pid"], ready_file, stderr)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=timeout)


def mode(control: Path) -> str | None:
    """The example bot's mode as its status.json says now (None while it cannot be read)."""
    try:
        return read_status(control).get("mode")
    except (OSError, ValueError):
        return None


def became(control: Path, wanted: str) -> float:
    """When the bot's decision log says it last entered ``wanted``."""
    changes = [r for r in tail(control / "decisions.jsonl", lines=500) if r.get("kind") == "control.mode"]
    return max(float(r["at"]) for r in changes if r.get("mode") == wanted)
