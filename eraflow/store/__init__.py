"""Result stores: where the grid, eras, features and selections live (Parquet by default)."""

from eraflow.store.base import TABLES, ResultStore
from eraflow.store.parquet import ParquetStore

__all__ = ["TABLES", "ParquetStore", "ResultStore"]
