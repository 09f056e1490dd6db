"""An asyncio poller built on aiohttp: every tick it GETs an upstream and records that it made progress.

Parameters: ``url``; ``total_timeout`` or ``sock_read_timeout`` (aiohttp.ClientTimeout); ``ca_file`` (the
CA it trusts for TLS); ``output``: ``heartbeat`` (horus_sdk.Heartbeat at ``heartbeat_file``, channel
``poll`` progresses after each success), ``health`` (an aiohttp.web server on ``health_port`` whose
``/health`` is 503 once the last success is older than ``stale_after``; its access log is the service's
log) or ``artifacts`` (a file per answer in ``out_dir``); ``errors``: ``exception`` or ``line``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from service_kit import Kit

from horus_sdk import Heartbeat

kit = Kit()
log = kit.log
last_success = time.monotonic()


def client_timeout() -> aiohttp.ClientTimeout:
    if kit.get("sock_read_timeout"):
        return aiohttp.ClientTimeout(sock_read=float(kit["sock_read_timeout"]))
    return aiohttp.ClientTimeout(total=float(kit.get("total_timeout", 2.0)))


async def health(request: web.Request) -> web.Response:
    age = time.monotonic() - last_success
    if age < float(kit.get("stale_after", 1.0)):
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "stale", "last_success_age": round(age, 1)}, status=503)


async def serve_health() -> None:
    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=log if hasattr(log, "handlers") else None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(kit["health_port"])).start()


async def poll_forever(session: aiohttp.ClientSession, beat: Heartbeat | None) -> None:
    global last_success
    context: Any = ssl.create_default_context(cafile=kit["ca_file"]) if kit.get("ca_file") else None
    tick = 0
    while True:
        try:
            async with session.get(kit["url"], ssl=context if context is not None else True) as response:
                response.raise_for_status()
                answer = await response.json()
        except Exception as exc:
            if kit.get("errors", "exception") == "exception":
                log.exception("poll %d failed", tick)
            else:
                log.error("poll %d failed: %s: %s", tick, type(exc).__name__, exc)
        else:
            last_success = time.monotonic()
            if beat is not None:
                beat.progress("poll")
            if kit.get("output") == "artifacts":
                Path(kit["out_dir"], f"poll-{tick:05d}.json").write_text(json.dumps(answer))
            log.info("poll %d: %d quotes", tick, len(answer.get("quotes", [])))
            kit.tick_noise(tick)
        tick += 1
        await asyncio.sleep(kit.tick_seconds)


async def main() -> None:
    if kit.get("output") == "health":
        await serve_health()
    log.info("async poller started for %s", kit["url"].split("?")[0])
    async with aiohttp.ClientSession(timeout=client_timeout()) as session:
        if kit.get("output") == "heartbeat":
            async with Heartbeat(kit["heartbeat_file"], interval=0.2) as beat:
                await poll_forever(session, beat)
        else:
            await poll_forever(session, None)


asyncio.run(main())
