"""``diff_std`` and ``mean_change`` against NumPy on the dropna-ed series, and by hand.

Both are taken over the first differences of a segment's valid (non-NaN) values: NaN for fewer
than two values. The expected side is ``np.diff`` of ``x[~np.isnan(x)]``, never the engine.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from eraflow.stages.features import compute_features, compute_segment_matrix
from tests.eraflow.test_features_engine import make_eras


def _segments() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    walk = 20 + rng.normal(size=60).cumsum()
    holes = walk.copy()
    holes[[0, 7, 8, 9, 30, 59]] = np.nan  # NaN at both ends and inside
    return [
        np.array([5.0]),  # one value: no difference
        np.array([1.0, 4.0]),  # one difference: spread 0
        np.array([1.0, 4.0, 2.0]),  # two differences
        np.array([2.0, np.nan, 7.0, 3.0]),  # a hole: the difference spans it
        np.array([np.nan, 3.0, np.nan]),  # one valid value
        np.array([np.nan, np.nan]),  # none valid
        np.array([]),  # an empty segment
        walk,
        holes,
        np.array([1e9, 1e9 + 1e-3, 1e9 - 2e-3, 1e9 + 4e-3]),  # a large offset
    ]


def _expected(seg: np.ndarray) -> tuple[float, float]:
    """``(diff_std, mean_change)``: population std (ddof 0) and mean of the differences."""
    v = seg[~np.isnan(seg)]
    if len(v) < 2:
        return math.nan, math.nan
    d = np.diff(v)
    return float(np.std(d, ddof=0)), float(np.mean(d))


def test_diff_std_and_mean_change_equal_numpy_on_the_valid_values() -> None:
    segs = _segments()
    grid = np.concatenate(segs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segs])])
    m, specs, _ = compute_segment_matrix(grid, offsets, ["diff_std", "mean_change"], device="cpu")
    assert [s.name for s in specs] == ["diff_std", "mean_change"]
    expected = np.array([_expected(s) for s in segs])
    assert np.isnan(m).tolist() == np.isnan(expected).tolist()
    np.testing.assert_allclose(m, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    # the short cases, by hand
    assert m[1].tolist() == [0.0, 3.0]  # [1, 4]: one difference, 3
    assert m[2, 0] == pytest.approx(2.5)  # [3, -2]: mean 0.5, population std 2.5 (ddof 1: 3.54)
    assert m[2, 1] == pytest.approx(0.5)
    assert m[3, 0] == pytest.approx(4.5)  # [5, -4] over the hole: std 4.5 (ddof 1: 6.36)
    assert m[3, 1] == pytest.approx(0.5)
    assert np.isnan(m[[0, 4, 5, 6]]).all()


def test_diff_std_is_population_std_not_sample_std() -> None:
    """On a long series ddof 0 and ddof 1 differ by a factor sqrt(n / (n - 1)) only: both ends
    of the check, so a switch of ddof is seen however small the relative change."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=401)
    m, _, _ = compute_segment_matrix(x, np.array([0, len(x)]), ["diff_std"], device="cpu")
    d = np.diff(x)
    np.testing.assert_allclose(m[0, 0], np.std(d, ddof=0), rtol=1e-12)
    assert abs(m[0, 0] - np.std(d, ddof=1)) > 1e-6


def test_diff_std_and_mean_change_through_compute_features_by_hand() -> None:
    idx = pd.date_range("2020-01-01", periods=9, freq="5min", tz="UTC", name="time")
    values = pd.DataFrame(
        {"a": [1.0, 4.0, np.nan, 2.0, 8.0, 6.0, np.nan, np.nan, 6.0], "b": np.nan}, index=idx
    )
    eras = make_eras(idx, [5])  # era 0: rows 0-4, era 1: rows 5-8
    out = compute_features(
        values, None, eras, entity="gh1", profile=["diff_std", "mean_change"], device="cpu"
    )
    v = out.set_index(["era_id", "sensor", "feature"])["value"]
    # era 0: valid 1, 4, 2, 8 -> differences 3, -2, 6; mean 7/3;
    # squared deviations 4/9 + 169/9 + 121/9 = 294/9; / 3 -> 98/9 -> std 7 sqrt(2) / 3
    assert v[(0, "a", "mean_change")] == pytest.approx(7 / 3, rel=1e-12)
    assert v[(0, "a", "diff_std")] == pytest.approx(7 * math.sqrt(2) / 3, rel=1e-12)
    # era 1: valid 6, 6 -> one difference, 0
    assert v[(1, "a", "mean_change")] == 0.0
    assert v[(1, "a", "diff_std")] == 0.0
    # no valid value: NaN
    assert np.isnan(v[(0, "b", "diff_std")]) and np.isnan(v[(0, "b", "mean_change")])
