"""The client: each command on the one connection, reconnecting after a failure."""

from __future__ import annotations

from redis.connection import Connection


class Redis:
    def __init__(self, host: str = "localhost", port: int = 6379, socket_timeout: float | None = None) -> None:
        self.connection = Connection(host, port, socket_timeout)

    def execute_command(self, *args: object) -> str:
        return self.connection.send_command(*args)

    def ping(self) -> bool:
        return self.execute_command("PING") == "+PONG"

    def set(self, name: str, value: object) -> bool:
        return self.execute_command("SET", name, value) != ""

    def incr(self, name: str) -> str:
        return self.execute_command("INCR", name)
