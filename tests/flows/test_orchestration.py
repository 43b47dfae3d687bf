"""Planning, dispatch and caching of era batches, on a real (temporary) Prefect API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from eraflow.config import SimulatorSettings
from flows.pipeline import feature_pipeline


def task_states(name: str) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(like_=name)), limit=200)
    return [r.state.name for r in runs if r.state is not None]


def test_second_identical_run_hits_the_cache_for_every_batch(tmp_path: Path) -> None:
    params = {"store": str(tmp_path / "store"), "selection_levels": ["C"],
              "simulator": SimulatorSettings(days=3, entities=["cache_x"], seed=5)}
    first = feature_pipeline(**params, return_state=True)
    assert first.is_completed(), first.message
    before = pd.read_parquet(tmp_path / "store" / "features")
    batches = len(first.result()["eras"])  # one batch per (entity, level)

    second = feature_pipeline(**params, return_state=True)
    assert second.is_completed(), second.message
    # Every era batch's engine and tsfresh task was served from the cache, none recomputed.
    engine = [s for s in task_states("features[") if s == "Cached"]
    tsfresh = [s for s in task_states("tsfresh[") if s == "Cached"]
    assert len(engine) == batches
    assert len(tsfresh) == 1  # tsfresh runs on level A only: one batch
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "store" / "features"), before)

    # A changed setting changes the key: the batches run again.
    third = feature_pipeline(**params, features_profile="minimal", return_state=True)
    assert third.is_completed()
    assert len([s for s in task_states("features[") if s == "Cached"]) == batches


def test_plan_artifact_and_in_process_dispatch(tmp_path: Path) -> None:
    state = feature_pipeline(store=str(tmp_path / "s"), cpu_workers=3,
                             simulator=SimulatorSettings(days=3, entities=["plan_y"]),
                             return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["plan"] == {"cpu": len(summary["eras"])}  # no GPU here: all on CPU
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    plan = next(a for a in artifact if a.key == "era-plan")
    assert "cpu" in str(plan.data) and "no GPU" in str(plan.data)
