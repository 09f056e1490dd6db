"""A connection and its cursor; SQLite's complaint becomes the PostgreSQL error the server would send."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from psycopg2 import errors


def _server_error(exc: sqlite3.OperationalError, sql: str) -> errors.Error:
    message = str(exc)
    line = sql.strip().splitlines()[0]
    if match := re.match(r"no such table: (\w+)", message):
        name = match[1]
        caret = " " * (len("LINE 1: ") + max(line.find(name), 0)) + "^"
        return errors.UndefinedTable(f'relation "{name}" does not exist\nLINE 1: {line}\n{caret}\n')
    if match := re.match(r"no such column: (\w+)", message):
        return errors.UndefinedColumn(f'column "{match[1]}" does not exist\nLINE 1: {line}\n')
    return errors.OperationalError(message)


class cursor:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._rows: list[Any] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._rows = self._db.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            # psycopg2 merges the parameters into the query on the client: the server quotes it that way.
            sent = sql.replace("%s", "{}").format(
                *(f"'{value}'" if isinstance(value, str) else value for value in params)
            )
            raise _server_error(exc, sent) from None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __enter__(self) -> cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._rows = []


class connection:
    def __init__(self, dsn: str, path: str) -> None:
        self.dsn = dsn
        self._db = sqlite3.connect(path)

    def cursor(self) -> cursor:
        return cursor(self._db)

    def close(self) -> None:
        self._db.close()
