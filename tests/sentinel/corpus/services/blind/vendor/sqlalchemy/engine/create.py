"""create_engine: a URL, a DBAPI connection per pooled connection (a real TCP socket), and the pool."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy.engine.base import Engine, RawConnection
from sqlalchemy.pool import QueuePool


def create_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10, pool_timeout: float = 30.0) -> Engine:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 5432

    def creator() -> RawConnection:
        return RawConnection(host, port)

    return Engine(url, QueuePool(creator, pool_size=pool_size, max_overflow=max_overflow, timeout=pool_timeout))
