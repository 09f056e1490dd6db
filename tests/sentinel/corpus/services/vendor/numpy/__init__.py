"""Stand-in for numpy: ``zeros`` allocates for real, and a failed allocation is numpy's _ArrayMemoryError."""

from __future__ import annotations

from numpy.core._exceptions import _ArrayMemoryError

__all__ = ["zeros"]

_ITEMSIZE = {"float64": 8, "float32": 4, "int64": 8}


class ndarray:
    def __init__(self, shape: tuple[int, ...], dtype: str, buffer: bytearray) -> None:
        self.shape = shape
        self.dtype = dtype
        self._buffer = buffer

    @property
    def nbytes(self) -> int:
        return len(self._buffer)


def zeros(shape: int | tuple[int, ...], dtype: str = "float64") -> ndarray:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = _ITEMSIZE[dtype]
    for dim in shape:
        size *= dim
    try:
        buffer = bytearray(size)
    except MemoryError:
        raise _ArrayMemoryError(shape, dtype) from None
    return ndarray(shape, dtype, buffer)
