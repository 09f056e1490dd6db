"""Stand-in for pyarrow: a Table of rows, and (in pyarrow.parquet) a writer that really writes the bytes and
fails as Arrow's C++ file writer reports a failed write."""

from pyarrow.lib import Table

__all__ = ["Table"]
