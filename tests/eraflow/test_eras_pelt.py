"""PELT and costs against ruptures (the independent reference) and known changes."""

from __future__ import annotations

import numpy as np
import pytest
import ruptures as rpt

from eraflow.common.errors import ConfigError
from eraflow.stages.eras import (
    BadSegmentationParameters,
    SignalDataError,
    cost_factory,
    partition_candidates,
    pelt,
)

pytestmark = pytest.mark.filterwarnings("ignore:New behaviour in v1.1.5:UserWarning")


def _mean_var_series(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.normal(0.0, 1.0, 150), rng.normal(0.0, 3.0, 120), rng.normal(2.0, 0.5, 130)]
    )


def _signal(kind: str, seed: int) -> np.ndarray:
    if kind == "pw1":
        return rpt.pw_constant(400, 1, 4, noise_std=1.0, seed=seed)[0][:, 0]
    if kind == "pw3":
        return rpt.pw_constant(400, 3, 4, noise_std=1.0, seed=seed)[0]
    if kind == "meanvar":
        return _mean_var_series(seed)
    # multivariate mean + variance change, with a quantised (flat) stretch
    x = np.column_stack([_mean_var_series(seed), _mean_var_series(seed + 1)[::-1]])
    x[300:330, 1] = 1.0
    return x


CASES = [
    ("pw1", "l2", 10.0, 1, 0),
    ("pw1", "normal", 15.0, 2, 1),
    ("pw3", "l2", 30.0, 5, 2),
    ("pw3", "normal", 40.0, 10, 3),
    ("meanvar", "normal", 8.0, 2, 4),
    ("meanvar", "normal", 25.0, 20, 5),
    ("meanvar", "l2", 12.0, 3, 6),
    ("mv2", "normal", 20.0, 5, 7),
    ("mv2", "l2", 15.0, 30, 8),
]


@pytest.mark.parametrize(
    ("kind", "pen", "seed"), [("pw1", 10.0, 0), ("pw3", 30.0, 2), ("mv2", 15.0, 8)]
)
def test_l2_pelt_equals_skchange(kind: str, pen: float, seed: int) -> None:
    """A second, independent PELT (skchange's numba one), exact (min size 1): same changes."""
    import pandas as pd
    from skchange.detectors import PELT
    from skchange.interval_scorers import L2Cost

    x = _signal(kind, seed)
    frame = pd.DataFrame(x.reshape(len(x), -1))
    detector = PELT(cost=L2Cost(), penalty=pen, min_segment_length=1)
    expected = [int(v) for v in np.asarray(detector.fit(frame).predict(frame)).ravel()]
    got = pelt(x, model="l2", pen=pen, min_size=1)
    assert got[:-1] == expected and len(expected) > 0


@pytest.mark.parametrize(("kind", "model", "pen", "min_size", "seed"), CASES)
def test_pelt_equals_ruptures(kind: str, model: str, pen: float, min_size: int, seed: int) -> None:
    x = _signal(kind, seed)
    expected = rpt.Pelt(model=model, min_size=min_size, jump=1).fit(x).predict(pen=pen)
    got = pelt(x, model=model, pen=pen, min_size=min_size)
    assert got == expected
    assert len(got) > 1  # the cases are chosen to have changes, not the trivial answer


@pytest.mark.parametrize("model", ["l2", "normal"])
@pytest.mark.parametrize("n_dims", [1, 3])
def test_cost_equals_ruptures_cost(model: str, n_dims: int) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(5.0, 2.0, size=(300, n_dims)) + np.linspace(0, 50, 300)[:, None]
    ours = cost_factory(model).fit(x)
    ref = rpt.costs.cost_factory(model).fit(x)
    for start, end in [
        (0, 300),
        (0, 2),
        (17, 19),
        (40, 260),
        (250, 300),
        (5, 6 if model == "l2" else 7),
    ]:
        assert ours.error(start, end) == pytest.approx(ref.error(start, end), rel=1e-9, abs=1e-9)


def test_cost_registry_knows_models_and_rejects_unknown() -> None:
    assert cost_factory("l2").model == "l2"
    assert cost_factory("normal").min_size == 2
    with pytest.raises(ConfigError, match="unknown cost model 'rbf'"):
        cost_factory("rbf")


@pytest.mark.parametrize("model", ["l2", "normal"])
def test_pelt_recovers_known_changes(model: str) -> None:
    rng = np.random.default_rng(3)
    truth = [500, 1100, 1600]
    levels = [0.0, 2.5, -1.0, 1.5]
    bounds = [0, *truth, 2000]
    x = np.concatenate(
        [
            rng.normal(mu, 1.0, e - s)
            for mu, s, e in zip(levels, bounds[:-1], bounds[1:], strict=True)
        ]
    )
    n_params = 1 if model == "l2" else 2
    got = pelt(x, model=model, pen=3.0 * n_params * np.log(len(x)), min_size=20)
    assert len(got) == len(truth) + 1
    assert got[-1] == 2000
    for found, true in zip(got[:-1], truth, strict=True):
        assert abs(found - true) <= 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pelt_no_spurious_change_on_stationary_noise(seed: int) -> None:
    x = np.random.default_rng(seed).normal(20.0, 0.7, size=(3000, 2))
    assert pelt(x, model="normal", pen=2.0 * 5 * np.log(3000), min_size=10) == [3000]
    assert pelt(x, model="l2", pen=2.0 * 2 * np.log(3000) * 0.7**2, min_size=10) == [3000]


def test_pelt_constant_signal_is_one_segment() -> None:
    assert pelt(np.full(500, 3.2), model="normal", pen=10.0, min_size=5) == [500]
    assert pelt(np.full(500, 3.2), model="l2", pen=1.0, min_size=1) == [500]


def test_pelt_bad_input() -> None:
    with pytest.raises(BadSegmentationParameters, match="min_size=10"):
        pelt(np.arange(5.0), model="l2", pen=1.0, min_size=10)
    with pytest.raises(SignalDataError, match="NaN"):
        pelt(np.array([1.0, np.nan, 2.0, 3.0]), model="l2", pen=1.0)
    with pytest.raises(BadSegmentationParameters, match="penalty"):
        pelt(np.arange(50.0), model="l2", pen=-1.0)


def test_partition_over_all_rows_equals_exact_pelt() -> None:
    # l2 with min_size=1: PELT's pruning is exact, so both are the global optimum
    x = rpt.pw_constant(300, 1, 3, noise_std=1.0, seed=5)[0][:, 0]
    cost = cost_factory("l2").fit(x)
    every_row = list(range(1, 301))
    assert partition_candidates(cost, every_row, pen=8.0, min_size=1) == pelt(
        x, model="l2", pen=8.0, min_size=1
    )


def test_partition_keeps_to_candidates_and_min_size() -> None:
    x = rpt.pw_constant(600, 2, 5, noise_std=0.5, seed=9)[0]
    cost = cost_factory("normal").fit(x)
    fine = pelt(x, model="normal", pen=5.0, min_size=5)
    coarse = partition_candidates(cost, fine, pen=60.0, min_size=80)
    assert set(coarse) <= set(fine)
    assert coarse[-1] == 600
    assert np.diff([0, *coarse]).min() >= 80
    assert len(coarse) < len(fine)


def test_pelt_cost_params_follow_ruptures() -> None:
    x = _mean_var_series(12)
    expected = (
        rpt.Pelt(model="normal", min_size=5, jump=1, params={"add_small_diag": False})
        .fit(x)
        .predict(pen=20.0)
    )
    got = pelt(x, model="normal", pen=20.0, min_size=5, params={"add_small_diag": False})
    assert got == expected
    assert len(got) > 1


@pytest.mark.parametrize(("model", "n_dims"), [("l2", 1), ("l2", 3), ("normal", 1), ("normal", 4)])
def test_batch_costs_equal_ruptures_costs(model: str, n_dims: int) -> None:
    """PELT's vectorised costs of many starts against one end, short, long and singular ones."""
    from eraflow.stages.eras.costs import batch_costs, batch_scratch

    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 2.0, size=(400, n_dims)) + np.linspace(0, 30, 400)[:, None]
    x[100:200, 0] = 7.0  # constant in one signal: a singular covariance without the diagonal
    if n_dims > 1:
        x[100:200, 1] = 2 * x[100:200, -1]  # and collinear signals (d = 4)
    end = 200
    starts = np.array([0, 50, 100, 120, 150, 170, 168, 190, 197, 198], dtype=np.int64)
    for params in ({}, {"add_small_diag": False}) if model == "normal" else ({},):
        ours = cost_factory(model, **params).fit(x)
        ref = rpt.costs.cost_factory(model, **params).fit(x)
        count = len(starts)
        out = np.empty(count)
        scratch = batch_scratch(n_dims, count)
        batch_costs(ours.code, ours.x, ours.s1, ours.s2, ours.eps, starts, count, end, out, scratch)
        expected = np.array([ref.error(int(s), end) for s in starts])
        # on the constant stretch cumulative sums leave ~1e-12 of variance beside the 1e-6
        # floor; without the floor that residue stands where ruptures has log(0): compare the
        # segments that reach outside the stretch only
        keep = starts < 100 if params else starts >= 0
        assert out[keep] == pytest.approx(expected[keep], rel=1e-7, abs=1e-9), params


def test_fast_log_is_within_one_ulp_of_numpy() -> None:
    """The vectorised log PELT uses, against NumPy's over the whole normal range."""
    from eraflow.stages.eras.fastlog import log_positive_normal

    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-690.0, 690.0, 100_000)),
            1.0 + rng.uniform(-1e-3, 1e-3, 10_000),  # near 1, where log loses digits most easily
            [1.0, 2.0, 0.5, np.e, np.sqrt(2.0), 1e-300, 1e300, np.nextafter(1.0, 2.0)],
        ]
    )
    out = np.empty_like(x)
    log_positive_normal(x, out, np.empty(x.size, dtype=np.int64), x.size)
    expected = np.log(x)
    ulps = np.abs(out - expected) / np.spacing(np.maximum(np.abs(expected), 1e-300))
    assert ulps.max() <= 1.0
    assert out[-8:-4].tolist() == [0.0, np.log(2.0), -np.log(2.0), 1.0]
