"""An exchange's websocket gateway: the RFC 6455 handshake, then a ticker frame every 50 ms.

``python ws_exchange_stub.py READY_FILE``. A scenario kills it with SIGKILL: the kernel closes its sockets
without a close frame, which a client sees as code 1006, and later connects are refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import sys
import time
from pathlib import Path

from loopback import ready

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _text_frame(payload: bytes) -> bytes:
    # A server's frames are not masked; FIN and opcode 1 (text).
    if len(payload) < 126:
        return bytes([0x81, len(payload)]) + payload
    return bytes([0x81, 126]) + struct.pack("!H", len(payload)) + payload


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    key = b""
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    sequence = 0
    try:
        while True:
            sequence += 1
            tick = {
                "type": "ticker",
                "sequence": sequence,
                "product_id": "ETH-USD",
                "price": f"{2211.4 + (sequence % 17) / 10:.2f}",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            writer.write(_text_frame(json.dumps(tick).encode()))
            await writer.drain()
            await asyncio.sleep(0.05)
    except (ConnectionError, OSError):
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_session, "127.0.0.1", 0)
    ready(Path(sys.argv[-1]), server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


asyncio.run(main())
