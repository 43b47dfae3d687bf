"""The calculators added for tsfresh's whole catalogue, on long segments (>= 20,000 values).

Long eras are where batched code meets its limits (cumulative sums over many values, FFT sizes,
O(n²) entropies, 46-lag ADF searches); each feature is checked against tsfresh's own function on
a real 87-day air temperature era and a random walk with gaps. tsfresh's approximate_entropy
builds an n x n x m array (6 GB at this length), so its reference here is the same formula
with the neighbour counts from SciPy's k-d tree; permutation_entropy on windows with ties is
checked against stable ranks, as in test_features_tsfresh.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eraflow.stages.features import compute_segment_matrix, feature_registry
from tests.eraflow.test_features_tsfresh import (
    REAL_CSV,
    polyfit_condition,
    read_knudjepsen,
    stable_permutation_entropy,
    tsfresh_value,
    windows_with_ties,
)

pytest.importorskip("tsfresh")

NEW_CALCULATORS = (
    "benford_correlation",
    "partial_autocorrelation",
    "number_cwt_peaks",
    "cwt_coefficients",
    "spkt_welch_density",
    "ar_coefficient",
    "friedrich_coefficients",
    "max_langevin_fixed_point",
    "augmented_dickey_fuller",
    "linear_trend_timewise",
    "lempel_ziv_complexity",
    "fourier_entropy",
    "permutation_entropy",
    "query_similarity_count",
    "approximate_entropy",
    "sample_entropy",
)


def blocked_approximate_entropy(x: np.ndarray, m: int, r: float, block: int = 256) -> float:
    """tsfresh's approximate_entropy formula, its n x n neighbour counts from a k-d tree.

    tsfresh counts, for each window of length ``k``, the windows within Chebyshev distance
    ``r * std(x)`` (itself included). SciPy's k-d tree counts the same pairs (``p=inf``,
    exact search) without the n x n array; ``block`` bounds the query's memory.
    """
    from scipy.spatial import cKDTree

    n = x.size
    tol = r * np.std(x)
    if n <= m + 1:
        return 0.0

    def phi(k: int) -> float:
        windows = np.lib.stride_tricks.sliding_window_view(x, k)
        tree = cKDTree(windows)
        count = np.concatenate(
            [
                tree.query_ball_point(
                    windows[a : a + block * 64], r=tol, p=np.inf, return_length=True
                )
                for a in range(0, len(windows), block * 64)
            ]
        ).astype(np.float64)
        c = count / (n - k + 1)
        return float(np.sum(np.log(c)) / (n - k + 1.0))

    return abs(phi(m) - phi(m + 1))


def long_segments() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    frame = read_knudjepsen(REAL_CSV, days=90)
    air = frame.iloc[:, 0].to_numpy()[:25_000]  # 87 days at 5 minutes, gaps kept
    rng = np.random.default_rng(11)
    walk = 18.0 + 0.05 * rng.normal(size=20_500).cumsum()
    walk[rng.random(walk.size) < 0.02] = np.nan
    parts = [air, walk]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    return np.concatenate(parts), offsets, parts


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the O(n^2) references on 20,000-value eras: ~10 min beside others
@pytest.mark.realdata
@pytest.mark.skipif(not REAL_CSV.exists(), reason=f"real data not present at {REAL_CSV}")
def test_new_calculators_equal_tsfresh_on_long_segments():
    grid, offsets, parts = long_segments()
    registry = feature_registry()
    specs = [s for name in NEW_CALCULATORS for s in registry[name].specs()]
    matrix, specs, _ = compute_segment_matrix(grid, offsets, specs, device="cpu", step="5min")
    failures = []
    for i, part in enumerate(parts):
        valid = ~np.isnan(part)
        x, times = part[valid], np.flatnonzero(valid)
        assert x.size >= 20_000
        for j, spec in enumerate(specs):
            if spec.calculator == "approximate_entropy":
                want = blocked_approximate_entropy(x, spec.params["m"], spec.params["r"])
            elif spec.calculator == "permutation_entropy" and windows_with_ties(
                x, spec.params["dimension"]
            ):  # quantised readings tie: ranked by position (see test_features_tsfresh)
                want = stable_permutation_entropy(x, spec.params["dimension"])
            else:
                want = tsfresh_value(spec, x, times)
            got = matrix[i, j]
            rtol = 1e-6 if spec.params.get("attr") == "pvalue" else 1e-9
            if spec.calculator in ("friedrich_coefficients", "max_langevin_fixed_point"):
                rtol = max(rtol, 1e-15 * polyfit_condition(x, spec.params["m"], spec.params["r"]))
            atol = 1e-12 * max(1.0, float(np.abs(x).max()))
            if (np.isnan(want) and np.isnan(got)) or np.isclose(got, want, rtol=rtol, atol=atol):
                continue
            failures.append((spec.name, i, got, want))
    assert not failures, f"{len(failures)} mismatches, first: {failures[:8]}"
    # not all NaN: the long real era is an ordinary series for every new calculator
    real = dict(zip((s.name for s in specs), matrix[0], strict=True))
    for name in NEW_CALCULATORS:
        if name != "query_similarity_count":  # NaN by tsfresh's default (no query)
            values = [v for k, v in real.items() if k.split("__")[0] == name]
            assert np.isfinite(values).any(), name


def test_blocked_reference_equals_tsfresh_formula_on_short_series():
    """The blocked reference is tsfresh's formula: equal where tsfresh's own array fits."""
    from tsfresh.feature_extraction import feature_calculators as fc

    rng = np.random.default_rng(5)
    for n, m, r in itertools.product((5, 60, 700), (2, 3), (0.1, 0.5, 0.9)):
        x = rng.normal(size=n).cumsum()
        assert blocked_approximate_entropy(x, m, r, block=17) == pytest.approx(
            fc.approximate_entropy(x, m, r), rel=1e-12, abs=1e-15
        )
