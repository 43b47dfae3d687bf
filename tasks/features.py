"""Prefect task for stage 4: the array-module feature engine over one era batch."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import grid_step
from eraflow.common.memory import release_memory
from eraflow.config import FeatureOptions, GridOptions, StoreOptions
from eraflow.runs.feature_store import engine_config_hash, write_era_features
from eraflow.stages.batches import EraBatch
from eraflow.stages.features import concat_feature_rows, gpu_available, is_device_oom
from eraflow.stages.greenhouse import greenhouse_features
from eraflow.stages.sensor_profiles import compute_profiled_features, engine_sensor_profiles
from tasks._common import retry_transient
from tasks.slices import read_batch


def _gpu_slot(device: str) -> AbstractContextManager[Any]:
    """Hold one slot of the ``gpu`` global concurrency limit while a GPU computes."""
    if device == "cpu" or (device == "auto" and not gpu_available()):
        return nullcontext()
    from prefect.concurrency.sync import concurrency

    return concurrency("gpu", occupy=1)


@task(
    name="era-features",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="features[{batch.label}]",
)
def era_features(
    batch: EraBatch,
    features: FeatureOptions,
    grid: GridOptions,
    store: StoreOptions,
    catalogue: Path | None,
    run_id: str,
    device: Literal["auto", "gpu", "cpu"] | None = None,
) -> int:
    """Compute the engine's features for one batch and store them with their ledger rows.

    The greenhouse family (:mod:`eraflow.stages.greenhouse`, on the CPU: a few array passes)
    goes in the same write and ledger rows.

    ``device`` is the planner's choice (default: the config's). A GPU that runs out of
    memory does not fail the batch: it is computed again on the CPU. Eras another run
    re-segmented meanwhile are not written (that run computes them).
    """
    logger = get_run_logger()
    chosen = device or features.device
    with read_batch(batch, store, grid.freq) as part:
        if part.eras.empty:
            logger.warning("%s: its eras were re-segmented by another run; skipped", batch.label)
            return 0
        sensors = load_catalogue(catalogue)
        profiles = engine_sensor_profiles(features.profile, part.sensors, sensors)

        def compute(device: Literal["auto", "gpu", "cpu"]) -> pd.DataFrame:
            return compute_profiled_features(
                part.values,
                part.fill_mask,
                part.eras,
                entity=batch.entity,
                profiles=profiles,
                device=device,
                feature_values=features.values,
                native_intervals={s: sensors.get(s).native_interval for s in part.sensors},
            )

        try:
            with _gpu_slot(chosen):
                values = compute(chosen)
        except Exception as exc:
            if chosen == "cpu" or not is_device_oom(exc):
                raise
            logger.warning("%s: GPU out of memory (%s); computing on the CPU", batch.label, exc)
            values = compute("cpu")
        greenhouse = greenhouse_features(
            part.values,
            part.fill_mask,
            part.eras,
            entity=batch.entity,
            constants=sensors.greenhouse,
            step=grid_step(grid.freq),
        )
        values = concat_feature_rows([values, greenhouse])
        written = write_era_features(
            part.store,
            values,
            entity=batch.entity,
            level=batch.level,
            stage="engine",
            fingerprints=part.fingerprints,
            config_hash=engine_config_hash(features, grid.freq, catalogue),
            run_id=run_id,
        )
    if written.skipped:
        logger.warning(
            "%s: %d eras changed meanwhile and were not written", batch.label, len(written.skipped)
        )
    logger.info(
        "%s: %d feature values of %d eras (%s engine)",
        batch.label,
        written.values,
        written.eras,
        values["engine"].iloc[0] if len(values) else "-",
    )
    release_memory()
    return written.values
