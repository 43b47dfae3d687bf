"""Prefect tasks that persist stage outputs, and the one way tasks open the result store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from prefect import get_run_logger, task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE

import blocks.parquet_store
import blocks.postgres  # noqa: F401  (both register the block types Block.load resolves)
from eraflow.config import PipelineConfig
from eraflow.store import ParquetStore, ResultStore
from tasks._common import retry_transient


@contextmanager
def store_session(config: PipelineConfig) -> Iterator[ResultStore]:
    """The configured store, closed afterwards: a saved block if named, else a Parquet folder."""
    if config.store_block is not None:
        block = Block.load(config.store_block)
        store: ResultStore = block.open()  # type: ignore[attr-defined]
    else:
        store = ParquetStore(config.store)
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def describe_store(config: PipelineConfig) -> str:
    """Where results go, for people (a folder, or a DSN without its password)."""
    with store_session(config) as store:
        return store.describe()


@task(name="write-grid", tags=["cpu", "store"], retries=3, retry_delay_seconds=[1, 5, 15],
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def write_grid(grid: pd.DataFrame, coverage: pd.DataFrame, config: PipelineConfig,
               start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Replace the grid (and its coverage rows) for [start, end); returns rows written."""
    with store_session(config) as store:
        written = store.write_grid(grid, start=start, end=end)
        for entity, part in coverage.groupby("entity"):
            stamped = part.assign(start=start, end=end)
            store.write_table("coverage", stamped, entity=str(entity),
                              replace_where={"start": (start, end)})
        get_run_logger().info("wrote %d grid rows to %s", written, store.describe())
    return written
