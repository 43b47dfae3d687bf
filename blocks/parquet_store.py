"""A Prefect Block that names a Parquet result store (the embedded default's store)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from eraflow.store import ParquetStore


class ParquetStoreBlock(Block):
    """A folder of Parquet datasets, one per table (grid, eras, features, ...).

    Save one per environment (``ParquetStoreBlock(path=...).save("local")``) and pass its
    name to the flows, so deployments do not hard-code paths.
    """

    _block_type_name = "eraflow Parquet store"
    _block_type_slug = "eraflow-parquet-store"
    _description = "Folder holding eraflow's result tables as Parquet datasets."

    path: str = Field(
        default="eraflow-store",
        description="Store folder; relative paths resolve in the flow's working directory.",
    )
    lock_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a write waits for a lock held by another "
        "process before it fails (and is retried); the wait and its holder are logged.",
    )

    def open(self) -> ParquetStore:
        """The store this block points at."""
        return ParquetStore(self.path, lock_timeout=self.lock_timeout)
