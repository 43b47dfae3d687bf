"""Prefect task for stage 5: tsfresh features of one era batch (what the engine lacks).

Off by default (``tsfresh_levels`` is empty): the engine computes tsfresh's catalogue. It runs
for calculators a user adds that the engine lacks, and as a reference.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.common.memory import release_memory
from eraflow.config import FeatureOptions, GridOptions, StoreOptions
from eraflow.runs.feature_store import tsfresh_config_hash, write_era_features
from eraflow.stages.batches import EraBatch
from eraflow.stages.sensor_profiles import engine_sensor_profiles
from eraflow.stages.tsfresh_stage import engine_profile_names, tsfresh_features
from tasks._common import retry_transient
from tasks.slices import read_batch


@task(
    name="tsfresh-features",
    retries=1,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="tsfresh[{batch.label}]",
)
def era_tsfresh_features(
    batch: EraBatch,
    features: FeatureOptions,
    grid: GridOptions,
    store: StoreOptions,
    catalogue: Path | None,
    run_id: str,
) -> int:
    """The tsfresh features of the sensors' catalogue profiles, minus what the engine computed.

    tsfresh runs with n_jobs=0 here: parallelism comes from mapping batches over workers
    (a Dask worker is daemonic and cannot fork tsfresh's pool; see PREFECT_NOTES).
    """
    logger = get_run_logger()
    with read_batch(batch, store, grid.freq) as part:
        if part.eras.empty:
            logger.warning("%s: its eras were re-segmented by another run; skipped", batch.label)
            return 0
        sensors = load_catalogue(catalogue)
        engine_profiles = engine_sensor_profiles(features.profile, part.sensors, sensors)
        values = tsfresh_features(
            part.values,
            part.fill_mask,
            part.eras,
            entity=batch.entity,
            profile=features.tsfresh_profile,
            catalogue=sensors,
            sensors=part.sensors,
            engine_provides={s: engine_profile_names(p) for s, p in engine_profiles.items()},
            include_filled=features.values == "grid",
        )
        written = write_era_features(
            part.store,
            values,
            entity=batch.entity,
            level=batch.level,
            stage="tsfresh",
            fingerprints=part.fingerprints,
            config_hash=tsfresh_config_hash(features, grid.freq, catalogue),
            run_id=run_id,
        )
    logger.info(
        "%s: %d tsfresh feature values of %d eras", batch.label, written.values, written.eras
    )
    release_memory()
    return written.values
