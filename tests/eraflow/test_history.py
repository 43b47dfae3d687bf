"""Runs scoped to an entity's history: refills across range edges, re-segmentation, the ledger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.runs.feature_store import write_era_features
from eraflow.runs.grid_update import recount_coverage, write_entity_range
from eraflow.runs.history import era_fingerprints, stale_eras, update_entity_eras
from eraflow.stages.aggregate import aggregate
from eraflow.stages.eras import EraConfig, LevelConfig
from eraflow.stages.gapfill import fill_series
from eraflow.stages.simulate import simulate
from eraflow.store import Key, ParquetStore, Range
from eraflow.store.grid import read_entity_grid

T0 = pd.Timestamp("2024-01-01", tz="UTC")
STEP = pd.Timedelta("5min")
CAT = load_catalogue()
STAGES = {"engine": {"A": "h1", "B": "h1", "C": "h1"}}


def raw(values: list[float], start: pd.Timestamp = T0) -> pd.DataFrame:
    """An aggregated (not yet filled) grid of one continuous sensor (max_fill_gap 30 min)."""
    return pd.DataFrame(
        {
            "time": pd.date_range(start, periods=len(values), freq=STEP),
            "entity": "e",
            "air_temp_c": np.array(values, dtype=float),
        }
    )


def test_a_gap_across_the_range_edge_is_filled_as_one_run_fills_it(tmp_path: Path) -> None:
    series = [20.0] * 10 + [np.nan] * 4 + [24.0] * 10  # a 20 min gap, fillable (<= 30 min)
    # by hand: linear from 20 (row 9) to 24 (row 14): 20.8, 21.6, 22.4, 23.2
    expected = [20.0] * 10 + [20.8, 21.6, 22.4, 23.2] + [24.0] * 10
    store = ParquetStore(tmp_path)
    cut = T0 + 12 * STEP  # the edge falls inside the gap
    first, second = raw(series[:12]), raw(series[12:], start=cut)
    write_entity_range(store, first, entity="e", catalogue=CAT, freq="5min", start=T0, end=cut)
    values, mask = read_entity_grid(store, "e", step=STEP)
    assert values["air_temp_c"].isna().sum() == 2  # trailing gap: left open by the first run
    write = write_entity_range(
        store, second, entity="e", catalogue=CAT, freq="5min", start=cut, end=T0 + 24 * STEP
    )
    values, mask = read_entity_grid(store, "e", step=STEP)
    np.testing.assert_allclose(values["air_temp_c"].to_numpy(), expected)
    assert mask["air_temp_c"].tolist() == [False] * 10 + [True] * 4 + [False] * 10
    assert write.start < cut  # the stored margin was rewritten with the new rows
    # the library's gap-fill over the whole series is the reference
    whole, _ = fill_series(np.array(series), max_rows=6, method="linear")
    np.testing.assert_allclose(values["air_temp_c"].to_numpy(), whole)


def test_a_long_gap_across_the_edge_stays_open(tmp_path: Path) -> None:
    series = [20.0] * 10 + [np.nan] * 8 + [24.0] * 10  # 40 min: longer than 30 min
    store = ParquetStore(tmp_path)
    cut = T0 + 14 * STEP
    write_entity_range(
        store, raw(series[:14]), entity="e", catalogue=CAT, freq="5min", start=T0, end=cut
    )
    write_entity_range(
        store,
        raw(series[14:], start=cut),
        entity="e",
        catalogue=CAT,
        freq="5min",
        start=cut,
        end=T0 + 28 * STEP,
    )
    values, mask = read_entity_grid(store, "e", step=STEP)
    assert values["air_temp_c"].isna().sum() == 8 and not mask["air_temp_c"].any()


def test_daily_coverage_counts_by_hand(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    day = [20.0] * 280 + [np.nan] * 3 + [21.0] * 5  # 288 rows; a 15 min gap, filled
    write_entity_range(
        store,
        raw(day),
        entity="e",
        catalogue=CAT,
        freq="5min",
        start=T0,
        end=T0 + pd.Timedelta("1D"),
    )
    coverage = recount_coverage(store, "e", freq="5min", start=T0, end=T0 + pd.Timedelta("1D"))
    row = coverage.iloc[0]
    assert (row["rows"], row["measured"], row["filled"], row["missing"]) == (288, 285, 3, 0)
    assert store.read("coverage", Key("e"))["measured"].tolist() == [285]


def simulated_store(tmp_path: Path, days: int, seed: int = 7) -> ParquetStore:
    sim = simulate(start=T0, days=days, entities=["sim_a"], seed=seed)
    grid = aggregate(list(sim.sources.values()), CAT).grid
    store = ParquetStore(tmp_path)
    write_entity_range(
        store,
        grid,
        entity="sim_a",
        catalogue=CAT,
        freq="5min",
        start=T0,
        end=T0 + pd.Timedelta(days=days),
    )
    return store


def test_unchanged_eras_keep_their_features_and_changed_ones_lose_them(tmp_path: Path) -> None:
    store = simulated_store(tmp_path, 14)
    first = update_entity_eras(store, "sim_a", config=EraConfig(), step=STEP, stages=STAGES)
    data = first.eras[first.eras["kind"] == "data"]
    assert len(first.todo) == len(data) < len(first.eras) and first.kept == 0  # gaps: none due
    # every era gets a (fake) feature row and a ledger row
    for level, part in first.eras.groupby("level"):
        rows = pd.DataFrame(
            {
                "entity": "sim_a",
                "level": level,
                "era_id": part["era_id"],
                "sensor": "x",
                "feature": "mean",
                "value": 1.0,
                "engine": "numpy",
            }
        )
        write_era_features(
            store,
            rows,
            entity="sim_a",
            level=level,
            stage="engine",
            fingerprints=dict(zip(part["era_id"], part["fingerprint"], strict=True)),
            config_hash="h1",
            run_id="r1",
        )
    again = update_entity_eras(store, "sim_a", config=EraConfig(), step=STEP, stages=STAGES)
    assert again.todo.empty and again.kept == len(first.eras)  # the store says: up to date
    # a new setting makes every era due, without a re-segmentation
    other = update_entity_eras(
        store,
        "sim_a",
        config=EraConfig(),
        step=STEP,
        stages={"engine": {"A": "h2", "B": "h2", "C": "h2"}},
    )
    assert len(other.todo) == len(data)

    # change one stretch of data in the middle: eras there change, the first ones do not
    mid = T0 + pd.Timedelta(days=7)
    hour = Key("sim_a", {"time": Range(mid, mid + pd.Timedelta("1h"))})
    long = store.read("grid", hour)
    store.replace("grid", long.assign(value=long["value"] + 0.5), hour)
    changed = update_entity_eras(store, "sim_a", config=EraConfig(), step=STEP, stages=STAGES)
    assert changed.changed + changed.removed >= 3  # at least the era holding it, per level

    def keys(frame: pd.DataFrame) -> set[tuple[str, int]]:
        return set(zip(frame["level"].astype(str), frame["era_id"].astype(int), strict=True))

    early = keys(first.eras[first.eras["end"] <= mid - pd.Timedelta("2D")])
    assert early and not early & keys(changed.todo)  # eras well before it kept their features
    stored = keys(store.read("features", Key("sim_a")))
    assert stored <= keys(changed.eras)  # no orphan features
    assert not keys(changed.todo) & stored  # the stale ones were deleted


def test_a_write_skips_eras_another_run_changed_meanwhile(tmp_path: Path) -> None:
    store = simulated_store(tmp_path, 4)
    update = update_entity_eras(store, "sim_a", config=EraConfig(), step=STEP, stages=STAGES)
    level_a = update.eras[update.eras["level"] == "A"]
    era = int(level_a["era_id"].iloc[0])
    rows = pd.DataFrame(
        {
            "entity": "sim_a",
            "level": "A",
            "era_id": [era],
            "sensor": "x",
            "feature": "mean",
            "value": 1.0,
            "engine": "numpy",
        }
    )
    written = write_era_features(
        store,
        rows,
        entity="sim_a",
        level="A",
        stage="engine",
        fingerprints={era: "computed-on-older-data"},
        config_hash="h1",
        run_id="r1",
    )
    assert written.skipped == (era,) and written.values == 0
    assert store.read("features", Key("sim_a")).empty


def test_fingerprints_follow_data_and_bounds() -> None:
    index = pd.date_range(T0, periods=12, freq=STEP)
    values = pd.DataFrame({"x": np.arange(12.0)}, index=index)
    mask = pd.DataFrame({"x": np.zeros(12, dtype=bool)}, index=index)
    eras = pd.DataFrame({"start": [index[0], index[6]], "end": [index[6], index[-1] + STEP]})
    a = era_fingerprints(values, mask, eras)
    changed = values.copy()
    changed.iloc[8, 0] = 99.0
    b = era_fingerprints(changed, mask, eras)
    assert a[0] == b[0] and a[1] != b[1]
    filled = mask.copy()
    filled.iloc[2, 0] = True
    assert era_fingerprints(values, filled, eras)[0] != a[0]  # the fill mask counts too


def test_stale_eras_compares_fingerprint_and_settings() -> None:
    eras = pd.DataFrame(
        {
            "level": ["A", "B", "B", "C"],
            "era_id": [1, 1, 2, 1],
            "fingerprint": ["f1", "f2", "f3", "f4"],
            "kind": ["data", "data", "data", "gap"],  # a gap era has no features to compute
        }
    )
    ledger = pd.DataFrame(
        {
            "level": ["A", "B", "B"],
            "era_id": [1, 1, 2],
            "stage": "engine",
            "fingerprint": ["f1", "old", "f3"],
            "config_hash": ["h", "h", "other"],
        }
    )
    stages = {"engine": {"A": "h", "B": "h", "C": "h"}, "tsfresh": {"A": "t"}}
    todo = stale_eras(eras, ledger, stages)
    assert todo.to_numpy().tolist() == [["A", 1, "tsfresh"], ["B", 1, "engine"], ["B", 2, "engine"]]


@pytest.mark.parametrize("horizon", ["3D"])
def test_a_horizon_freezes_older_eras(tmp_path: Path, horizon: str) -> None:
    store = simulated_store(tmp_path, 28)
    first = update_entity_eras(store, "sim_a", config=EraConfig(), step=STEP, stages=STAGES)
    start = T0 + pd.Timedelta(days=27)
    update = update_entity_eras(
        store,
        "sim_a",
        config=EraConfig(),
        step=STEP,
        stages=STAGES,
        start=start,
        horizon=pd.Timedelta(horizon),
    )
    level_a = first.eras[first.eras["level"] == "A"]
    expected = level_a.loc[level_a["start"] <= start - pd.Timedelta(horizon), "start"].max()
    assert update.window_start == expected
    frozen = first.eras[first.eras["start"] < expected]
    pd.testing.assert_frame_equal(
        update.eras[update.eras["start"] < expected].reset_index(drop=True),
        frozen.reset_index(drop=True),
        check_dtype=False,
    )


def test_the_applied_penalties_are_stored_per_entity_and_level(tmp_path: Path) -> None:
    store = simulated_store(tmp_path, 14)
    config = EraConfig(level_c=LevelConfig(penalty_scale=0.05, min_duration="3h"))
    as_set = update_entity_eras(store, "sim_a", config=config, step=STEP, stages=STAGES)
    rows = store.read("era_penalties", Key("sim_a")).set_index("level")
    assert list(rows.index) == ["A", "B", "C"] and set(rows["rule"]) == {"set"}
    assert rows.loc["C", "penalty_scale"] == 0.05 and rows.loc["A", "penalty_scale"] == 50.0
    assert (rows["factor"] == 1.0).all() and rows["elbow_factor"].isna().all()  # no path drawn
    data = as_set.eras[as_set.eras["kind"] == "data"]
    assert rows["eras"].to_dict() == data.groupby("level").size().to_dict()

    chosen = update_entity_eras(
        store, "sim_a", config=config, step=STEP, stages=STAGES, penalty_rule="elbow"
    )
    rows = store.read("era_penalties", Key("sim_a")).set_index("level")
    assert set(rows["rule"]) == {"elbow"} and len(rows) == 3  # replaced, not added
    assert chosen.penalties is not None
    for level in "ABC":
        factor = chosen.penalties.factors[level]
        assert rows.loc[level, "factor"] == factor
        assert rows.loc[level, "penalty_scale"] == config.level(level).penalty_scale * factor
        elbow = rows.loc[level, "elbow_factor"]
        assert factor == (1.0 if np.isnan(elbow) else elbow)
    stored = store.read("eras", Key("sim_a"))
    counts = stored[stored["kind"] == "data"].groupby("level").size().to_dict()
    assert rows["eras"].to_dict() == counts


def test_a_horizon_keeps_the_penalties_of_the_last_choice(tmp_path: Path) -> None:
    store = simulated_store(tmp_path, 14)
    config = EraConfig()
    update_entity_eras(store, "sim_a", config=config, step=STEP, stages=STAGES)
    # as if the last whole-history choice had doubled every level's penalty
    last = store.read("era_penalties", Key("sim_a")).assign(rule="elbow", factor=2.0)
    store.replace("era_penalties", last, Key("sim_a"))
    windowed = update_entity_eras(
        store,
        "sim_a",
        config=config,
        step=STEP,
        stages=STAGES,
        start=T0 + pd.Timedelta(days=12),
        horizon=pd.Timedelta("1D"),
        penalty_rule="elbow",
    )
    assert windowed.window_start is not None  # only the last days were re-segmented ...
    assert windowed.penalties is not None
    assert windowed.penalties.factors == {"C": 2.0, "B": 2.0, "A": 2.0}  # ... with the kept ones
    assert windowed.penalties.config.level_c.penalty_scale == 2 * config.level_c.penalty_scale
    rows = store.read("era_penalties", Key("sim_a")).set_index("level")
    assert (rows["factor"] == 2.0).all() and set(rows["rule"]) == {"elbow"}
    stored = store.read("eras", Key("sim_a"))  # counts: every stored era, not the window's
    counts = stored[stored["kind"] == "data"].groupby("level").size().to_dict()
    assert rows["eras"].to_dict() == counts
