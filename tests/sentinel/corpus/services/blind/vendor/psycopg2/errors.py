"""psycopg2.errors: one class per SQLSTATE, as psycopg2 names them."""

from __future__ import annotations


class Error(Exception):
    pgcode: str | None = None


class DatabaseError(Error):
    pass


class ProgrammingError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class UndefinedTable(ProgrammingError):
    pgcode = "42P01"


class UndefinedColumn(ProgrammingError):
    pgcode = "42703"
