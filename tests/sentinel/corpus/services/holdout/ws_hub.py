"""A market-data hub on asyncio, logging with uvicorn's default format (as an ASGI app under uvicorn does).

It serves ``GET /health`` and keeps every subscriber's connection open (``SUBSCRIBE ...`` lines), on
``port``. Its descriptor limit is the shell's ``ulimit -n``. When the subscribers use up the descriptors,
asyncio's own accept loop fails with EMFILE and logs it (logger ``asyncio``), as it does under uvicorn.
"""

from __future__ import annotations

import asyncio
import os

from holdout_kit import Service

svc = Service()
log = svc.logger("uvicorn.error")
access = svc.logger("uvicorn.access")
svc.logger("asyncio")
subscribers: set[asyncio.StreamWriter] = set()


async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    peer = writer.get_extra_info("peername")
    if line.startswith(b"GET "):
        while (await reader.readline()).strip():
            pass
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{"status":"ok"}')
        await writer.drain()
        access.info('%s:%d - "GET /health HTTP/1.1" 200 OK', peer[0], peer[1])
        writer.close()
        return
    subscribers.add(writer)
    await reader.read()  # a subscriber stays until it hangs up
    subscribers.discard(writer)
    writer.close()


def routine(tick: int) -> None:
    if tick % 5 == 0:
        log.info("hub: subscribers=%d dropped=0 errors=0", len(subscribers))
    if tick % 7 == 3:
        log.warning("Invalid HTTP request received.")


async def main() -> None:
    server = await asyncio.start_server(client, "127.0.0.1", int(svc["port"]), backlog=16)
    log.info("Started server process [%d]", os.getpid())
    log.info("Waiting for application startup.")
    log.info("Application startup complete.")
    log.info("Uvicorn running on http://127.0.0.1:%s (Press CTRL+C to quit)", svc["port"])
    async with server:
        tick = 0
        while True:
            routine(tick)
            tick += 1
            await asyncio.sleep(svc.tick_seconds)


svc.history(routine)
asyncio.run(main())
