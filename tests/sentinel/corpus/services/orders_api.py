"""An orders API (aiohttp) whose handlers query Postgres through asyncpg, logging the way uvicorn does.

``/health`` runs ``SELECT 1`` on a fresh connection to the database stand-in at ``db_port`` (its pool is
recycled that often). A handler that raises is logged as uvicorn logs it ("Exception in ASGI
application" and the traceback) and answered 500; every request gets uvicorn's access line.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
from aiohttp import web
from service_kit import Kit

kit = Kit()
log = kit.log


async def health(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else ("127.0.0.1", 0)
    try:
        conn = await asyncpg.connect(host="127.0.0.1", port=int(kit["db_port"]), user="orders")
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except Exception:
        log.exception("Exception in ASGI application\n")
        log.info('%s:%d - "GET /health HTTP/1.1" 500 Internal Server Error', *peer[:2])
        return web.Response(status=500, text="Internal Server Error")
    log.info('%s:%d - "GET /health HTTP/1.1" 200 OK', *peer[:2])
    return web.json_response({"status": "ok"})


async def chatter() -> None:
    tick = 0
    while True:
        kit.tick_noise(tick)
        tick += 1
        await asyncio.sleep(kit.tick_seconds)


async def main() -> None:
    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    log.info("Started server process [%d]", os.getpid())
    log.info("Waiting for application startup.")
    log.info("Application startup complete.")
    await web.TCPSite(runner, "127.0.0.1", int(kit["port"])).start()
    log.info("Uvicorn running on http://127.0.0.1:%d (Press CTRL+C to quit)", int(kit["port"]))
    await chatter()


asyncio.run(main())
