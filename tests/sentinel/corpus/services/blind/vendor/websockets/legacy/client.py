"""websockets.connect: opens the TCP connection (asyncio's own errors when it is refused) and shakes hands."""

from __future__ import annotations

import asyncio
import base64
import os
from types import TracebackType
from urllib.parse import urlsplit

from websockets.exceptions import InvalidHandshake
from websockets.legacy.protocol import WebSocketCommonProtocol


class WebSocketClientProtocol(WebSocketCommonProtocol):
    pass


class Connect:
    def __init__(self, uri: str, *, open_timeout: float = 10, ping_interval: float | None = 20) -> None:
        self.uri = uri
        self.open_timeout = open_timeout
        self.protocol: WebSocketClientProtocol | None = None

    async def __aenter__(self) -> WebSocketClientProtocol:
        self.protocol = await asyncio.wait_for(self._open(), self.open_timeout)
        return self.protocol

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.protocol is not None:
            await self.protocol.close()

    async def _open(self) -> WebSocketClientProtocol:
        parts = urlsplit(self.uri)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = await reader.readuntil(b"\r\n\r\n")
        if not response.startswith(b"HTTP/1.1 101"):
            status = response.split(b"\r\n", 1)[0].decode(errors="replace")
            raise InvalidHandshake(f"server rejected WebSocket connection: {status}")
        return WebSocketClientProtocol(reader, writer)


connect = Connect
