"""Prefect task for stage 4: the array-module feature engine over one era batch."""

from __future__ import annotations

from contextlib import nullcontext

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from eraflow.batches import EraBatch, config_hash
from eraflow.config import PipelineConfig
from eraflow.features import compute_features, gpu_available
from tasks._common import retry_transient
from tasks.slices import read_batch

ENGINE_VERSION = "features-1"


def _gpu_slot(device: str):  # type: ignore[no-untyped-def]
    """Hold one slot of the ``gpu`` global concurrency limit while a GPU computes."""
    if device == "cpu" or (device == "auto" and not gpu_available()):
        return nullcontext()
    from prefect.concurrency.sync import concurrency

    return concurrency("gpu", occupy=1)


@task(name="era-features", tags=["features"], retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE,
      task_run_name="features[{batch.label}]")
def era_features(batch: EraBatch, config: PipelineConfig, run_id: str) -> int:
    """Compute the engine's features for one batch and replace them in the store."""
    with read_batch(batch, config) as (store, values, fill_mask, eras, sensors):
        with _gpu_slot(config.device):
            features = compute_features(values, fill_mask, eras, entity=batch.entity,
                                        profile=config.features_profile,
                                        device=config.device, sensors=sensors)
        features["run_id"] = run_id
        features["config_hash"] = config_hash(
            {"profile": config.features_profile, "freq": config.freq}, [ENGINE_VERSION])
        store.write_table("features", features, entity=batch.entity,
                          replace_where={"level": batch.level, "engine": ["numpy", "cupy"],
                                         "era_id": (batch.first_era_id, batch.last_era_id + 1)})
    get_run_logger().info("%s: %d feature values (%s engine)", batch.label, len(features),
                          features["engine"].iloc[0] if len(features) else "-")
    return len(features)

