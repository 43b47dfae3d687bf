"""Runs scoped to what they touch, end to end on a real (temporary) Prefect API.

Chunked backfills equal one run; re-running a sub-range leaves no holes; a store holding other
sources changes nothing for a source; a stale cache can never leave another data set's
features; one scope's selection never deletes another's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from eraflow.config import SimulatorSettings
from eraflow.runs.summary import RunSummary
from flows.backfill import backfill
from flows.pipeline import feature_pipeline

pytestmark = pytest.mark.slow

SIM = SimulatorSettings(days=9, seed=7)
FAST: dict[str, Any] = {"tsfresh_levels": [], "simulator": SIM}
KEYS = {
    "grid": ["entity", "sensor", "time"],
    "coverage": ["entity", "sensor", "day"],
    "eras": ["entity", "level", "era_id"],
    "features": ["entity", "level", "era_id", "sensor", "feature"],
    "feature_matrix": ["scope", "entity", "level", "era_id"],
    "selection": ["scope", "level", "feature"],
}
IGNORED = ["run_id", "written_at"]


def table(store: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(store / name)
    frame = frame.drop(columns=[c for c in IGNORED if c in frame.columns])
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame.sort_values(KEYS[name]).reset_index(drop=True)


def assert_same(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        left, right = table(a, name), table(b, name)
        if name == "feature_matrix":
            for x, y in zip(left.pop("values"), right.pop("values"), strict=True):
                np.testing.assert_array_equal(x, y)
        pd.testing.assert_frame_equal(left, right, check_dtype=False, obj=name)


def run(store: Path, **params: Any) -> RunSummary:
    state = feature_pipeline(store=str(store), **(FAST | params), return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def test_a_chunked_backfill_ends_with_the_tables_of_one_run(tmp_path: Path) -> None:
    one, chunked = tmp_path / "one", tmp_path / "chunked"
    run(one, start="2024-01-01", end="2024-01-10")
    state = backfill(
        start="2024-01-01",
        end="2024-01-10",
        chunk="3D",
        parameters={"store": str(chunked)} | FAST,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert state.result().entities == ["sim_a", "sim_b"]
    assert_same(
        one, chunked, ["grid", "coverage", "eras", "features", "selection", "feature_matrix"]
    )
    eras = table(one, "eras")
    longest = (eras["end"] - eras["start"])[eras["level"] == "A"].max()
    assert longest > pd.Timedelta("3D")  # level A was not cut at the chunk edges


def test_rerunning_a_sub_range_keeps_the_eras_outside_it_and_leaves_no_hole(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"
    run(store, start="2024-01-01", end="2024-01-10")
    before_eras, before_features = table(store, "eras"), table(store, "features")
    summary = run(store, start="2024-01-03", end="2024-01-05")
    assert summary.feature_rows == 0  # same data: every era unchanged, nothing recomputed
    after_eras = table(store, "eras")
    pd.testing.assert_frame_equal(after_eras, before_eras)
    pd.testing.assert_frame_equal(table(store, "features"), before_features)
    for _, part in after_eras.groupby(["entity", "level"]):
        part = part.sort_values("start")
        assert (part["start"].iloc[1:].to_numpy() == part["end"].iloc[:-1].to_numpy()).all()
        assert part["start"].min() == pd.Timestamp("2024-01-01", tz="UTC")
        assert part["end"].max() == pd.Timestamp("2024-01-10", tz="UTC")


def test_other_sources_in_the_store_change_nothing_for_a_source(tmp_path: Path) -> None:
    fresh, used = tmp_path / "fresh", tmp_path / "used"
    other = SimulatorSettings(days=9, seed=3, entities=["other_1", "other_2"])
    run(used, simulator=other, start="2024-01-01", end="2024-01-10")
    run(used, start="2024-01-01", end="2024-01-10")
    run(fresh, start="2024-01-01", end="2024-01-10")
    for name in ("grid", "eras", "features", "coverage"):
        mine = table(used, name)
        mine = mine[mine["entity"].isin(["sim_a", "sim_b"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, table(fresh, name), check_dtype=False, obj=name)
    selection = table(used, "selection")
    assert set(selection["scope"]) == {"other_1+other_2", "sim_a+sim_b"}  # neither deleted
    pd.testing.assert_frame_equal(
        selection[selection["scope"] == "sim_a+sim_b"].reset_index(drop=True),
        table(fresh, "selection"),
    )


def test_switching_data_sets_never_leaves_another_data_sets_features(tmp_path: Path) -> None:
    store, reference = tmp_path / "s", tmp_path / "ref"
    for seed in (7, 8, 7):
        run(
            store,
            simulator=SimulatorSettings(days=9, seed=seed),
            start="2024-01-01",
            end="2024-01-10",
        )
    run(reference, start="2024-01-01", end="2024-01-10")
    assert_same(store, reference, ["grid", "eras", "features", "selection", "feature_matrix"])
