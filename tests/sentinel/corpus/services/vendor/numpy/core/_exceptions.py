"""numpy's allocation error, worded as numpy words it."""

from __future__ import annotations


class _ArrayMemoryError(MemoryError):
    """Thrown when an array cannot be allocated."""

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.shape = shape
        self.dtype = dtype

    @property
    def _total_size(self) -> int:
        size = {"float64": 8, "float32": 4, "int64": 8}[self.dtype]
        for dim in self.shape:
            size *= dim
        return size

    @staticmethod
    def _size_to_string(num_bytes: int) -> str:
        units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        unit = 0
        value = float(num_bytes)
        while value >= 1024 and unit < len(units) - 1:
            value /= 1024
            unit += 1
        return f"{value:.3g} {units[unit]}" if unit else f"{num_bytes} bytes"

    def __str__(self) -> str:
        return (
            f"Unable to allocate {self._size_to_string(self._total_size)} for an array with shape {self.shape} "
            f"and data type {self.dtype}"
        )
