"""Opening a connection and its startup exchange."""

from __future__ import annotations

from typing import Any

from asyncpg import exceptions


async def _connect(*, host: str, port: int, user: str, connection_class: Any) -> Any:
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    conn = connection_class(reader, writer)
    answer = await conn._exchange(f"STARTUP user={user}")
    if answer.startswith("E "):
        code, _, message = answer[2:].partition(" ")
        writer.close()
        raise exceptions.BY_SQLSTATE.get(code, exceptions.PostgresError)(message)
    return conn
