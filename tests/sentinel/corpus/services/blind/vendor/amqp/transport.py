"""py-amqp's TCP transport: a real socket; a read that meets the end of the stream fails as py-amqp's does."""

from __future__ import annotations

import socket


class TCPTransport:
    def __init__(self, host: str, port: int, connect_timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self._buffer = b""

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        self.sock.settimeout(None)

    def read_frame(self) -> bytes:
        while b"\n" not in self._buffer:
            self._buffer += self._read(4096)
        frame, self._buffer = self._buffer.split(b"\n", 1)
        return frame

    def _read(self, n: int) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(n)
        if not chunk:
            raise OSError("Server unexpectedly closed connection")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
