"""Stand-in for asyncpg: ``connect`` and a connection's ``execute``, raising asyncpg's own exceptions."""

from asyncpg.connection import Connection, connect

__all__ = ["Connection", "connect"]
