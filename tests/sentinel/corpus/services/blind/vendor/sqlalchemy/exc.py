"""SQLAlchemy's exceptions, with the link to the error's page that SQLAlchemy appends."""

from __future__ import annotations


class SQLAlchemyError(Exception):
    code: str | None = None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        message = super().__str__()
        if self.code:
            message += f" (Background on this error at: https://sqlalche.me/e/20/{self.code})"
        return message


class TimeoutError(SQLAlchemyError):
    """Raised when a connection pool times out on getting a connection."""


class DBAPIError(SQLAlchemyError):
    pass


class OperationalError(DBAPIError):
    code = "e3q8"
