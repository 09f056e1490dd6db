"""Stand-in for psycopg2: ``connect`` and a cursor's ``execute``, with libpq's own error messages."""

from __future__ import annotations

from psycopg2._psycopg import OperationalError, connection
from psycopg2._psycopg import connect as _connect

__all__ = ["OperationalError", "connect"]


def connect(dsn: str | None = None, connection_factory: object = None, **kwargs: object) -> connection:
    kwasync = {}
    conn = _connect(dsn, connection_factory=connection_factory, **kwasync, **kwargs)
    return conn
