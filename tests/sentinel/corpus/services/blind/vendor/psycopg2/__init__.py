"""Stand-in for psycopg2 over SQLite: the statement really runs (on ``<host>/<dbname>.sqlite``), and a
failure is raised as psycopg2 raises PostgreSQL's error, with its SQLSTATE class and its LINE/caret lines."""

from __future__ import annotations

from psycopg2.extensions import connection


def connect(dsn: str) -> connection:
    fields = dict(part.split("=", 1) for part in dsn.split())
    return connection(dsn, f"{fields['host']}/{fields['dbname']}.sqlite")


__all__ = ["connect"]
