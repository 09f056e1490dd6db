"""An engine over sqlite3, whose errors are wrapped as SQLAlchemy wraps them."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from sqlalchemy import exc
from sqlalchemy.sql import TextClause


class Connection:
    def __init__(self, dbapi: sqlite3.Connection) -> None:
        self._dbapi = dbapi

    def execute(self, statement: TextClause, parameters: dict[str, Any] | None = None) -> sqlite3.Cursor:
        sql = re.sub(r":(\w+)", "?", statement.text)
        values = tuple((parameters or {}).values())
        return self._execute_context(sql, values)

    def _execute_context(self, sql: str, values: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._dbapi.execute(sql, values)
        except sqlite3.OperationalError as e:
            self._handle_dbapi_exception(e, sql, values)
            raise

    def _handle_dbapi_exception(self, e: sqlite3.Error, sql: str, values: tuple[Any, ...]) -> None:
        wrapper = exc.IntegrityError if isinstance(e, sqlite3.IntegrityError) else exc.OperationalError
        raise wrapper(sql, values, e) from e


class Engine:
    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        dbapi = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            with dbapi:
                yield Connection(dbapi)
        finally:
            dbapi.close()


def create_engine(url: str, connect_args: dict[str, Any] | None = None) -> Engine:
    return Engine(url.removeprefix("sqlite:///"), float((connect_args or {}).get("timeout", 5.0)))
