"""Prefect task for stage 1: merge sources onto the regular grid."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from eraflow.aggregate import AggregateResult, aggregate
from eraflow.catalogue import load_catalogue
from eraflow.config import PipelineConfig
from tasks._common import retry_transient


@task(
    name="aggregate",
    tags=["cpu", "aggregate"],
    retries=1,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="aggregate[{config.freq}]",
)
def aggregate_grid(frames: list[pd.DataFrame], config: PipelineConfig) -> AggregateResult:
    """One wide UTC grid per entity; unknown sensors are logged, not dropped."""
    logger = get_run_logger()
    result = aggregate(
        frames,
        load_catalogue(config.catalogue),
        freq=config.freq,
        start=config.start,
        end=config.end,
    )
    if result.report.unknown_sensors:
        logger.warning(
            "sensors not in the catalogue (kept with default handling): %s",
            ", ".join(result.report.unknown_sensors),
        )
    dropped = int(result.report.per_sensor["dropped_out_of_range"].sum())
    logger.info(
        "grid %s rows x %d sensors; %d out-of-range values dropped",
        len(result.grid),
        result.grid.shape[1] - 2,
        dropped,
    )
    return result
