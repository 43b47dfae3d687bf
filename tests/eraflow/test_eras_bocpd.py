"""BOCPD: one known change, the posterior against enumeration, the change probability, bad
parameters."""

from __future__ import annotations

import numpy as np
import pytest

from eraflow.stages.eras import BadSegmentationParameters, SignalDataError, bocpd


def _one_change(seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(3.0, 1.0, 300)])


def test_bocpd_finds_one_change_within_tolerance() -> None:
    res = bocpd(_one_change(), hazard=1 / 200, r_max=400, lag=5, threshold=0.5, min_size=10)
    assert len(res.bkps) == 2
    assert abs(res.bkps[0] - 300) <= 3
    assert res.bkps[-1] == 600


def test_change_probability_shape() -> None:
    res = bocpd(_one_change(), hazard=1 / 200, r_max=400, lag=20)
    p = res.cp_prob
    assert p.shape == (600,)
    assert np.all((p >= 0.0) & (p <= 1.0))
    assert p[0] == 1.0
    assert p[296:305].sum() > 0.9  # the change is certain, its exact row a little less
    assert np.argmax(p[1:]) + 1 in range(297, 304)
    away = np.r_[p[20:280], p[330:590]]
    assert away.max() < 0.05  # and low elsewhere
    # the MAP run length grows by one per row, then drops at the change
    rl = res.map_run_length
    assert rl[250] == 250
    assert rl[320] < 40
    assert rl[590] >= 280


def test_bocpd_multivariate_and_stationary() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 1.0, size=(800, 3))
    assert bocpd(x, hazard=1 / 500, r_max=300, lag=10).bkps == [800]
    x[400:, 2] += 4.0
    got = bocpd(x, hazard=1 / 500, r_max=300, lag=10, min_size=20).bkps
    assert len(got) == 2
    assert abs(got[0] - 400) <= 3


def test_bocpd_is_deterministic() -> None:
    a = bocpd(_one_change(), hazard=1 / 100, r_max=200)
    b = bocpd(_one_change(), hazard=1 / 100, r_max=200)
    assert a.bkps == b.bkps
    np.testing.assert_array_equal(a.cp_prob, b.cp_prob)


def test_bocpd_bad_parameters() -> None:
    x = _one_change()
    with pytest.raises(BadSegmentationParameters, match="hazard"):
        bocpd(x, hazard=0.0)
    with pytest.raises(BadSegmentationParameters, match="lag"):
        bocpd(x, r_max=10, lag=10)
    with pytest.raises(SignalDataError, match="NaN"):
        bocpd(np.array([1.0, np.nan, 2.0]))


def _segment_log_evidence(seg: np.ndarray, prior: tuple[float, float, float, float]) -> float:
    """Closed-form Normal-Gamma marginal likelihood of a whole segment, summed over signals
    (not the sequential Student-t predictive the implementation multiplies)."""
    from math import lgamma, log, pi

    mu0, k0, a0, b0 = prior
    n = len(seg)
    total = 0.0
    for x in seg.T:
        mean = x.mean()
        kn, an = k0 + n, a0 + n / 2
        bn = b0 + 0.5 * ((x - mean) ** 2).sum() + k0 * n * (mean - mu0) ** 2 / (2 * kn)
        total += (
            lgamma(an) - lgamma(a0) + a0 * log(b0) - an * log(bn)
            + 0.5 * log(k0 / kn) - n / 2 * log(2 * pi)
        )  # fmt: skip
    return total


def _run_length_posterior(
    x: np.ndarray, hazard: float, prior: tuple[float, float, float, float]
) -> np.ndarray:
    """``R[t, k] = P(the run holding row t started at row t - k | x[0..t])`` by enumerating
    every set of changepoints in 1..t (a product partition with a constant hazard)."""
    from itertools import combinations, pairwise

    n = len(x)
    out = np.zeros((n, n))
    for t in range(n):
        weights = np.zeros(t + 1)
        for m in range(t + 1):
            for starts in combinations(range(1, t + 1), m):
                bounds = [0, *starts, t + 1]
                log_p = m * np.log(hazard) + (t - m) * np.log1p(-hazard)
                log_p += sum(_segment_log_evidence(x[a:b], prior) for a, b in pairwise(bounds))
                weights[t - bounds[-2]] += np.exp(log_p)
        out[t, : t + 1] = weights / weights.sum()
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_run_length_posterior_equals_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (5, 2)), rng.normal(2.5, 0.5, (4, 2))])
    hazard, prior = 0.2, (0.3, 0.8, 1.5, 0.7)
    expected = _run_length_posterior(x, hazard, prior)
    n = len(x)
    for lag in range(n - 1):
        got = bocpd(x, hazard=hazard, r_max=n + 1, lag=lag, prior=prior).cp_prob
        # cp_prob[t] = R[t + lag, lag]; the last rows see the data to the end
        for row in range(1, n):
            seen = min(row + lag, n - 1)
            np.testing.assert_allclose(got[row], expected[seen, seen - row], rtol=1e-9)
    assert expected[5:, :].max() > 0.5  # the change at row 5 is there to be found
