"""Prefect task for stage 1: merge sources onto the regular grid."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.common.errors import DataError
from eraflow.common.grid import interval_text
from eraflow.common.memory import release_memory
from eraflow.config import GridOptions, SourceOptions
from eraflow.stages.aggregate import AggregateResult, aggregate
from tasks._common import retry_transient


@task(
    name="aggregate",
    retries=1,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="aggregate[{grid.freq}]",
)
def aggregate_grid(
    frames: list[pd.DataFrame], source: SourceOptions, grid: GridOptions, *, report: bool = True
) -> AggregateResult:
    """One wide UTC grid per entity; unknown sensors are logged, not dropped.

    ``report``: publish the data-quality artifact (a backfill's chunks leave it).
    """
    logger = get_run_logger()
    result = aggregate(
        frames,
        load_catalogue(source.catalogue),
        freq=grid.freq,
        start=source.start,
        end=source.end,
    )
    if result.report.unknown_sensors:
        logger.warning(
            "sensors not in the catalogue (kept with default handling): %s",
            ", ".join(result.report.unknown_sensors),
        )
    quality = result.report.per_sensor
    dropped = quality[["dropped_non_finite", "dropped_out_of_range", "dropped_spike"]].sum(axis=1)
    if report:
        create_table_artifact(
            key="data-quality",
            table=quality.assign(
                native_interval=quality["native_interval"].map(interval_text)
            ).to_dict(orient="records"),
            description="Per sensor: values read, values dropped in aggregation (non-finite, "
            "outside the catalogue's range, grid spikes of its Hampel check), and how often "
            "it logs (from the catalogue or the source's timestamps): features read a sensor "
            "slower than the grid at its own interval",
        )
    for row in quality[quality["slower_than_grid"]].itertuples():
        logger.info(
            "%s/%s logs every %s (grid %s): its features use its own %s values",
            row.entity,
            row.sensor,
            interval_text(row.native_interval),
            grid.freq,
            interval_text(row.native_interval),
        )
    for row in quality[dropped > 0].itertuples():
        logger.warning(
            "%s/%s: dropped %d non-finite and %d out-of-range of %d values, %d grid spikes",
            row.entity,
            row.sensor,
            row.dropped_non_finite,
            row.dropped_out_of_range,
            row.values_in,
            row.dropped_spike,
        )
    rows = result.grid.groupby("entity").size()
    short = rows[rows < 2]
    if len(short):
        raise DataError(
            f"entities {sorted(short.index)} have one grid row in this range: a grid "
            "needs at least two; widen the range or use a shorter freq"
        )
    logger.info("grid %s rows x %d sensors", len(result.grid), result.grid.shape[1] - 2)
    release_memory(result.grid.size)
    return result
