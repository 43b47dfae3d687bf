"""Planning and dispatch of era batches, on a real (temporary) Prefect API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from eraflow.config import SimulatorSettings
from flows.pipeline import feature_pipeline

pytestmark = pytest.mark.slow


def test_the_store_decides_which_batches_run(tmp_path: Path) -> None:
    params = {
        "store": str(tmp_path / "store"),
        "selection_levels": ["C"],
        "simulator": SimulatorSettings(days=3, entities=["cache_x"], seed=5),
    }
    first = feature_pipeline(**params, return_state=True)
    assert first.is_completed(), first.message
    before = pd.read_parquet(tmp_path / "store" / "features")
    assert len(first.result().computed) == 3  # the engine at A, B and C

    second = feature_pipeline(**params, return_state=True)
    assert second.is_completed(), second.message
    # The feature ledger holds every era with its fingerprint and settings: nothing runs.
    assert second.result().computed == []
    assert second.result().feature_rows == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "store" / "features"), before)

    # A changed setting changes the ledger's hash: the engine batches run again, and replace
    # the old profile's rows.
    third = feature_pipeline(**params, features_profile="minimal", return_state=True)
    assert third.is_completed()
    assert len(third.result().computed) == 3
    after = pd.read_parquet(tmp_path / "store" / "features")
    engine = after[after["engine"] == "numpy"]
    assert (
        engine.groupby(["level", "era_id"]).size().max()
        < before.groupby(["level", "era_id"]).size().max()
    )
    # the store wiped: everything runs again
    import shutil

    shutil.rmtree(tmp_path / "store")
    fourth = feature_pipeline(**params, return_state=True)
    assert fourth.is_completed()
    assert len(fourth.result().computed) == 3


def test_plan_artifact_and_in_process_dispatch(tmp_path: Path) -> None:
    state = feature_pipeline(
        store=str(tmp_path / "s"),
        cpu_workers=3,
        simulator=SimulatorSettings(days=3, entities=["plan_y"]),
        return_state=True,
    )
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.plan == {"cpu": sum(c.batches for c in summary.computed)}  # no GPU: all CPU
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    plan = next(a for a in artifact if a.key == "era-plan")
    assert "cpu" in str(plan.data) and "no GPU" in str(plan.data)


def test_dask_runner_gives_the_same_features(tmp_path: Path) -> None:
    params = {
        "selection_levels": ["A"],
        "simulator": SimulatorSettings(days=2, entities=["dask_z"], seed=9),
    }
    threads = feature_pipeline(store=str(tmp_path / "threads"), **params, return_state=True)
    dask = feature_pipeline(
        store=str(tmp_path / "dask"), task_runner="dask", cpu_workers=2, **params, return_state=True
    )
    assert threads.is_completed() and dask.is_completed(), dask.message
    keys = ["entity", "level", "era_id", "sensor", "feature"]
    a = pd.read_parquet(tmp_path / "threads" / "features").sort_values(keys)
    b = pd.read_parquet(tmp_path / "dask" / "features").sort_values(keys)
    pd.testing.assert_series_equal(
        a["value"].reset_index(drop=True), b["value"].reset_index(drop=True)
    )


def test_daily_run_processes_the_previous_utc_day(tmp_path: Path) -> None:
    today = pd.Timestamp.now(tz="UTC").floor("D")
    start = (today - pd.Timedelta("3D")).tz_convert(None).to_pydatetime()
    state = feature_pipeline(
        store=str(tmp_path),
        previous_day=True,
        selection_levels=[],
        tsfresh_levels=[],
        simulator=SimulatorSettings(days=4, entities=["day"], start=start),
        return_state=True,
    )
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.start == today - pd.Timedelta("1D")
    assert summary.end == today
    assert summary.grid_rows == 288


def test_switching_settings_back_never_serves_stale_features(tmp_path: Path) -> None:
    params = {
        "store": str(tmp_path / "s"),
        "selection_levels": [],
        "tsfresh_levels": [],
        "simulator": SimulatorSettings(days=2, entities=["flip"], seed=4),
    }
    keys = ["entity", "level", "era_id", "sensor", "feature"]
    assert feature_pipeline(**params, return_state=True).is_completed()
    efficient = pd.read_parquet(tmp_path / "s" / "features").sort_values(keys)
    assert feature_pipeline(**params, features_profile="minimal", return_state=True).is_completed()
    minimal = pd.read_parquet(tmp_path / "s" / "features")
    assert len(minimal) < len(efficient)
    # Back to efficient: the old cache entry exists, but the store holds minimal rows, so the
    # batches must run again and the store must hold exactly the efficient features.
    assert feature_pipeline(**params, return_state=True).is_completed()
    again = pd.read_parquet(tmp_path / "s" / "features").sort_values(keys)
    assert len(again) == len(efficient)
    pd.testing.assert_series_equal(
        again["value"].reset_index(drop=True), efficient["value"].reset_index(drop=True)
    )
