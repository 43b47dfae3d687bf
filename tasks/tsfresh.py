"""Prefect task for stage 5: tsfresh features of one era batch (what the engine lacks)."""

from __future__ import annotations

import hashlib

from prefect import get_run_logger, task

from eraflow.batches import EraBatch, config_hash, era_id_window
from eraflow.catalogue import load_catalogue
from eraflow.config import PipelineConfig
from eraflow.tsfresh_stage import engine_profile_names, tsfresh_features
from tasks._common import retry_transient
from tasks.caching import batch_cache_key
from tasks.slices import read_batch

STAGE_VERSION = "tsfresh-0.21.2-1"


def _settings(config: PipelineConfig) -> dict[str, object]:
    catalogue = "" if config.catalogue is None else hashlib.sha256(
        config.catalogue.read_bytes()).hexdigest()  # its content decides the profiles
    return {"profile": config.tsfresh_profile, "engine_profile": config.features_profile,
            "freq": config.freq, "catalogue": catalogue}


def tsfresh_settings_hash(config: PipelineConfig) -> str:
    """The ``config_hash`` the tsfresh stage writes for these settings."""
    return config_hash(_settings(config), [STAGE_VERSION])


@task(name="tsfresh-features", tags=["cpu", "tsfresh"], retries=1, retry_jitter_factor=0.5,
      retry_condition_fn=retry_transient,
      cache_key_fn=batch_cache_key("tsfresh", STAGE_VERSION, _settings),
      persist_result=True, task_run_name="tsfresh[{batch.label}]")
def era_tsfresh_features(batch: EraBatch, config: PipelineConfig, run_id: str) -> int:
    """The tsfresh features of the sensors' catalogue profiles, minus what the engine computed.

    tsfresh runs with n_jobs=0 here: parallelism comes from mapping batches over workers
    (a Dask worker is daemonic and cannot fork tsfresh's pool; see PREFECT_NOTES).
    """
    with read_batch(batch, config) as (store, values, fill_mask, eras, sensors):
        features = tsfresh_features(
            values, fill_mask, eras, entity=batch.entity, profile=config.tsfresh_profile,
            catalogue=load_catalogue(config.catalogue), sensors=sensors,
            engine_provides=engine_profile_names(config.features_profile),
        )
        features["run_id"] = run_id
        features["config_hash"] = tsfresh_settings_hash(config)
        store.write_table("features", features, entity=batch.entity,
                          replace_where={"level": batch.level, "engine": ["tsfresh"],
                                         "era_id": era_id_window(batch)})
    get_run_logger().info("%s: %d tsfresh feature values", batch.label, len(features))
    return len(features)
