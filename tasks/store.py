"""Prefect tasks that persist stage outputs in the result store."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from eraflow.config import PipelineConfig
from eraflow.store import ParquetStore, ResultStore
from tasks._common import retry_transient


def open_store(config: PipelineConfig) -> ResultStore:
    """The configured store (the embedded default is a Parquet folder)."""
    return ParquetStore(config.store)


@task(name="write-grid", tags=["cpu", "store"], retries=3, retry_delay_seconds=[1, 5, 15],
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def write_grid(grid: pd.DataFrame, coverage: pd.DataFrame, config: PipelineConfig,
               start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Replace the grid (and its coverage rows) for [start, end); returns rows written."""
    store = open_store(config)
    written = store.write_grid(grid, start=start, end=end)
    for entity, part in coverage.groupby("entity"):
        stamped = part.assign(start=start, end=end)
        store.write_table("coverage", stamped, entity=str(entity),
                          replace_where={"start": start})
    get_run_logger().info("wrote %d grid rows to %s", written, store.describe())
    return written
