"""The one way tasks open the result store: a saved block if named, else a Parquet folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.blocks.core import Block

import blocks.parquet_store
import blocks.postgres  # noqa: F401  (both register the block types Block.load resolves)
from eraflow.config import PipelineConfig
from eraflow.store import ParquetStore, ResultStore


@contextmanager
def store_session(config: PipelineConfig) -> Iterator[ResultStore]:
    """The configured store, closed afterwards."""
    if config.store_block is not None:
        block: Any = Block.load(config.store_block)
        store: ResultStore = block.open()
    else:
        store = ParquetStore(config.store)
    with store:
        yield store


def describe_store(config: PipelineConfig) -> str:
    """Where results go, for people (a folder, or a DSN without its password)."""
    with store_session(config) as store:
        return store.describe()
