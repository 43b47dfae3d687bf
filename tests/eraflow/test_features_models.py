"""The model-fitting calculators where tsfresh's own value hangs on rounding: pinned cases.

augmented_dickey_fuller chooses its lag by the smallest AIC of nested OLS fits. Two kinds of
series make that choice delicate, and both occur in greenhouse data (on/off states, readings
that stop changing):

- a regressor constant over the sample (a level that does not move) is collinear with the
  constant: the fit must be the minimum-norm one, equal to statsmodels' to the digit;
- lag columns that are all zero fit exactly as well as the model without them: the AICs tie
  in exact arithmetic, and statsmodels' pick among them follows the rounding of each
  pseudo-inverse. The engine takes the smallest lag, adfuller's own rule for a tie, and is
  checked against statsmodels' AICs with ties resolved that way.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from eraflow.stages.features import compute_segment_matrix, feature_registry

pytest.importorskip("tsfresh")
from statsmodels.regression.linear_model import OLS
from statsmodels.tsa.stattools import adfuller
from tsfresh.feature_extraction import feature_calculators as fc

ADF = feature_registry()["augmented_dickey_fuller"].specs()


def engine_adf(x: np.ndarray) -> dict[str, float]:
    matrix, specs, _ = compute_segment_matrix(x, np.array([0, len(x)]), ADF, device="cpu")
    return {s.params["attr"]: float(matrix[0, j]) for j, s in enumerate(specs)}


def tsfresh_adf(x: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dict(fc.augmented_dickey_fuller(x, [dict(s.params) for s in ADF]))
    return {s.params["attr"]: float(out[s.name.split("__", 1)[1]]) for s in ADF}


def statsmodels_aics(x: np.ndarray) -> list[float]:
    """AIC of every nested lag model of adfuller's search, fitted by statsmodels' OLS."""
    n = len(x)
    maxlag = min(n // 2 - 2, math.ceil(12.0 * (n / 100.0) ** 0.25))
    diff = np.diff(x)
    rows = len(diff) - maxlag
    design = np.column_stack(
        [np.ones(rows), x[maxlag : maxlag + rows]]
        + [diff[maxlag - lag : maxlag - lag + rows] for lag in range(1, maxlag + 1)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [OLS(diff[maxlag:], design[:, :used]).fit().aic for used in range(2, maxlag + 3)]


def test_level_constant_over_the_sample_equals_statsmodels():
    x = np.ones(132)
    x[:12] = 0.0  # the step lies before the lag search's sample starts
    x[131] = 0.0
    got, want = engine_adf(x), tsfresh_adf(x)
    assert got["usedlag"] == want["usedlag"] == 0
    assert got["teststat"] == pytest.approx(want["teststat"], rel=1e-9)
    assert got["pvalue"] == pytest.approx(want["pvalue"], rel=1e-6)


@pytest.mark.parametrize(("seed", "changes"), [(s, k) for s in range(4) for k in (4, 6, 9)])
def test_all_zero_lag_columns_tie_and_the_smallest_lag_wins(seed, changes):
    rng = np.random.default_rng(seed)
    x = np.full(132, 20.0)
    x[-changes:] += np.round(rng.normal(size=changes), 1)  # high lag columns stay all zero
    aics = np.array(statsmodels_aics(x))
    tied = np.flatnonzero(np.isclose(aics, aics.min(), rtol=1e-9, atol=1e-9))
    assert len(tied) > 1  # the case this test is about
    got = engine_adf(x)
    assert got["usedlag"] == tied[0]  # adfuller's rule: the smallest lag among equals
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stat, pvalue, used, *_ = adfuller(x, maxlag=int(tied[0]), autolag=None)
    assert used == tied[0]
    assert got["teststat"] == pytest.approx(stat, rel=1e-9)
    assert got["pvalue"] == pytest.approx(pvalue, rel=1e-6)


def test_an_exact_fit_takes_the_smallest_lag():
    """A ramp's differences are constant: every lag model fits to rounding, none is better.

    statsmodels' AICs then rank rounding noise (its pick varies with the summation order);
    residuals below rounding count as zero here, so the smallest lag wins.
    """
    x = 3.0 + 0.25 * np.arange(120)
    assert engine_adf(x)["usedlag"] == 0  # (its statistic is a ratio of rounding errors)


@pytest.mark.parametrize(("seed", "n"), [(0, 600), (1, 2500), (2, 6000)])
def test_gram_route_equals_statsmodels_on_sensor_like_series(seed, n):
    """Long, well-conditioned series take the Gram route; values as statsmodels' adfuller."""
    from eraflow.stages.features.calculators_models import _adf_design, _centred_upper

    rng = np.random.default_rng(seed)
    x = 20.0 + np.cumsum(rng.normal(0.0, 0.1, n)) + np.sin(np.arange(n) / 40.0)
    design, y = _adf_design(x, np.diff(x), 10)
    assert _centred_upper(design, y) is not None  # the route under test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stat, pvalue, used, *_ = adfuller(x, autolag="AIC")
    got = engine_adf(x)
    assert got["usedlag"] == used
    assert got["teststat"] == pytest.approx(stat, rel=1e-9)
    assert got["pvalue"] == pytest.approx(pvalue, rel=1e-9)


def test_adf_pvalue_equals_statsmodels_mackinnonp() -> None:
    # statsmodels' own function is the reference: both tails, the switch between its two
    # polynomials, the clipped ends and a non-finite statistic
    from statsmodels.tsa.adfvalues import mackinnonp

    from eraflow.stages.features.calculators_models import _adf_pvalue

    stats = np.concatenate([np.linspace(-20.0, 3.0, 4001), [-18.83, -1.61, -1.6, 2.74, 2.75]])
    for stat in stats:
        assert _adf_pvalue(float(stat)) == mackinnonp(float(stat), regression="c", N=1), stat
    assert math.isnan(_adf_pvalue(math.nan)) and math.isnan(_adf_pvalue(-math.inf))
