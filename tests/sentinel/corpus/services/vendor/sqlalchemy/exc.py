"""SQLAlchemy's DBAPI error wrappers, worded as SQLAlchemy 2.0 words them."""

from __future__ import annotations

from typing import Any


class SQLAlchemyError(Exception):
    code: str | None = None


class DBAPIError(SQLAlchemyError):
    code = "dbapi"

    def __init__(self, statement: str, params: Any, orig: BaseException) -> None:
        self.statement = statement
        self.params = params
        self.orig = orig
        super().__init__(statement, params, orig)

    def __str__(self) -> str:
        module = type(self.orig).__module__
        text = f"({module}.{type(self.orig).__name__}) {self.orig}"
        text += f"\n[SQL: {self.statement}]"
        if self.params is not None:
            text += f"\n[parameters: {self.params!r}]"
        return text + f"\n(Background on this error at: https://sqlalche.me/e/20/{self.code})"


class OperationalError(DBAPIError):
    code = "e3q8"


class IntegrityError(DBAPIError):
    code = "gkpj"
