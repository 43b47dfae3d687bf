"""BOCPD: one known change, the shape of the change probability, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from eraflow.eras import BadSegmentationParameters, SignalDataError, bocpd


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
