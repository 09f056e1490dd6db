"""Textual SQL."""

from __future__ import annotations


class TextClause:
    def __init__(self, text: str) -> None:
        self.text = text


def text(sql: str) -> TextClause:
    return TextClause(sql)
