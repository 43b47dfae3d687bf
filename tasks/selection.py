"""Prefect task for stage 6: feature selection per level over a scope, and its matrices."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.common.grid import grid_step
from eraflow.common.memory import release_memory
from eraflow.config import Device, GridOptions, SelectionOptions, StoreOptions
from eraflow.runs.scope import SelectionSettings, select_scope
from tasks._common import RunProgress, retry_transient
from tasks.resources import store_session


def selection_settings(selection: SelectionOptions, device: Device) -> SelectionSettings:
    """The selection stage's settings of a run's selection section."""
    return SelectionSettings(
        correlation_threshold=selection.correlation_threshold,
        fdr_level=selection.fdr_level,
        hypotheses_independent=selection.hypotheses_independent,
        target_sensor=selection.target_sensor,
        target_how=selection.target_how,
        device="cpu" if device == "auto" else device,
    )


@task(
    name="selection",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="selection[{scope}/{level}]",
)
def select_level(
    level: str,
    scope: str,
    entities: list[str],
    selection: SelectionOptions,
    device: Device,
    grid: GridOptions,
    store: StoreOptions,
    run_id: str,
) -> dict[str, int]:
    """Select ``level``'s features over the scope's entities; store selection and matrices.

    Only this scope's rows are replaced; other scopes' selections and matrices stay.
    """
    logger = get_run_logger()
    progress = RunProgress(f"selection {scope}/{level}", "features screened")
    with store_session(store) as opened:
        summary = select_scope(
            opened,
            scope,
            entities,
            level,
            settings=selection_settings(selection, device),
            step=grid_step(grid.freq),
            run_id=run_id,
            progress=progress,
        )
    progress.finish()
    create_table_artifact(
        key=f"selection-{level.lower()}",
        table=[{"scope": scope} | summary],
        description=f"Feature selection at level {level}",
    )
    logger.info(
        "%s level %s: %d eras, %d features, %d kept",
        scope,
        level,
        summary["eras"],
        summary["features"],
        summary["kept"],
    )
    release_memory()
    return summary
