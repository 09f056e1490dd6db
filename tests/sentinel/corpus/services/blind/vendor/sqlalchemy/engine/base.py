"""Engine and Connection: a checkout from the pool, one statement at a time over the raw connection."""

from __future__ import annotations

import json
import socket
from types import TracebackType
from typing import Any

from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import TextClause


class RawConnection:
    """What the DBAPI driver would be: one socket to the database, a statement and its rows per line."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.settimeout(None)  # like psycopg2 without statement_timeout: a query waits as long as it takes
        self.reader = self.sock.makefile("rb")

    def execute(self, sql: str) -> list[Any]:
        self.sock.sendall(sql.replace("\n", " ").encode() + b"\n")
        line = self.reader.readline()
        if not line:
            raise ConnectionError("server closed the connection unexpectedly")
        rows: list[Any] = json.loads(line)
        return rows

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Result:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def all(self) -> list[Any]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Connection:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._raw: RawConnection | None = engine.pool.connect()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def execute(self, statement: TextClause) -> Result:
        assert self._raw is not None
        return Result(self._raw.execute(statement.text))

    def close(self) -> None:
        if self._raw is not None:
            self.engine.pool._return_conn(self._raw)
            self._raw = None


class Engine:
    def __init__(self, url: str, pool: QueuePool) -> None:
        self.url = url
        self.pool = pool

    def connect(self) -> Connection:
        return self._connection_cls(self)

    _connection_cls = Connection
