"""An asyncio HTTP service on ``port`` whose audit path leaks a file descriptor per tick once it is on.

RLIMIT_NOFILE is set to ``nofile``. After the healthy period each tick opens the audit log again and
keeps it; when no descriptor is left, the loop cannot accept connections, and asyncio says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource

from service_kit import Kit

kit = Kit()
log = kit.log
# asyncio's own complaints belong in the service's log.
logging.getLogger("asyncio").handlers[:] = list(log.handlers)
leaked: list[object] = []


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readline()
    while (await reader.readline()).strip():
        pass
    body = b'{"status":"ok"}'
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    writer.close()
    log.info("%s 200", request.decode().strip())


async def audit_forever() -> None:
    tick = 0
    limit = int(kit["nofile"])
    in_use: int | None = None
    while True:
        if not kit.healthy():
            if in_use is None:
                in_use = len(os.listdir("/proc/self/fd"))
            if in_use + len(leaked) >= limit - 4:
                kit.failing()
            try:
                leaked.append(open(kit["audit_file"], "a"))  # noqa: SIM115 - the leak this service has
            except OSError as exc:
                log.error("audit: %s", exc)
        log.info("tick %d", tick)
        kit.tick_noise(tick)
        tick += 1
        await asyncio.sleep(kit.tick_seconds)


async def main() -> None:
    limit = int(kit["nofile"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    server = await asyncio.start_server(handle, "127.0.0.1", int(kit["port"]))
    log.info("serving on 127.0.0.1:%d with at most %d open files", int(kit["port"]), limit)
    async with server:
        await audit_forever()


asyncio.run(main())
