"""Prefect task for stage 6: feature selection per level, and the era x feature matrix."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.config import PipelineConfig
from eraflow.errors import ConfigError, StoreError
from eraflow.features import to_wide
from eraflow.grid import entity_frames
from eraflow.selection import align_target_to_eras, select
from eraflow.store import ResultStore
from tasks._common import retry_transient
from tasks.store import store_session

ALL_ENTITIES = "all"
"""Selection is made across compartments (more eras per test); stored under this entity."""


def _target_per_era(store: ResultStore, entities: list[str], eras: pd.DataFrame,
                    config: PipelineConfig) -> pd.Series | None:
    """The target sensor of each entity, aligned to that entity's eras by time."""
    if config.target_sensor is None:
        return None
    parts = []
    for entity in entities:
        grid = store.read_grid(entity=entity)
        values, _ = entity_frames(grid)[entity]
        if config.target_sensor not in values:
            raise ConfigError(f"target_sensor {config.target_sensor!r} is not a sensor of "
                              f"{entity}; sensors are {sorted(values.columns)}")
        parts.append(align_target_to_eras(values[config.target_sensor],
                                          eras[eras["entity"] == entity], config.target_how))
    return pd.concat(parts)


@task(name="selection", tags=["cpu", "selection"], retries=1,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE,
      task_run_name="selection[{level}]")
def select_level(level: str, entities: list[str], config: PipelineConfig) -> dict[str, int]:
    """Select features of one level across entities; store selection and feature matrix."""
    logger = get_run_logger()
    with store_session(config) as store:
        features = pd.concat([store.read_table("features", entity=e) for e in entities],
                             ignore_index=True)
        features = features[features["level"] == level]
        eras = pd.concat([store.read_table("eras", entity=e) for e in entities],
                         ignore_index=True)
        eras = eras[eras["level"] == level]
        matrix = to_wide(features)
        result = select(matrix, eras, device=config.device if config.device != "auto" else
                        "cpu", correlation_threshold=config.correlation_threshold,
                        fdr_level=config.fdr_level,
                        target_per_era=_target_per_era(store, entities, eras, config))
        store.write_table("selection", result.selection.assign(level=level, entity=ALL_ENTITIES),
                          entity=ALL_ENTITIES, replace_where={"level": level})
        kept = result.matrix.reset_index()
        for entity, part in kept.groupby("entity"):
            try:
                store.write_table("feature_matrix", part, entity=str(entity),
                                  replace_where={"level": level})
            except StoreError as exc:  # e.g. PostgreSQL's 1,600-column limit
                logger.warning("feature matrix of %s/%s not stored (%s); the long features "
                               "and selection tables hold the same data", entity, level, exc)
    reasons = result.selection.loc[~result.selection["kept"], "reason"].str.split(" ").str[0]
    summary = {"eras": len(matrix), "features": matrix.shape[1], "kept": len(result.kept)}
    create_table_artifact(
        key=f"selection-{level.lower()}",
        table=[summary | {"dropped_" + k: int(v) for k, v in reasons.value_counts().items()}],
        description=f"Feature selection at level {level}",
    )
    logger.info("level %s: %d eras, %d features, %d kept", level, *summary.values())
    return summary
