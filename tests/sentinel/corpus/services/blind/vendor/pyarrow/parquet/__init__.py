from pyarrow.parquet.core import ParquetWriter, write_table

__all__ = ["ParquetWriter", "write_table"]
