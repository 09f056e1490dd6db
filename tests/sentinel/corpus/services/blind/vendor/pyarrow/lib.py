"""pyarrow.lib: Table, and check_status, which turns Arrow's IOError status into Python's OSError."""

from __future__ import annotations

import json
from typing import Any


class Table:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.num_rows = len(rows)

    @classmethod
    def from_pylist(cls, rows: list[dict[str, Any]]) -> Table:
        return cls(list(rows))

    def to_bytes(self) -> bytes:
        # A row group's pages: the values column after column, as Parquet lays them out.
        columns = sorted({key for row in self.rows for key in row})
        return b"".join(json.dumps([row.get(c) for row in self.rows]).encode() for c in columns)


def check_status(errno_value: int, detail: str) -> None:
    raise OSError(errno_value, f"Error writing bytes to file. Detail: [errno {errno_value}] {detail}")
