"""Prefect task for stage 6: feature selection per level over a scope, and its matrices."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.config import PipelineConfig
from eraflow.grid import grid_step
from eraflow.memory import release_memory
from eraflow.scope import SelectionSettings, select_scope
from tasks._common import RunProgress, retry_transient
from tasks.resources import store_session


def selection_settings(config: PipelineConfig) -> SelectionSettings:
    """The selection settings of a pipeline configuration."""
    return SelectionSettings(
        correlation_threshold=config.correlation_threshold,
        fdr_level=config.fdr_level,
        target_sensor=config.target_sensor,
        target_how=config.target_how,
        device="cpu" if config.device == "auto" else config.device,
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
    level: str, scope: str, entities: list[str], config: PipelineConfig, run_id: str
) -> dict[str, int]:
    """Select ``level``'s features over the scope's entities; store selection and matrices.

    Only this scope's rows are replaced; other scopes' selections and matrices stay.
    """
    logger = get_run_logger()
    progress = RunProgress(f"selection {scope}/{level}", "features screened")
    with store_session(config) as store:
        summary = select_scope(
            store,
            scope,
            entities,
            level,
            settings=selection_settings(config),
            step=grid_step(config.freq),
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
