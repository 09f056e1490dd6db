"""The reading half of websockets' legacy protocol: frames from the server, unmasked."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

from websockets.exceptions import Close, ConnectionClosedError, ConnectionClosedOK


class WebSocketCommonProtocol:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_rcvd: Close | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    async def recv(self) -> str:
        try:
            return await self.read_message()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise self.connection_closed_exc() from exc

    async def read_message(self) -> str:
        head = await self.reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await self.reader.readexactly(length)
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close_rcvd = Close(code, payload[2:].decode(errors="replace"))
            raise self.connection_closed_exc()
        return payload.decode()

    def connection_closed_exc(self) -> ConnectionClosedError | ConnectionClosedOK:
        if self.close_rcvd is not None and self.close_rcvd.code in (1000, 1001):
            return ConnectionClosedOK(self.close_rcvd, None)
        return ConnectionClosedError(self.close_rcvd, None)

    async def close(self) -> None:
        self.writer.close()
