"""The Parquet store block round-trips through the Prefect API."""

from __future__ import annotations

from pathlib import Path

from blocks.parquet_store import ParquetStoreBlock
from eraflow.store import ParquetStore


def test_save_load_open(tmp_path: Path) -> None:
    ParquetStoreBlock(path=str(tmp_path / "store")).save("test-store", overwrite=True)
    loaded = ParquetStoreBlock.load("test-store")
    store = loaded.open()
    assert isinstance(store, ParquetStore)
    assert store.describe() == str((tmp_path / "store").resolve())
