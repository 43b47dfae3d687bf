"""Result stores: where the grid, eras, features and selections live (Parquet by default)."""

from eraflow.store.base import TABLES, ResultStore
from eraflow.store.parquet import ParquetStore
from eraflow.store.postgres import PostgresStore

__all__ = ["TABLES", "ParquetStore", "PostgresStore", "ResultStore"]
