"""Gap-fill: limits, methods by kind, masks, coverage, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.common.errors import DataError
from eraflow.stages.gapfill import fill_series, fillable, gap_fill

T0 = pd.Timestamp("2024-01-01", tz="UTC")
NAN = np.nan


def grid(**columns: list[float]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({"time": pd.date_range(T0, periods=n, freq="5min"), "entity": "e"})
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype=float)
    return frame


def test_gap_at_the_limit_is_filled_linearly() -> None:
    # air_temp_c: max_fill_gap 30 min = 6 rows at 5 min.
    values = [10.0, *[NAN] * 6, 17.0]
    result = gap_fill(grid(air_temp_c=values), load_catalogue())
    np.testing.assert_allclose(result.grid["air_temp_c"], np.arange(10.0, 18.0))
    assert result.grid["filled__air_temp_c"].tolist() == [False, *[True] * 6, False]


def test_gap_just_over_the_limit_stays_missing_in_full() -> None:
    values = [10.0, *[NAN] * 7, 18.0]
    result = gap_fill(grid(air_temp_c=values), load_catalogue())
    assert result.grid["air_temp_c"].isna().sum() == 7
    assert not result.grid["filled__air_temp_c"].any()
    cov = result.coverage.iloc[0]
    assert (cov["filled"], cov["missing"], cov["gaps"], cov["gaps_left"]) == (0, 7, 1, 1)
    assert cov["longest_gap"] == pd.Timedelta("35min")


def test_limit_scales_with_the_grid_step() -> None:
    frame = grid(air_temp_c=[1.0, NAN, NAN, NAN, 5.0])
    frame["time"] = pd.date_range(T0, periods=5, freq="10min")
    filled = gap_fill(frame, load_catalogue(), freq="10min")  # 3 rows = 30 min: filled
    np.testing.assert_allclose(filled.grid["air_temp_c"], [1, 2, 3, 4, 5])
    frame = grid(air_temp_c=[1.0, NAN, NAN, NAN, NAN, 6.0])
    frame["time"] = pd.date_range(T0, periods=6, freq="10min")
    assert gap_fill(frame, load_catalogue(), freq="10min").grid["air_temp_c"].isna().sum() == 4


def test_binary_sensor_is_carried_forward() -> None:
    # lamp_status: binary, 15 min = 3 rows, forward fill (never a 0.5 lamp).
    result = gap_fill(
        grid(lamp_status=[1.0, NAN, NAN, 0.0, NAN, NAN, NAN, NAN, 1.0]), load_catalogue()
    )
    got = result.grid["lamp_status"].tolist()
    assert got[:4] == [1.0, 1.0, 1.0, 0.0]
    assert all(np.isnan(got[4:8]))
    assert result.grid["filled__lamp_status"].tolist() == [False, True, True] + [False] * 6


def test_edges_are_never_extrapolated() -> None:
    result = gap_fill(grid(air_temp_c=[NAN, 1.0, 2.0, NAN]), load_catalogue())
    assert result.grid["air_temp_c"].isna().tolist() == [True, False, False, True]


def test_all_nan_sensor_is_reported_not_an_error() -> None:
    result = gap_fill(grid(air_temp_c=[1.0, 2.0, 3.0], co2_ppm=[NAN, NAN, NAN]), load_catalogue())
    cov = result.coverage.set_index("sensor")
    assert bool(cov.loc["co2_ppm", "all_missing"])
    assert cov.loc["co2_ppm", "missing_share"] == 1.0
    assert result.grid["co2_ppm"].isna().all()
    assert not bool(cov.loc["air_temp_c", "all_missing"])


def test_mask_is_exactly_the_written_cells() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(20, 1, 500)
    values[rng.random(500) < 0.3] = NAN
    before = values.copy()
    result = gap_fill(grid(air_temp_c=values), load_catalogue())
    after = result.grid["air_temp_c"].to_numpy()
    mask = result.grid["filled__air_temp_c"].to_numpy()
    np.testing.assert_array_equal(mask, np.isnan(before) & ~np.isnan(after))
    np.testing.assert_array_equal(after[~np.isnan(before)], before[~np.isnan(before)])
    cov = result.coverage.iloc[0]
    assert cov["measured"] + cov["filled"] + cov["missing"] == 500
    assert cov["filled"] == mask.sum()


def test_entities_are_filled_separately() -> None:
    a = grid(air_temp_c=[1.0, NAN, 3.0])
    b = grid(air_temp_c=[NAN, 5.0, NAN]).assign(entity="f")
    result = gap_fill(pd.concat([a, b], ignore_index=True), load_catalogue())
    out = result.grid.set_index("entity")["air_temp_c"]
    assert out.loc["e"].tolist() == [1.0, 2.0, 3.0]
    assert out.loc["f"].isna().tolist() == [True, False, True]


def test_fillable_runs() -> None:
    missing = np.array([True, False, True, True, False, True, True, True, False, True])
    assert fillable(missing, 2).tolist() == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    out, mask = fill_series(np.array([1.0, NAN, 3.0]), max_rows=0, method="linear")
    assert np.isnan(out[1]) and not mask.any()


def test_bad_grids() -> None:
    cat = load_catalogue()
    with pytest.raises(DataError, match="not regular"):
        gap_fill(grid(air_temp_c=[1.0, 2.0]).assign(time=[T0, T0 + pd.Timedelta("7min")]), cat)
    g = grid(air_temp_c=[1.0, 2.0])
    with pytest.raises(DataError, match="duplicate"):
        gap_fill(pd.concat([g, g]), cat)
    with pytest.raises(DataError, match="empty range"):
        gap_fill(grid(air_temp_c=[]), cat)
