"""tsfresh-compatible calculators, vectorised over segments.

Each calculator is named and parameterised exactly as in tsfresh 0.21
(``tsfresh.feature_extraction.feature_calculators``) and returns tsfresh's value, edge cases
included (the tests check every one against tsfresh). The input is the era's valid values (NaN
dropped), which is what tsfresh would see on the ``dropna``-ed series.

Deliberate numerical differences (all toward more accuracy): the mean is the double nearest the
exact mean (exact per-segment sums, :mod:`~eraflow.stages.features.exact`), and every decision
against it is exact: ``count_above_mean``, ``count_below_mean``, ``longest_strike_*_mean``,
``ratio_beyond_r_sigma``, ``symmetry_looking``, ``large_standard_deviation`` and
``variance_larger_than_standard_deviation`` decide in floating point only where rounding cannot
change the answer, and exactly (fractions) within the rounding bound. tsfresh's ``np.mean`` puts a
constant 80.03 era at 80.02999999999997 and counts all 66 values above it; the engine counts 0
(``tests/eraflow/test_features_exact_mean.py``). Moments are two-pass around that mean, and
``time_reversal_asymmetry_statistic`` is evaluated in the factored form ``x1 (x2 - x0)(x2 + x0)``,
which avoids the cancellation of tsfresh's ``x2² x1 - x1 x0²``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from eraflow.stages.features import arrays as ar
from eraflow.stages.features.kernels import (
    EPS,
    LINREG_ATTRS,
    Moments,
    Params,
    histogram_entropy,
    lagged_cov,
    moment_tolerance,
    segment_linregress,
    settle_segments,
    single_row,
    stack_rows,
)
from eraflow.stages.features.registry import feature
from eraflow.stages.features.segments import SegmentBatch


# ---- minimal set ---------------------------------------------------------------------------
@feature("sum_values", tsfresh=True, minimal=True)
def sum_values(b: SegmentBatch, params: Params) -> Any:
    """Sum of the values."""
    return single_row(b, b.sum(b.x))


@feature("median", tsfresh=True, minimal=True)
def median(b: SegmentBatch, params: Params) -> Any:
    """Median (``np.median``)."""
    return single_row(b, b.median)


@feature("mean", tsfresh=True, minimal=True)
def mean(b: SegmentBatch, params: Params) -> Any:
    """Arithmetic mean."""
    return single_row(b, b.mean)


@feature("length", tsfresh=True, minimal=True)
def length(b: SegmentBatch, params: Params) -> Any:
    """Number of valid values."""
    return single_row(b, b.n)


@feature("standard_deviation", tsfresh=True, minimal=True)
def standard_deviation(b: SegmentBatch, params: Params) -> Any:
    """Population standard deviation (ddof 0)."""
    return single_row(b, b.std)


@feature("variance", tsfresh=True, minimal=True)
def variance(b: SegmentBatch, params: Params) -> Any:
    """Population variance (ddof 0)."""
    return single_row(b, b.var)


@feature("root_mean_square", tsfresh=True, minimal=True)
def root_mean_square(b: SegmentBatch, params: Params) -> Any:
    """Square root of the mean of squares."""
    return single_row(b, b.xp.sqrt(b.div(b.sum(b.x * b.x), b.n)))


@feature("maximum", tsfresh=True, minimal=True)
def maximum(b: SegmentBatch, params: Params) -> Any:
    """Largest value."""
    return single_row(b, b.maximum)


@feature("absolute_maximum", tsfresh=True, minimal=True)
def absolute_maximum(b: SegmentBatch, params: Params) -> Any:
    """Largest absolute value."""
    return single_row(b, b.xp.maximum(b.xp.abs(b.minimum), b.xp.abs(b.maximum)))


@feature("minimum", tsfresh=True, minimal=True)
def minimum(b: SegmentBatch, params: Params) -> Any:
    """Smallest value."""
    return single_row(b, b.minimum)


# ---- simple statistics ----------------------------------------------------------------------
@feature("variance_larger_than_standard_deviation", tsfresh=True)
def variance_larger_than_standard_deviation(b: SegmentBatch, params: Params) -> Any:
    """1.0 when var > std (i.e. var > 1), else 0.0; a variance within rounding of 1 exactly."""
    xp = b.xp
    flag = b.var > xp.sqrt(b.var)
    near = b.exact.exact & (xp.abs(b.var - 1.0) <= moment_tolerance(b) * (b.var + 1.0))

    def decide(_: int, mo: Moments) -> bool:
        n, s, q = mo
        return n * q - s * s > n * n  # n^2 var > n^2

    return single_row(b, settle_segments(b, flag, near, decide))


@feature("has_duplicate_max", tsfresh=True)
def has_duplicate_max(b: SegmentBatch, params: Params) -> Any:
    """1.0 when the maximum occurs at least twice."""
    return single_row(b, b.at_end(b.sorted, 2) == b.maximum)


@feature("has_duplicate_min", tsfresh=True)
def has_duplicate_min(b: SegmentBatch, params: Params) -> Any:
    """1.0 when the minimum occurs at least twice."""
    return single_row(b, b.at_start(b.sorted, 1) == b.minimum)


@feature("has_duplicate", tsfresh=True)
def has_duplicate(b: SegmentBatch, params: Params) -> Any:
    """1.0 when any value occurs more than once."""
    runs = b.runs
    nuniq = ar.seg_count(b.xp, runs["count"] >= 0, runs["seg"], b.nseg)
    return single_row(b, nuniq != b.n)


@feature("abs_energy", tsfresh=True)
def abs_energy(b: SegmentBatch, params: Params) -> Any:
    """Sum of squares."""
    return single_row(b, b.sum(b.x * b.x))


@feature("mean_abs_change", tsfresh=True)
def mean_abs_change(b: SegmentBatch, params: Params) -> Any:
    """Mean absolute first difference (NaN for one value)."""
    d, sid = b.diff
    return single_row(b, b.div(ar.seg_sum(b.xp, b.xp.abs(d), sid, b.nseg), b.n - 1.0))


@feature("mean_change", tsfresh=True)
def mean_change(b: SegmentBatch, params: Params) -> Any:
    """Mean first difference, ``(x[-1] - x[0]) / (n - 1)``; NaN for one value."""
    res = (b.at_end(b.x) - b.at_start(b.x)) / b.xp.where(b.n > 1, b.n - 1.0, 1.0)
    return single_row(b, b.xp.where(b.n > 1, res, np.nan))


@feature("mean_second_derivative_central", tsfresh=True)
def mean_second_derivative_central(b: SegmentBatch, params: Params) -> Any:
    """``(x[-1] - x[-2] - x[1] + x[0]) / (2 (n - 2))``; NaN for n <= 2."""
    xp = b.xp
    num = b.at_end(b.x, 1) - b.at_end(b.x, 2) - b.at_start(b.x, 1) + b.at_start(b.x, 0)
    res = num / (2.0 * xp.where(b.n > 2, b.n - 2.0, 1.0))
    return single_row(b, xp.where(b.n > 2, res, np.nan))


@feature("variation_coefficient", tsfresh=True)
def variation_coefficient(b: SegmentBatch, params: Params) -> Any:
    """Std / mean; NaN when the mean is 0."""
    return single_row(b, b.div(b.std, b.mean))


def _moments(b: SegmentBatch) -> tuple[Any, Any, Any, Any]:
    xp = b.xp
    d2 = b.centered**2
    m2 = b.m2
    max_abs = ar.seg_max(xp, xp.abs(b.x), b.seg, b.nseg, empty=0.0)
    eps = np.finfo(np.float64).eps
    return d2, m2, max_abs, eps


@feature("skewness", tsfresh=True)
def skewness(b: SegmentBatch, params: Params) -> Any:
    """Sample skewness G1 as ``pandas.Series.skew`` (NaN for n < 3, 0 for constant)."""
    xp = b.xp
    d2, m2, max_abs, eps = _moments(b)
    m3 = b.sum(d2 * b.centered)
    cnt = b.n
    m2 = xp.where(xp.abs(m2) < (eps * max_abs) ** 2 * cnt, 0.0, m2)
    m3 = xp.where(xp.abs(m3) < (eps * max_abs) ** 3 * cnt, 0.0, m3)
    with np.errstate(all="ignore"):
        res = (cnt * (cnt - 1.0) ** 0.5 / (cnt - 2.0)) * (m3 / m2**1.5)
    res = xp.where(m2 == 0, 0.0, res)
    return single_row(b, xp.where(cnt < 3, np.nan, res))


@feature("kurtosis", tsfresh=True)
def kurtosis(b: SegmentBatch, params: Params) -> Any:
    """Sample excess kurtosis G2 as ``pandas.Series.kurtosis`` (NaN for n < 4, 0 for constant)."""
    xp = b.xp
    d2, m2, max_abs, eps = _moments(b)
    m4 = b.sum(d2 * d2)
    cnt = b.n
    m2 = xp.where(xp.abs(m2) < (eps * max_abs) ** 2 * cnt, 0.0, m2)
    m4 = xp.where(xp.abs(m4) < (eps * max_abs) ** 4 * cnt, 0.0, m4)
    with np.errstate(all="ignore"):
        adj = 3.0 * (cnt - 1.0) ** 2 / ((cnt - 2.0) * (cnt - 3.0))
        numer = cnt * (cnt + 1.0) * (cnt - 1.0) * m4
        denom = (cnt - 2.0) * (cnt - 3.0) * m2**2
        res = numer / denom - adj
    res = xp.where(denom == 0, 0.0, res)
    return single_row(b, xp.where(cnt < 4, np.nan, res))


@feature("absolute_sum_of_changes", tsfresh=True)
def absolute_sum_of_changes(b: SegmentBatch, params: Params) -> Any:
    """Sum of absolute first differences."""
    d, sid = b.diff
    return single_row(b, ar.seg_sum(b.xp, b.xp.abs(d), sid, b.nseg))


def _longest_strike(b: SegmentBatch, flag: Any) -> Any:
    """Longest run of True in ``flag`` (aligned with ``x``) per segment; 0 when none."""
    xp = b.xp
    if b.total == 0:
        return xp.zeros(b.nseg)
    new = xp.ones(b.total, dtype=bool)
    new[1:] = flag[1:] != flag[:-1]
    new = new | (b.pos == 0)
    run_id = xp.cumsum(new) - 1
    nruns = int(run_id[-1]) + 1
    run_len = xp.bincount(run_id, minlength=nruns).astype(np.float64)
    run_flag = flag[new]
    run_seg = b.seg[new]
    lens = xp.where(run_flag, run_len, 0.0)
    return ar.seg_max(xp, lens, run_seg, b.nseg, empty=0.0)


@feature("longest_strike_below_mean", tsfresh=True)
def longest_strike_below_mean(b: SegmentBatch, params: Params) -> Any:
    """Length of the longest run of values below the exact mean."""
    return single_row(b, _longest_strike(b, b.mean_sign < 0))


@feature("longest_strike_above_mean", tsfresh=True)
def longest_strike_above_mean(b: SegmentBatch, params: Params) -> Any:
    """Length of the longest run of values above the exact mean."""
    return single_row(b, _longest_strike(b, b.mean_sign > 0))


@feature("count_above_mean", tsfresh=True)
def count_above_mean(b: SegmentBatch, params: Params) -> Any:
    """Number of values above the exact mean (a tie with the rounded mean decided exactly)."""
    return single_row(b, b.count(b.mean_sign > 0))


@feature("count_below_mean", tsfresh=True)
def count_below_mean(b: SegmentBatch, params: Params) -> Any:
    """Number of values below the exact mean (a tie with the rounded mean decided exactly)."""
    return single_row(b, b.count(b.mean_sign < 0))


def _first_last(b: SegmentBatch, target: Any) -> tuple[Any, Any]:
    """First and last position (within the segment) where ``x == target[seg]``."""
    xp = b.xp
    if b.total == 0:
        z = xp.full(b.nseg, np.nan)
        return z, z
    hits = xp.nonzero(b.x == target[b.seg])[0]
    if hits.size == 0:
        z = xp.full(b.nseg, np.nan)
        return z, z
    first = xp.searchsorted(hits, b.start, side="left")
    last = xp.searchsorted(hits, b.end, side="left") - 1
    first = hits[xp.clip(first, 0, hits.size - 1)] - b.start
    last = hits[xp.clip(last, 0, hits.size - 1)] - b.start
    return first.astype(np.float64), last.astype(np.float64)


@feature("last_location_of_maximum", tsfresh=True)
def last_location_of_maximum(b: SegmentBatch, params: Params) -> Any:
    """``1 - argmax(x[::-1]) / n``: relative position after the last maximum."""
    _, last = _first_last(b, b.maximum)
    return single_row(b, 1.0 - b.div(b.n - 1.0 - last, b.n))


@feature("first_location_of_maximum", tsfresh=True)
def first_location_of_maximum(b: SegmentBatch, params: Params) -> Any:
    """``argmax(x) / n``: relative position of the first maximum."""
    first, _ = _first_last(b, b.maximum)
    return single_row(b, b.div(first, b.n))


@feature("last_location_of_minimum", tsfresh=True)
def last_location_of_minimum(b: SegmentBatch, params: Params) -> Any:
    """``1 - argmin(x[::-1]) / n``: relative position after the last minimum."""
    _, last = _first_last(b, b.minimum)
    return single_row(b, 1.0 - b.div(b.n - 1.0 - last, b.n))


@feature("first_location_of_minimum", tsfresh=True)
def first_location_of_minimum(b: SegmentBatch, params: Params) -> Any:
    """``argmin(x) / n``: relative position of the first minimum."""
    first, _ = _first_last(b, b.minimum)
    return single_row(b, b.div(first, b.n))


def _unique_stats(b: SegmentBatch) -> tuple[Any, Any, Any, Any]:
    xp = b.xp
    runs = b.runs
    rep = runs["count"] > 1
    nuniq = ar.seg_count(xp, runs["count"] >= 0, runs["seg"], b.nseg)
    nrep = ar.seg_count(xp, rep, runs["seg"], b.nseg)
    rep_points = ar.seg_sum(xp, xp.where(rep, runs["count"], 0.0), runs["seg"], b.nseg)
    return runs, nuniq, nrep, rep_points


@feature("percentage_of_reoccurring_values_to_all_values", tsfresh=True)
def percentage_of_reoccurring_values_to_all_values(b: SegmentBatch, params: Params) -> Any:
    """Share of distinct values that occur more than once."""
    _, nuniq, nrep, _ = _unique_stats(b)
    return single_row(b, b.div(nrep, nuniq))


@feature("percentage_of_reoccurring_datapoints_to_all_datapoints", tsfresh=True)
def percentage_of_reoccurring_datapoints_to_all_datapoints(b: SegmentBatch, params: Params) -> Any:
    """Share of values whose value occurs more than once."""
    _, _, _, rep_points = _unique_stats(b)
    return single_row(b, b.div(rep_points, b.n))


@feature("sum_of_reoccurring_values", tsfresh=True)
def sum_of_reoccurring_values(b: SegmentBatch, params: Params) -> Any:
    """Sum of the distinct values that occur more than once (each counted once)."""
    runs = b.runs
    v = b.xp.where(runs["count"] > 1, runs["value"], 0.0)
    return single_row(b, ar.seg_sum(b.xp, v, runs["seg"], b.nseg))


@feature("sum_of_reoccurring_data_points", tsfresh=True)
def sum_of_reoccurring_data_points(b: SegmentBatch, params: Params) -> Any:
    """Sum of all values whose value occurs more than once."""
    runs = b.runs
    v = b.xp.where(runs["count"] > 1, runs["value"] * runs["count"], 0.0)
    return single_row(b, ar.seg_sum(b.xp, v, runs["seg"], b.nseg))


@feature("ratio_value_number_to_time_series_length", tsfresh=True)
def ratio_value_number_to_time_series_length(b: SegmentBatch, params: Params) -> Any:
    """Number of distinct values / n."""
    _, nuniq, _, _ = _unique_stats(b)
    return single_row(b, b.div(nuniq, b.n))


# ---- lag-based -------------------------------------------------------------------------------
@feature(
    "time_reversal_asymmetry_statistic",
    params=[{"lag": lag} for lag in range(1, 4)],
    tsfresh=True,
)
def time_reversal_asymmetry_statistic(b: SegmentBatch, params: Params) -> Any:
    """Mean of ``x[t+2l]² x[t+l] - x[t+l] x[t]²``; 0 when ``2 lag >= n``."""
    xp = b.xp
    rows = []
    for p in params:
        lag = int(p["lag"])
        i, sid = b.pairs(2 * lag)
        x0, x1, x2 = b.x[i], b.x[i + lag], b.x[i + 2 * lag]
        s = ar.seg_sum(xp, x1 * (x2 - x0) * (x2 + x0), sid, b.nseg)
        m = b.n - 2.0 * lag
        rows.append(xp.where(m > 0, s / xp.where(m > 0, m, 1.0), 0.0))
    return stack_rows(b, rows)


@feature("c3", params=[{"lag": lag} for lag in range(1, 4)], tsfresh=True)
def c3(b: SegmentBatch, params: Params) -> Any:
    """Mean of ``x[t+2l] x[t+l] x[t]``; 0 when ``2 lag >= n``."""
    xp = b.xp
    rows = []
    for p in params:
        lag = int(p["lag"])
        i, sid = b.pairs(2 * lag)
        s = ar.seg_sum(xp, b.x[i] * b.x[i + lag] * b.x[i + 2 * lag], sid, b.nseg)
        m = b.n - 2.0 * lag
        rows.append(xp.where(m > 0, s / xp.where(m > 0, m, 1.0), 0.0))
    return stack_rows(b, rows)


@feature("cid_ce", params=[{"normalize": True}, {"normalize": False}], tsfresh=True)
def cid_ce(b: SegmentBatch, params: Params) -> Any:
    """Complexity estimate ``sqrt(sum diff(x)²)``, of the z-scored series when normalize."""
    xp = b.xp
    d, sid = b.diff
    raw = xp.sqrt(ar.seg_sum(xp, d * d, sid, b.nseg))
    rows = []
    for p in params:
        if p["normalize"]:
            std = b.std
            rows.append(xp.where(std != 0, raw / xp.where(std != 0, std, 1.0), 0.0))
        else:
            rows.append(raw)
    return stack_rows(b, rows)


@feature("symmetry_looking", params=[{"r": r * 0.05} for r in range(20)], tsfresh=True)
def symmetry_looking(b: SegmentBatch, params: Params) -> Any:
    """1.0 when ``|mean - median| < r (max - min)``, against the exact mean and median.

    A float decision within rounding (4 eps of the terms) of the threshold is settled exactly:
    ``|sum - n (a + b) / 2| < n r (max - min)`` with ``a``, ``b`` the middle values.
    """
    xp = b.xp
    mmd = xp.abs(b.mean - b.median)
    rng = b.maximum - b.minimum
    size = xp.abs(b.mean) + xp.abs(b.median)
    open_ = b.exact.exact & (rng > 0)  # max == min: 0 < 0 is exactly false
    host: dict[str, np.ndarray] = {}

    def middle(seg: int) -> tuple[Fraction, Fraction, Fraction]:
        if not host:
            n_h = ar.to_host(b.n_int)
            last = max(b.total - 1, 0)  # empty segments (never near) index anything
            lo = np.minimum(ar.to_host(b.start) + np.maximum(n_h - 1, 0) // 2, last)
            hi = np.minimum(ar.to_host(b.start) + n_h // 2, last)
            srt = ar.to_host(b.sorted)
            host.update(a=srt[lo], b=srt[hi], mx=ar.to_host(b.maximum), mn=ar.to_host(b.minimum))
        spread = Fraction(float(host["mx"][seg])) - Fraction(float(host["mn"][seg]))
        return Fraction(float(host["a"][seg])), Fraction(float(host["b"][seg])), spread

    rows = []
    for p in params:
        r = float(p["r"])
        thr = r * rng
        flag = mmd < thr
        near = open_ & (r > 0) & (xp.abs(mmd - thr) <= 4.0 * EPS * (size + thr))

        def decide(seg: int, mo: Moments, r: float = r) -> bool:
            n, s, _ = mo
            lo, hi, spread = middle(seg)
            return abs(s - n * (lo + hi) / 2) < n * Fraction(r) * spread

        rows.append(settle_segments(b, flag, near, decide))
    return stack_rows(b, rows)


@feature("large_standard_deviation", params=[{"r": r * 0.05} for r in range(1, 20)], tsfresh=True)
def large_standard_deviation(b: SegmentBatch, params: Params) -> Any:
    """1.0 when ``std > r (max - min)``; a std within rounding of it decided exactly."""
    xp = b.xp
    rng = b.maximum - b.minimum
    tol = moment_tolerance(b)
    open_ = b.exact.exact & (rng > 0)  # max == min: std 0 > 0 is exactly false
    host: dict[str, np.ndarray] = {}

    def spread(seg: int) -> Fraction:
        if not host:
            host.update(mx=ar.to_host(b.maximum), mn=ar.to_host(b.minimum))
        return Fraction(float(host["mx"][seg])) - Fraction(float(host["mn"][seg]))

    rows = []
    for p in params:
        r = float(p["r"])
        thr = r * rng
        flag = b.std > thr
        near = open_ & (xp.abs(b.std - thr) <= tol * (b.std + thr))

        def decide(seg: int, mo: Moments, r: float = r) -> bool:
            n, s, q = mo  # n^2 var = n q - s^2 against (n r (max - min))^2, for r >= 0
            return n * q - s * s > (n * Fraction(r) * spread(seg)) ** 2 if r >= 0 else True

        rows.append(settle_segments(b, flag, near, decide))
    return stack_rows(b, rows)


@feature(
    "quantile",
    params=[{"q": q} for q in [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]],
    tsfresh=True,
)
def quantile(b: SegmentBatch, params: Params) -> Any:
    """``np.quantile(x, q)`` with linear interpolation (one shared per-segment sort)."""
    return stack_rows(b, [b.quantile(float(p["q"])) for p in params])


@feature("autocorrelation", params=[{"lag": lag} for lag in range(10)], tsfresh=True)
def autocorrelation(b: SegmentBatch, params: Params) -> Any:
    """``sum (x_t - m)(x_{t+l} - m) / ((n - l) var)``; NaN when var ≈ 0 (``np.isclose``)."""
    xp = b.xp
    rows = []
    flat_var = xp.abs(b.var) <= 1e-8
    for p in params:
        lag = int(p["lag"])
        m = b.n - lag
        with np.errstate(all="ignore"):
            res = lagged_cov(b, lag) / (m * b.var)
        res = xp.where((b.n < lag) | (m == 0) | flat_var, np.nan, res)
        rows.append(res)
    return stack_rows(b, rows)


@feature(
    "agg_autocorrelation",
    params=[{"f_agg": s, "maxlag": 40} for s in ["mean", "median", "var"]],
    tsfresh=True,
)
def agg_autocorrelation(b: SegmentBatch, params: Params) -> Any:
    """Mean/median/var of the adjusted ACF at lags ``1..min(maxlag, n-1)`` (statsmodels' ACF).

    Built as an (nseg x maxlag) matrix with NaN beyond ``n - 1`` and reduced row-wise; series
    with var < 1e-10 or one value give 0, as in tsfresh.
    """
    xp = b.xp
    maxlag = max(int(p["maxlag"]) for p in params)
    cols = []
    for lag in range(1, maxlag + 1):
        m = b.n - lag
        with np.errstate(all="ignore"):
            a = lagged_cov(b, lag) / (m * b.var)
        cols.append(xp.where(m > 0, a, np.nan))
    acf = xp.stack(cols, axis=1)  # (nseg, maxlag)
    degenerate = (xp.abs(b.var) < 1e-10) | (b.n == 1)
    rows = []
    for p in params:
        k = int(p["maxlag"])
        a = acf[:, :k]
        valid = ~xp.isnan(a)
        cnt = valid.sum(axis=1).astype(np.float64)
        safe_cnt = xp.where(cnt > 0, cnt, 1.0)
        mean_a = xp.where(valid, a, 0.0).sum(axis=1) / safe_cnt
        f = p["f_agg"]
        if f == "mean":
            res = mean_a
        elif f == "var":
            res = (xp.where(valid, a - mean_a[:, None], 0.0) ** 2).sum(axis=1) / safe_cnt
        elif f == "median":
            srt = xp.sort(a, axis=1)  # NaN sort last
            ci = cnt.astype(np.int64)
            lo = xp.clip((ci - 1) // 2, 0, k - 1)
            hi = xp.clip(ci // 2, 0, k - 1)
            res = (
                xp.take_along_axis(srt, lo[:, None], 1) + xp.take_along_axis(srt, hi[:, None], 1)
            )[:, 0] / 2.0
        else:
            raise ValueError(f"agg_autocorrelation: unsupported f_agg {f!r}")
        res = xp.where(cnt > 0, res, np.nan)
        rows.append(xp.where(degenerate, 0.0, res))
    return stack_rows(b, rows)


# ---- counting ---------------------------------------------------------------------------------
@feature(
    "index_mass_quantile",
    params=[{"q": q} for q in [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]],
    tsfresh=True,
)
def index_mass_quantile(b: SegmentBatch, params: Params) -> Any:
    """Relative index where q of the absolute mass ``cumsum(|x|) / sum(|x|)`` is reached.

    The per-segment cumsum is a global cumsum minus its value at the segment start: exact for
    integer-valued data, and otherwise off by ~1e-16 x (sum of |x| over all earlier segments),
    which can only flip a value lying that close to a quantile boundary.
    """
    xp = b.xp
    ax = xp.abs(b.x)
    cs = xp.cumsum(ax)
    base = xp.where(b.nonempty, b.at_start(cs) - b.at_start(ax), 0.0)
    total = b.sum(ax)
    local = cs - base[b.seg]
    mass = local / xp.where(total > 0, total, 1.0)[b.seg]
    rows = []
    for p in params:
        hit = mass >= float(p["q"])
        first, _ = _first_flag(b, hit)
        rows.append(xp.where(total > 0, (first + 1.0) / b.n, np.nan))
    return stack_rows(b, rows)


def _first_flag(b: SegmentBatch, flag: Any) -> tuple[Any, Any]:
    xp = b.xp
    hits = xp.nonzero(flag)[0]
    if hits.size == 0:
        z = xp.full(b.nseg, np.nan)
        return z, z
    first = xp.searchsorted(hits, b.start, side="left")
    fi = hits[xp.clip(first, 0, hits.size - 1)]
    ok = (first < hits.size) & (fi < b.end)
    return xp.where(ok, (fi - b.start).astype(np.float64), np.nan), ok


@feature("number_crossing_m", params=[{"m": 0}, {"m": -1}, {"m": 1}], tsfresh=True)
def number_crossing_m(b: SegmentBatch, params: Params) -> Any:
    """Number of sign changes of ``x > m`` between consecutive values."""
    i, sid = b.pairs(1)
    rows = []
    for p in params:
        pos = b.x > p["m"]
        rows.append(ar.seg_count(b.xp, pos[i] != pos[i + 1], sid, b.nseg))
    return stack_rows(b, rows)


@feature(
    "ratio_beyond_r_sigma",
    params=[{"r": x} for x in [0.5, 1, 1.5, 2, 2.5, 3, 5, 6, 7, 10]],
    tsfresh=True,
)
def ratio_beyond_r_sigma(b: SegmentBatch, params: Params) -> Any:
    """Share of values farther than r standard deviations from the exact mean.

    Every value's ``z = |x - mean| / std`` is placed among the sorted ``r`` at once (one
    ``searchsorted``, one ``bincount`` for all parameters). A value within the rounding bound of
    an ``r`` (:func:`moment_tolerance`) is decided exactly as
    ``(n x - sum)^2 > r^2 (n sum_sq - sum^2)``; a value equal to the exact mean is never beyond.
    """
    xp = b.xp
    r_all = np.array([float(p["r"]) for p in params])
    if (r_all < 0).any():
        raise ValueError(f"ratio_beyond_r_sigma: r must be >= 0, got {r_all.tolist()}")
    order = np.argsort(r_all, kind="stable")
    rs = r_all[order]
    nr = len(rs)
    rs_d = xp.asarray(rs)
    dev = xp.abs(b.centered)
    lim = b.per_value(b.std)
    with np.errstate(all="ignore"):
        z = dev / lim  # 0 / 0 (a constant) is NaN: beyond nothing, as 0 > 0 is false
        slack = 4.0 * EPS * xp.abs(b.exact.lo) / b.std  # the centring's remainder, rounded
    z = xp.where(xp.isnan(z), -np.inf, z)
    k = xp.searchsorted(rs_d, z, side="left")  # z > rs[j] exactly for j < k
    hist = xp.bincount(b.seg * (nr + 1) + k, minlength=b.nseg * (nr + 1))
    tail = xp.cumsum(hist.reshape(b.nseg, nr + 1)[:, ::-1], axis=1)[:, ::-1]
    beyond = tail[:, 1:].astype(np.float64)  # (nseg, nr): values with k > j
    below = rs_d[xp.clip(k - 1, 0, nr - 1)]
    above = rs_d[xp.clip(k, 0, nr - 1)]
    gap = xp.minimum(xp.abs(z - below), xp.abs(above - z))
    with np.errstate(all="ignore"):
        tol = b.per_value(moment_tolerance(b)) * (2.0 * z + gap) + b.per_value(slack)
    checked = (b.mean_sign != 0) & b.per_value(b.exact.exact)
    near = xp.nonzero(checked & ((gap <= tol) | (lim == 0)))[0]
    if int(near.shape[0]):
        segs = ar.to_host(b.seg[near])
        vals = ar.to_host(b.x[near])
        ks = ar.to_host(k[near])
        fix = np.zeros((b.nseg, nr))
        r2 = [Fraction(float(v)) ** 2 for v in rs]
        for (n, s, q), seg, v, kk in zip(b.exact_moments(segs), segs, vals, ks, strict=True):
            lhs = (n * Fraction(float(v)) - s) ** 2
            var_n2 = n * q - s * s
            for j in range(nr):
                fix[seg, j] += int(lhs > r2[j] * var_n2) - int(j < kk)
        beyond = beyond + xp.asarray(fix)
    back = np.empty(nr, dtype=np.int64)
    back[order] = np.arange(nr)  # sorted position of each parameter
    return b.div(beyond.T, b.n[None, :])[xp.asarray(back)]


@feature("count_above", params=[{"t": 0}], tsfresh=True)
def count_above(b: SegmentBatch, params: Params) -> Any:
    """Share of values ``>= t``."""
    return stack_rows(b, [b.div(b.count(b.x >= p["t"]), b.n) for p in params])


@feature("count_below", params=[{"t": 0}], tsfresh=True)
def count_below(b: SegmentBatch, params: Params) -> Any:
    """Share of values ``<= t``."""
    return stack_rows(b, [b.div(b.count(b.x <= p["t"]), b.n) for p in params])


@feature("value_count", params=[{"value": v} for v in [0, 1, -1]], tsfresh=True)
def value_count(b: SegmentBatch, params: Params) -> Any:
    """Number of values equal to ``value``."""
    return stack_rows(b, [b.count(b.x == p["value"]) for p in params])


@feature(
    "range_count",
    params=[{"min": -1, "max": 1}, {"min": -1e12, "max": 0}, {"min": 0, "max": 1e12}],
    tsfresh=True,
)
def range_count(b: SegmentBatch, params: Params) -> Any:
    """Number of values in ``[min, max)``."""
    return stack_rows(b, [b.count((b.x >= p["min"]) & (b.x < p["max"])) for p in params])


@feature("number_peaks", params=[{"n": n} for n in [1, 3, 5, 10, 50]], tsfresh=True)
def number_peaks(b: SegmentBatch, params: Params) -> Any:
    """Number of values larger than their ``n`` neighbours on both sides.

    Larger than each neighbour is larger than their maximum: the maximum of a window of width
    ``n`` is that of two overlapping windows of the largest power of two ``k <= n``, whose
    maxima come from log2(k) doublings shared by every ``n``. Comparing with each neighbour
    in turn (2n gathers per ``n``) made this 3.5x slower than tsfresh on a year's level A.
    """
    xp = b.xp
    x = b.x
    maxima = {1: x}  # maxima[k][s] = max(x[s : s + k])

    def widest(width: int) -> int:
        k = 1
        while 2 * k <= width:
            if 2 * k not in maxima:
                maxima[2 * k] = xp.maximum(maxima[k][:-k], maxima[k][k:])
            k *= 2
        return k

    rows = []
    for p in params:
        n = int(p["n"])
        inner = (b.pos >= n) & (b.pos + n < b.n_int[b.seg])
        idx = xp.nonzero(inner)[0]
        k = widest(n)
        m = maxima[k]
        left = xp.maximum(m[idx - n], m[idx - k])  # max x[idx - n : idx]
        right = xp.maximum(m[idx + 1], m[idx + n + 1 - k])  # max x[idx + 1 : idx + n + 1]
        ok = (x[idx] > left) & (x[idx] > right)
        rows.append(ar.seg_count(xp, ok, b.seg[idx], b.nseg))
    return stack_rows(b, rows)


@feature(
    "energy_ratio_by_chunks",
    params=[{"num_segments": 10, "segment_focus": i} for i in range(10)],
    tsfresh=True,
)
def energy_ratio_by_chunks(b: SegmentBatch, params: Params) -> Any:
    """Energy of chunk ``segment_focus`` of ``np.array_split(x, num_segments)`` / total energy.

    Every chunk's energy in one ``bincount`` per ``num_segments`` (keyed by segment and chunk),
    not one masked sum per focus: the same sums in the same order, a tenth of the passes.
    """
    xp = b.xp
    x2 = b.x * b.x
    total = b.sum(x2)
    chunk_energy: dict[int, Any] = {}
    rows = []
    for p in params:
        k = int(p["num_segments"])
        focus = int(p["segment_focus"])
        if k not in chunk_energy:
            q = b.n_int // k
            r = b.n_int % k
            qs, rs = q[b.seg], r[b.seg]
            big = (qs + 1) * rs
            chunk = xp.where(
                b.pos < big, b.pos // (qs + 1), rs + (b.pos - big) // xp.maximum(qs, 1)
            )
            energy = ar.seg_sum(xp, x2, b.seg * k + chunk, b.nseg * k)
            chunk_energy[k] = energy.reshape(b.nseg, k)
        e = chunk_energy[k][:, focus] if 0 <= focus < k else xp.zeros(b.nseg)
        rows.append(xp.where(total == 0, np.nan, e / xp.where(total == 0, 1.0, total)))
    return stack_rows(b, rows)


@feature("mean_n_absolute_max", params=[{"number_of_maxima": 7}], tsfresh=True)
def mean_n_absolute_max(b: SegmentBatch, params: Params) -> Any:
    """Mean of the ``number_of_maxima`` largest ``|x|``; NaN unless n > number_of_maxima.

    The largest absolute values are among the k smallest and k largest of the per-segment
    sort, so a (nseg x 2k) candidate matrix suffices.
    """
    xp = b.xp
    rows = []
    for p in params:
        k = int(p["number_of_maxima"])
        j = xp.arange(k)
        lo_pos = b.start[:, None] + j[None, :]
        hi_pos = b.end[:, None] - k + j[None, :]
        lo_ok = j[None, :] < b.n_int[:, None]
        hi_ok = (hi_pos >= lo_pos[:, -1:] + 1) & (hi_pos >= b.start[:, None])
        last = max(b.total - 1, 0)
        srt = b.sorted if b.total else xp.zeros(1)
        lo_v = xp.where(lo_ok, xp.abs(srt[xp.clip(lo_pos, 0, last)]), -np.inf)
        hi_v = xp.where(hi_ok, xp.abs(srt[xp.clip(hi_pos, 0, last)]), -np.inf)
        cand = xp.sort(xp.concatenate([lo_v, hi_v], axis=1), axis=1)[:, -k:]
        res = cand.sum(axis=1) / k
        rows.append(xp.where(b.n > k, res, np.nan))
    return stack_rows(b, rows)


@feature(
    "change_quantiles",
    params=[
        {"ql": ql, "qh": qh, "isabs": isabs, "f_agg": f}
        for ql in [0.0, 0.2, 0.4, 0.6, 0.8]
        for qh in [0.2, 0.4, 0.6, 0.8, 1.0]
        for isabs in [False, True]
        for f in ["mean", "var"]
        if ql < qh
    ],
    tsfresh=True,
)
def change_quantiles(b: SegmentBatch, params: Params) -> Any:
    """Mean/var of (absolute) changes between consecutive values both inside [q_l, q_h].

    Mirrors tsfresh's ``pd.qcut`` corridor: ``lo <= x <= hi``; a degenerate corridor
    (``lo == hi``) or no change inside gives 0. The sums run over the pairs inside each
    corridor only (a narrow corridor holds a few percent of them), in the same order as
    over all pairs with zeros outside, hence the same numbers; one corridor is held at a
    time.
    """
    xp = b.xp
    i, sid = b.pairs(1)
    d = b.x[i + 1] - b.x[i]
    qcache: dict[float, Any] = {}

    def q_of(q: float) -> Any:
        if q not in qcache:
            qcache[q] = b.quantile(q)
        return qcache[q]

    settings = [(float(p["ql"]), float(p["qh"]), bool(p["isabs"]), p["f_agg"]) for p in params]
    for *_, how in settings:
        if how not in ("mean", "var"):
            raise ValueError(f"change_quantiles: unsupported f_agg {how!r}")
    rows: list[Any] = [xp.zeros(b.nseg)] * len(settings)  # ql >= qh: 0
    for ql, qh in dict.fromkeys((ql, qh) for ql, qh, *_ in settings if ql < qh):
        lo, hi = q_of(ql), q_of(qh)
        inside = (b.x >= lo[b.seg]) & (b.x <= hi[b.seg])
        at = xp.nonzero(inside[i] & inside[i + 1])[0]
        seg = sid[at]
        cnt = ar.seg_count(xp, xp.ones(at.shape[0], dtype=bool), seg, b.nseg)
        safe = xp.where(cnt > 0, cnt, 1.0)
        zero = (cnt == 0) | (lo == hi)
        for isabs in (False, True):
            wanted = [
                (k, how)
                for k, (a, c, s, how) in enumerate(settings)
                if (a, c, s) == (ql, qh, isabs)
            ]
            if not wanted:
                continue
            v = xp.abs(d[at]) if isabs else d[at]
            mu = ar.seg_sum(xp, v, seg, b.nseg) / safe
            for k, how in wanted:
                res = (
                    mu if how == "mean" else ar.seg_sum(xp, (v - mu[seg]) ** 2, seg, b.nseg) / safe
                )
                rows[k] = xp.where(zero, 0.0, res)
    return stack_rows(b, rows)


@feature("binned_entropy", params=[{"max_bins": 10}], tsfresh=True)
def binned_entropy(b: SegmentBatch, params: Params) -> Any:
    """Entropy of ``np.histogram(x, bins=max_bins)`` counts, reproducing NumPy's bin edges."""
    return stack_rows(
        b, [histogram_entropy(b.xp, b.x, b.seg, b.nseg, int(p["max_bins"])) for p in params]
    )


# ---- linear regression --------------------------------------------------------------------
@feature("linear_trend", params=[{"attr": a} for a in LINREG_ATTRS], tsfresh=True)
def linear_trend(b: SegmentBatch, params: Params) -> Any:
    """Least-squares line against the index ``0..n-1`` (``scipy.stats.linregress``)."""
    lr = segment_linregress(b.xp, b.x, b.pos.astype(np.float64), b.seg, b.nseg, b.n)
    return stack_rows(b, [lr[p["attr"]] for p in params])


@feature(
    "agg_linear_trend",
    params=[
        {"attr": attr, "chunk_len": i, "f_agg": f}
        for attr in ["rvalue", "intercept", "slope", "stderr"]
        for i in [5, 10, 50]
        for f in ["max", "min", "mean", "var"]
    ],
    tsfresh=True,
)
def agg_linear_trend(b: SegmentBatch, params: Params) -> Any:
    """Linear trend of chunk aggregates (chunks of ``chunk_len``); NaN when chunk_len >= n."""
    xp = b.xp
    cache: dict[tuple[int, str], dict[str, Any]] = {}
    rows = []
    for p in params:
        cl, f = int(p["chunk_len"]), str(p["f_agg"])
        if (cl, f) not in cache:
            nchunks = (b.n_int + cl - 1) // cl
            choff = xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(nchunks)])
            total_chunks = int(ar.to_host(choff[-1:])[0]) if b.nseg else 0
            cid = choff[b.seg] + b.pos // cl
            csize = xp.bincount(cid, minlength=total_chunks)[:total_chunks].astype(np.float64)
            if f == "mean" or f == "var":
                cshift = b.x[b.start[b.seg] + (b.pos // cl) * cl] if b.total else b.x
                c0 = xp.zeros(total_chunks)
                if total_chunks:
                    c0[cid] = cshift
                cm = c0 + ar.seg_sum(xp, b.x - c0[cid], cid, total_chunks) / csize
                if f == "mean":
                    agg = cm
                else:
                    agg = ar.seg_sum(xp, (b.x - cm[cid]) ** 2, cid, total_chunks) / csize
            elif f == "max":
                agg = ar.seg_max(xp, b.x, cid, total_chunks)
            elif f == "min":
                agg = ar.seg_min(xp, b.x, cid, total_chunks)
            else:
                raise ValueError(f"agg_linear_trend: unsupported f_agg {f!r}")
            chunk_seg = ar.segment_ids(xp, choff, total_chunks)
            chunk_pos = (xp.arange(total_chunks) - choff[chunk_seg]).astype(np.float64)
            lr = segment_linregress(
                xp, agg, chunk_pos, chunk_seg, b.nseg, nchunks.astype(np.float64)
            )
            too_short = b.n_int <= cl
            cache[(cl, f)] = {k: xp.where(too_short, np.nan, v) for k, v in lr.items()}
        rows.append(cache[(cl, f)][p["attr"]])
    return stack_rows(b, rows)


# ---- spectral ---------------------------------------------------------------------------------
@feature(
    "fft_aggregated",
    params=[{"aggtype": s} for s in ["centroid", "variance", "skew", "kurtosis"]],
    tsfresh=True,
)
def fft_aggregated(b: SegmentBatch, params: Params) -> Any:
    """Centroid, variance, skew, kurtosis of ``|rfft(x)|`` as a distribution over its index."""
    xp = b.xp
    out = xp.full((len(params), b.nseg), np.nan)
    for segs, spec in b.rfft_groups():
        y = xp.abs(spec)
        k = xp.arange(y.shape[1], dtype=np.float64)
        tot = y.sum(axis=1)
        with np.errstate(all="ignore"):
            mom = [None] + [(y * k**j).sum(axis=1) / tot for j in (1, 2, 3, 4)]
            c = mom[1]
            var = mom[2] - c**2
            for r, p in enumerate(params):
                a = p["aggtype"]
                if a == "centroid":
                    v = c
                elif a == "variance":
                    v = var
                elif a == "skew":
                    v = xp.where(var < 0.5, np.nan, (mom[3] - 3 * c * var - c**3) / var**1.5)
                elif a == "kurtosis":
                    v = xp.where(
                        var < 0.5,
                        np.nan,
                        (mom[4] - 4 * c * mom[3] + 6 * mom[2] * c**2 - 3 * c) / var**2,
                    )
                else:
                    raise ValueError(f"fft_aggregated: unsupported aggtype {a!r}")
                out[r, segs] = v
    return out


@feature(
    "fft_coefficient",
    params=[{"coeff": k, "attr": a} for a in ["real", "imag", "abs", "angle"] for k in range(100)],
    tsfresh=True,
)
def fft_coefficient(b: SegmentBatch, params: Params) -> Any:
    """Real/imag/abs/angle (degrees) of rfft coefficient ``coeff``; NaN beyond the spectrum."""
    xp = b.xp
    out = xp.full((len(params), b.nseg), np.nan)
    kk = np.array([int(p["coeff"]) for p in params], dtype=np.int64)
    attrs = np.array([str(p["attr"]) for p in params])
    unknown = set(attrs.tolist()) - {"real", "imag", "abs", "angle"}
    if unknown:
        raise ValueError(f"fft_coefficient: unsupported attr {sorted(unknown)}")
    for segs, spec in b.rfft_groups():
        sel = np.nonzero(kk < spec.shape[1])[0]
        if sel.size == 0:
            continue
        c = spec[:, xp.asarray(kk[sel])]  # (segments in group, selected params)
        vals = xp.empty(c.shape, dtype=np.float64)
        for attr, fn in (
            ("real", lambda z: z.real),
            ("imag", lambda z: z.imag),
            ("abs", xp.abs),
            ("angle", lambda z: xp.angle(z, deg=True)),
        ):
            cols = np.nonzero(attrs[sel] == attr)[0]
            if cols.size:
                cols_d = xp.asarray(cols)
                vals[:, cols_d] = fn(c[:, cols_d])
        out[xp.asarray(sel)[:, None], segs[None, :]] = vals.T
    return out
