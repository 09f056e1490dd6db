"""text(): a SQL string as SQLAlchemy carries it."""

from __future__ import annotations


class TextClause:
    def __init__(self, sql: str) -> None:
        self.text = sql

    def __str__(self) -> str:
        return self.text


def text(sql: str) -> TextClause:
    return TextClause(sql)
