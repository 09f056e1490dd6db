"""Server selection: try the server until the selection timeout, then describe the topology as pymongo does."""

from __future__ import annotations

import os
import socket
import time

from pymongo.errors import ServerSelectionTimeoutError

_TIMEOUTS = "(configured timeouts: socketTimeoutMS: 20000.0ms, connectTimeoutMS: 20000.0ms)"


class Topology:
    def __init__(self, host: str, port: int, selection_timeout: float) -> None:
        self.host = host
        self.port = port
        self.selection_timeout = selection_timeout
        self.id = os.urandom(12).hex()

    def select_server(self) -> socket.socket:
        return self._select_servers_loop()

    def _select_servers_loop(self) -> socket.socket:
        deadline = time.monotonic() + self.selection_timeout
        while True:
            try:
                return socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError as exc:
                error = f"{self.host}:{self.port}: {exc} {_TIMEOUTS}"
            if time.monotonic() >= deadline:
                raise ServerSelectionTimeoutError(
                    f"{error}, Timeout: {self.selection_timeout}s, Topology Description: <TopologyDescription id: "
                    f"{self.id}, topology_type: Unknown, servers: [<ServerDescription ('{self.host}', {self.port}) "
                    f"server_type: Unknown, rtt: None, error=AutoReconnect('{error}')>]>"
                )
            time.sleep(0.05)
