"""One connection, and redis-py's words for a connect that failed."""

from __future__ import annotations

import socket

from redis.exceptions import ConnectionError, TimeoutError


class Connection:
    def __init__(self, host: str, port: int, socket_timeout: float | None) -> None:
        self.host = host
        self.port = port
        self.socket_timeout = socket_timeout
        self._sock: socket.socket | None = None

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            sock = self._connect()
        except TimeoutError:
            raise TimeoutError("Timeout connecting to server") from None
        except OSError as e:
            raise ConnectionError(self._error_message(e)) from e
        self._sock = sock

    def _connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=self.socket_timeout)

    def _error_message(self, exception: OSError) -> str:
        if len(exception.args) == 1:
            return f"Error connecting to {self.host}:{self.port}. {exception.args[0]}."
        return f"Error {exception.args[0]} connecting to {self.host}:{self.port}. {exception.args[1]}."

    def send_command(self, *args: object) -> str:
        self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(" ".join(map(str, args)).encode() + b"\n")
            answer = self._sock.makefile("rb").readline()
        except OSError as e:
            self.disconnect()
            raise ConnectionError(f"Error while reading from {self.host}:{self.port} : {e.args}") from e
        if not answer:
            self.disconnect()
            raise ConnectionError("Connection closed by server.")
        return answer.decode().strip()

    def disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
