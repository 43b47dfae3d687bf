"""Prefect task for stage 2: bounded gap-fill with a fill mask and a coverage report."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.config import PipelineConfig
from eraflow.gapfill import GapFillResult, gap_fill
from tasks._common import retry_transient


@task(name="gap-fill", tags=["cpu", "gapfill"], retries=1, retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE, task_run_name="gap-fill[{config.freq}]")
def fill_gaps(grid: pd.DataFrame, config: PipelineConfig,
              measured: list[tuple[str, str]] | None = None) -> GapFillResult:
    """Fill short gaps; publish coverage per (entity, sensor) as a table artifact.

    ``measured`` lists the (entity, sensor) pairs that had input: only those can be dead
    sensors (the grid has every entity's sensors as columns, most absent for some entities).
    """
    logger = get_run_logger()
    result = gap_fill(grid, load_catalogue(config.catalogue), freq=config.freq)
    coverage = result.coverage.copy()
    for column in ("measured_share", "filled_share", "missing_share"):
        coverage[column] = (100 * coverage[column]).round(2)
    coverage["longest_gap"] = coverage["longest_gap"].astype(str)
    coverage["max_fill_gap"] = coverage["max_fill_gap"].astype(str)
    create_table_artifact(key="grid-coverage", table=coverage.to_dict("records"),
                          description="Coverage per entity and sensor (shares in %)")
    dead = coverage.loc[coverage["all_missing"], ["entity", "sensor"]]
    for entity, sensor in dead.itertuples(index=False):
        if measured is None or (entity, sensor) in set(measured):
            logger.warning("sensor %s of %s has no valid value in this range (all of its "
                           "values were missing or out of range)", sensor, entity)
    return result
