"""The compiled ridge-line count equals scipy's find_peaks_cwt, case for case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.signal import find_peaks_cwt

from eraflow.stages.features.cwt_peaks import count_cwt_peaks, ricker, ricker_transform
from tests.eraflow.test_features_tsfresh import REAL_CSV, read_knudjepsen


def scipy_count(x: np.ndarray, n: int) -> int:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scipy divides by a zero noise on flat stretches
        return len(find_peaks_cwt(x, np.arange(1, n + 1), wavelet=ricker))


def synthetic_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=n) for n in (1, 2, 3, 4, 5, 10, 50, 300, 2000)]
    cases += [np.round(20 + rng.normal(size=500).cumsum() / 5, 1) for _ in range(10)]
    cases += [np.zeros(30), np.ones(7), (rng.random(400) > 0.8).astype(float)]
    cases.append(np.sin(np.arange(1000) / 7.0))  # smooth: long ridge lines
    return cases


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_equal_to_scipy_on_synthetic_series(n):
    for x in synthetic_cases():
        assert count_cwt_peaks(x, n) == scipy_count(x, n), (len(x), n)


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_CSV.exists(), reason=f"real data not present at {REAL_CSV}")
def test_equal_to_scipy_on_real_quantised_readings():
    frame = read_knudjepsen(REAL_CSV, days=30)
    checked = 0
    for column in frame.columns[:10]:
        x = frame[column].dropna().to_numpy()
        for start in range(0, len(x), 2500):
            part = x[start : start + 2500]
            transform = ricker_transform(part, np.arange(1, 6))
            for n in (1, 5):
                assert count_cwt_peaks(part, n, transform) == scipy_count(part, n)
                checked += 1
    assert checked >= 40


@pytest.mark.parametrize(
    ("length", "widths"),
    [(1, [1, 2]), (7, [1, 5]), (150, [1, 2, 3, 4, 5]), (20_000, [1, 5, 100])],
)
def test_transform_equals_scipy_convolve(length: int, widths: list[int]) -> None:
    # scipy's own call is the reference, to the bit: width 100 on 20,000 values is one that
    # scipy convolves by FFT (a 1,000-point wavelet), the others directly
    from scipy.signal import convolve

    x = np.random.default_rng(length).normal(size=length).cumsum()
    expected = np.array(
        [convolve(x, ricker(min(10 * w, length), float(w))[::-1], mode="same") for w in widths]
    )
    np.testing.assert_array_equal(ricker_transform(x, np.asarray(widths)), expected)
