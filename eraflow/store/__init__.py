"""Result stores: where the grid, eras, features and selections live (Parquet by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eraflow.store.base import Key, Range, ResultStore
from eraflow.store.locks import LockTimeoutError
from eraflow.store.parquet import ParquetStore
from eraflow.store.quarantine import CorruptPartitionError
from eraflow.store.tables import TABLES, Table, table

if TYPE_CHECKING:
    from eraflow.store.postgres import PostgresStore

__all__ = [
    "TABLES",
    "CorruptPartitionError",
    "Key",
    "LockTimeoutError",
    "ParquetStore",
    "PostgresStore",
    "Range",
    "ResultStore",
    "Table",
    "table",
]


def __getattr__(name: str) -> Any:
    """Import the PostgreSQL store on first use: machines without psycopg keep Parquet."""
    if name == "PostgresStore":
        from eraflow.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'eraflow.store' has no attribute {name!r}")
