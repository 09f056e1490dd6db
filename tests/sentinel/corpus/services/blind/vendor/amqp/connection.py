"""py-amqp's Connection: connect, then drain frames (each one a delivered message)."""

from __future__ import annotations

from collections.abc import Callable

from amqp.transport import TCPTransport


class Connection:
    def __init__(self, host: str = "localhost:5672", connect_timeout: float | None = None) -> None:
        name, _, port = host.partition(":")
        self.transport = TCPTransport(name, int(port or 5672), connect_timeout)
        self.on_message: Callable[[bytes], None] | None = None

    def connect(self) -> None:
        self.transport.connect()

    def drain_events(self, timeout: float | None = None) -> None:
        while not self.blocking_read(timeout):
            pass

    def blocking_read(self, timeout: float | None = None) -> bool:
        frame = self.transport.read_frame()
        if self.on_message is not None:
            self.on_message(frame)
        return True

    def close(self) -> None:
        self.transport.close()
