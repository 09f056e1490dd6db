"""The client, its databases and collections; each write selects a server first."""

from __future__ import annotations

import json
from typing import Any

from pymongo.topology import Topology


class Collection:
    def __init__(self, client: MongoClient, name: str) -> None:
        self._client = client
        self.name = name

    def insert_one(self, document: dict[str, Any]) -> None:
        self._client._retryable_write(f"INSERT {self.name} {json.dumps(document)}")


class Database:
    def __init__(self, client: MongoClient, name: str) -> None:
        self._client = client
        self.name = name

    def __getitem__(self, name: str) -> Collection:
        return Collection(self._client, name)

    __getattr__ = __getitem__


class MongoClient:
    def __init__(self, host: str = "localhost", port: int = 27017, serverSelectionTimeoutMS: int = 30000) -> None:
        self._topology = Topology(host, port, serverSelectionTimeoutMS / 1000)

    def __getitem__(self, name: str) -> Database:
        return Database(self, name)

    __getattr__ = __getitem__

    def _retryable_write(self, line: str) -> None:
        sock = self._topology.select_server()
        with sock:
            sock.sendall(line.encode() + b"\n")
            sock.makefile("rb").readline()
