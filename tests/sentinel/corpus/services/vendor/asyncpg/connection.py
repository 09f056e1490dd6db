"""The connection, over the corpus database stand-in's line protocol, with asyncpg's errors."""

from __future__ import annotations

import asyncio

from asyncpg import connect_utils, exceptions


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def _exchange(self, line: str) -> str:
        self._writer.write(line.encode() + b"\n")
        try:
            await self._writer.drain()
            answer = await self._reader.readline()
        except OSError:
            answer = b""
        if not answer:
            raise exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return answer.decode().strip()

    async def execute(self, query: str, *args: object) -> str:
        return await self._exchange(f"Q {query}")

    async def fetchval(self, query: str, *args: object) -> str:
        return await self._exchange(f"Q {query}")

    async def close(self) -> None:
        self._writer.close()


async def connect(
    dsn: str | None = None, *, host: str = "localhost", port: int = 5432, user: str = "postgres", **kwargs: object
) -> Connection:
    return await connect_utils._connect(host=host, port=port, user=user, connection_class=Connection)
