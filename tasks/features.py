"""Prefect task for stage 4: the array-module feature engine over one era batch."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

from prefect import get_run_logger, task

from eraflow.batches import EraBatch, config_hash, era_id_window
from eraflow.config import PipelineConfig
from eraflow.features import compute_features, gpu_available, is_device_oom
from tasks._common import retry_transient
from tasks.caching import batch_cache_key
from tasks.slices import read_batch

ENGINE_VERSION = "features-1"


def _gpu_slot(device: str) -> AbstractContextManager[Any]:
    """Hold one slot of the ``gpu`` global concurrency limit while a GPU computes."""
    if device == "cpu" or (device == "auto" and not gpu_available()):
        return nullcontext()
    from prefect.concurrency.sync import concurrency

    return concurrency("gpu", occupy=1)


def _settings(config: PipelineConfig) -> dict[str, object]:
    return {"profile": config.features_profile, "freq": config.freq}


def engine_settings_hash(config: PipelineConfig) -> str:
    """The ``config_hash`` the engine writes for these settings (cache checks compare it)."""
    return config_hash(_settings(config), [ENGINE_VERSION])


@task(name="era-features", tags=["features"], retries=2, retry_delay_seconds=[2, 10],
      retry_jitter_factor=0.5, retry_condition_fn=retry_transient,
      cache_key_fn=batch_cache_key("era-features", ENGINE_VERSION, _settings),
      persist_result=True, task_run_name="features[{batch.label}]")
def era_features(batch: EraBatch, config: PipelineConfig, run_id: str,
                 device: Literal["auto", "gpu", "cpu"] | None = None) -> int:
    """Compute the engine's features for one batch and replace them in the store.

    ``device`` is the planner's choice (default: the config's). A GPU that runs out of
    memory does not fail the batch: it is computed again on the CPU.
    """
    logger = get_run_logger()
    chosen = device or config.device
    with read_batch(batch, config) as (store, values, fill_mask, eras, sensors):
        try:
            with _gpu_slot(chosen):
                features = compute_features(values, fill_mask, eras, entity=batch.entity,
                                            profile=config.features_profile, device=chosen,
                                            sensors=sensors)
        except Exception as exc:
            if chosen == "cpu" or not is_device_oom(exc):
                raise
            logger.warning("%s: GPU out of memory (%s); computing on the CPU", batch.label, exc)
            features = compute_features(values, fill_mask, eras, entity=batch.entity,
                                        profile=config.features_profile, device="cpu",
                                        sensors=sensors)
        features["run_id"] = run_id
        features["config_hash"] = engine_settings_hash(config)
        store.write_table("features", features, entity=batch.entity,
                          replace_where={"level": batch.level, "engine": ["numpy", "cupy"],
                                         "era_id": era_id_window(batch)})
    logger.info("%s: %d feature values (%s engine)", batch.label, len(features),
                features["engine"].iloc[0] if len(features) else "-")
    return len(features)
