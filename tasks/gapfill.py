"""Prefect task for stage 2: gap-fill the run's range with its stored margins, and store it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.common.memory import release_memory
from eraflow.config import GridOptions, StoreOptions
from eraflow.runs.grid_update import EntityWrite, recount_coverage, write_entity_range
from tasks._common import retry_transient
from tasks.resources import store_session


def _coverage_rows(coverage: pd.DataFrame) -> list[dict[str, object]]:
    """Per (entity, sensor) shares over the days recounted, for people (percent)."""
    totals = coverage.groupby(["entity", "sensor"], as_index=False)[
        ["rows", "measured", "filled", "missing"]
    ].sum()
    for part in ("measured", "filled", "missing"):
        totals[f"{part}_%"] = (100 * totals[part] / totals["rows"].clip(lower=1)).round(2)
    return totals.drop(columns=["measured", "filled", "missing"]).to_dict("records")


@task(
    name="gap-fill",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="gap-fill[{grid.freq}]",
)
def fill_and_store(
    frame: pd.DataFrame,
    grid: GridOptions,
    store: StoreOptions,
    catalogue: Path | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
    mapped: dict[str, list[str]] | None = None,
) -> list[EntityWrite]:
    """Fill each entity's gaps together with the stored rows around the range; store it.

    Gaps that cross the range's edges are filled as a run over the whole history would fill
    them (see :mod:`eraflow.runs.grid_update`); daily coverage is recounted and published.
    ``mapped`` lists each entity's sensors that had input (a dead one is still its own).
    """
    logger = get_run_logger()
    sensors = load_catalogue(catalogue)
    writes, coverage = [], []
    with store_session(store) as opened:
        for entity in sorted(frame["entity"].astype(str).unique()):
            write = write_entity_range(
                opened,
                frame,
                entity=entity,
                catalogue=sensors,
                freq=grid.freq,
                start=start,
                end=end,
                mapped=(mapped or {}).get(entity, ()),
            )
            writes.append(write)
            coverage.append(
                recount_coverage(opened, entity, freq=grid.freq, start=write.start, end=write.end)
            )
            logger.info(
                "%s: stored %d grid rows of %d sensors in [%s, %s)",
                entity,
                write.rows,
                len(write.sensors),
                write.start,
                write.end,
            )
    table = pd.concat(coverage, ignore_index=True)
    create_table_artifact(
        key="grid-coverage",
        table=_coverage_rows(table),
        description="Coverage per entity and sensor over the days this run touched (shares in %)",
    )
    dead = table.groupby(["entity", "sensor"])["measured"].sum()
    for (entity, sensor), measured in dead.items():
        if measured == 0:
            logger.warning(
                "sensor %s of %s has no measured value in the days this run touched", sensor, entity
            )
    release_memory(frame.size)
    return writes
