"""The C extension's part: the connection, over the corpus database stand-in's line protocol."""

from __future__ import annotations

import socket
from typing import Any


class Error(Exception):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


# The class lives in the extension, but Python names it by the package, as libpq's users see it.
for _cls in (Error, DatabaseError, OperationalError):
    _cls.__module__ = "psycopg2"

_CLOSED = (
    "server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request.\n"
)


def _dsn(dsn: str | None, kwargs: dict[str, Any]) -> dict[str, str]:
    values = dict(part.split("=", 1) for part in (dsn or "").split())
    values.update({k: str(v) for k, v in kwargs.items()})
    return values


def connect(dsn: str | None, connection_factory: object = None, **kwargs: Any) -> connection:
    params = _dsn(dsn, kwargs)
    host, port = params.get("host", "localhost"), int(params.get("port", 5432))
    try:
        sock = socket.create_connection((host, port), timeout=float(params.get("connect_timeout", 5)))
    except ConnectionRefusedError:
        raise OperationalError(
            f'connection to server at "{host}", port {port} failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?\n"
        ) from None
    conn = connection(sock)
    answer = conn._exchange(f"STARTUP user={params.get('user', 'postgres')} database={params.get('dbname', '')}")
    if answer.startswith("E "):
        _sqlstate, _, message = answer[2:].partition(" ")
        raise OperationalError(f'connection to server at "{host}", port {port} failed: FATAL:  {message}\n')
    return conn


class connection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self.closed = 0

    def _exchange(self, line: str) -> str:
        try:
            self._sock.sendall(line.encode() + b"\n")
            answer = self._reader.readline()
        except OSError:
            answer = b""
        if not answer:
            self.closed = 2
            raise OperationalError(_CLOSED)
        return answer.decode().strip()

    def cursor(self) -> cursor:
        return cursor(self)

    def commit(self) -> None:
        self._exchange("Q COMMIT")

    def close(self) -> None:
        self._sock.close()
        self.closed = 1


class cursor:
    def __init__(self, conn: connection) -> None:
        self.connection = conn

    def execute(self, query: str, vars: object = None) -> None:
        self.connection._exchange(f"Q {query}")

    def __enter__(self) -> cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
