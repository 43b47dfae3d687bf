"""A GPU that runs out of memory does not fail the batch: it is recomputed on the CPU."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from eraflow.config import SimulatorSettings
from flows.pipeline import feature_pipeline


@pytest.fixture(autouse=True)
def _prefect(prefect_api: None) -> None:
    """A real (temporary) Prefect API."""


def test_gpu_out_of_memory_recomputes_the_batch_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.features as stage
    from eraflow.config import PipelineConfig
    from eraflow.stages.batches import EraBatch

    class OutOfMemoryError(Exception):
        pass

    calls: list[str] = []
    real = stage.compute_profiled_features

    def on_a_full_gpu(*args: object, device: str, **kwargs: object) -> pd.DataFrame:
        calls.append(device)
        if device == "gpu":
            raise OutOfMemoryError("Out of memory allocating 1,073,741,824 bytes")
        return real(*args, device=device, **kwargs)  # type: ignore[arg-type]

    store = tmp_path / "s"
    first = feature_pipeline(
        store=str(store),
        selection_levels=["A"],
        simulator=SimulatorSettings(days=2, entities=["oom"]),
        return_state=True,
    )
    assert first.is_completed()
    eras = pd.read_parquet(store / "eras").query("level == 'A'")
    batch = EraBatch(
        entity="oom",
        level="A",
        start=eras["start"].min(),
        end=eras["end"].max(),
        eras=len(eras),
        rows=int(eras["rows"].sum()),
        first_era_id=int(eras["era_id"].min()),
        last_era_id=int(eras["era_id"].max()),
    )
    monkeypatch.setattr(stage, "compute_profiled_features", on_a_full_gpu)
    monkeypatch.setattr(stage, "_gpu_slot", lambda device: contextlib.nullcontext())
    config = PipelineConfig.build(store=store, selection_levels=["A"])
    with disable_run_logger():
        parts = (config.features, config.grid, config.store, config.source.catalogue)
        rows = stage.era_features.fn(batch, *parts, "run-oom", "gpu")
    assert calls == ["gpu", "cpu"]
    stored = pd.read_parquet(store / "features").query("level == 'A'")
    # the batch's one write holds the engine's rows (on the CPU) and the greenhouse family's
    assert set(stored["engine"]) == {"numpy", "greenhouse"}
    assert rows == len(stored) > 0
