"""tsfresh's model-fitting calculators, batched over segments.

``partial_autocorrelation`` (Levinson-Durbin on the adjusted autocovariance) and
``linear_trend_timewise`` (least squares against the hours since the first value) are array
code over the whole batch. ``ar_coefficient``, ``augmented_dickey_fuller``,
``friedrich_coefficients`` and ``max_langevin_fixed_point`` fit one small least-squares problem
per segment whose design depends on the segment (its lags, its quantile bins): they run on the
CPU, one segment after another, with LAPACK doing the work (see
:func:`~eraflow.stages.features.kernels.on_cpu`). They solve the same problems as statsmodels and
pandas do for tsfresh, without their per-call overhead, and
``augmented_dickey_fuller`` reads the residual sum of squares of all its nested lag models from
one QR factorisation instead of fitting each of them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from eraflow.stages.features.kernels import (
    LINREG_ATTRS,
    Params,
    lagged_cov,
    on_cpu,
    segment_linregress,
    stack_rows,
)
from eraflow.stages.features.registry import feature
from eraflow.stages.features.segments import SegmentBatch

_HOUR_NS = 3_600_000_000_000


def _per_segment(
    b: SegmentBatch, name: str, width: int, fit: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``fit(values)`` (``width`` numbers) for every segment, on the host: ``(width, nseg)``."""
    x, offsets = on_cpu(b, name)
    out = np.full((width, b.nseg), np.nan)
    for s in range(b.nseg):
        out[:, s] = fit(x[offsets[s] : offsets[s + 1]])
    return out


# ---- partial autocorrelation ---------------------------------------------------------------
@feature("partial_autocorrelation", params=[{"lag": lag} for lag in range(10)], tsfresh=True)
def partial_autocorrelation(b: SegmentBatch, params: Params) -> Any:
    """PACF by Levinson-Durbin on the adjusted autocovariance (statsmodels' ``pacf(method="ld")``).

    As in tsfresh the lags stop below half the length (``n // 2 - 1``): later lags, and every
    lag of a series with fewer than 4 values, are NaN; lag 0 is 1.
    """
    xp = b.xp
    top = max(int(p["lag"]) for p in params)
    order = max(top, 1)
    with np.errstate(all="ignore"):
        acov = [lagged_cov(b, k) / (b.n - k) for k in range(order + 1)]
        pacf = [xp.ones(b.nseg), acov[1] / acov[0]]
        phi = [pacf[1]]  # AR coefficients of the current order, phi[j-1] for lag j
        sig = acov[0] - pacf[1] * acov[1]
        for k in range(2, order + 1):
            reflect = (acov[k] - sum(phi[j] * acov[k - 1 - j] for j in range(k - 1))) / sig
            phi = [phi[j] - reflect * phi[k - 2 - j] for j in range(k - 1)] + [reflect]
            sig = sig * (1.0 - reflect**2)
            pacf.append(reflect)
    max_lag = xp.minimum(top, b.n_int // 2 - 1)
    rows = []
    for p in params:
        lag = int(p["lag"])
        rows.append(xp.where((max_lag > 0) & (lag <= max_lag), pacf[lag], np.nan))
    return stack_rows(b, rows)


# ---- autoregression ------------------------------------------------------------------------
def _ar_fit(k: int) -> Callable[[np.ndarray], np.ndarray]:
    """The fit of statsmodels' ``AutoReg(x, lags=k, trend="c").fit().params``: OLS by pinv.

    ``lstsq`` with ``rcond=1e-15`` is the same minimum-norm solution as statsmodels'
    ``pinv_extended`` (singular values below 1e-15 x the largest count as zero). Too short a
    series is NaN, as tsfresh's caught ``ValueError``.
    """

    def fit(x: np.ndarray) -> np.ndarray:
        rows = x.shape[0] - k
        if rows <= 0 or rows < k + 1:
            return np.full(k + 1, np.nan)
        design = np.empty((rows, k + 1))
        design[:, 0] = 1.0
        for lag in range(1, k + 1):
            design[:, lag] = x[k - lag : x.shape[0] - lag]
        return np.linalg.lstsq(design, x[k:], rcond=1e-15)[0]

    return fit


@feature(
    "ar_coefficient",
    params=[{"coeff": c, "k": 10} for c in range(11)],
    tsfresh=True,
)
def ar_coefficient(b: SegmentBatch, params: Params) -> Any:
    """Coefficient ``coeff`` (0 the constant) of an AR(k) fit with a constant, by OLS.

    tsfresh quirks kept: when the fit fails, coefficients below k are NaN and coefficient k
    is 0 (an ``IndexError`` it turns into 0); ``coeff > k`` is NaN.
    """
    fits: dict[int, np.ndarray] = {}
    rows = []
    for p in params:
        k, c = int(p["k"]), int(p["coeff"])
        if k not in fits:
            fits[k] = _per_segment(b, "ar_coefficient", k + 1, _ar_fit(k))
        if c > k:
            rows.append(np.full(b.nseg, np.nan))
            continue
        failed = np.isnan(fits[k]).all(axis=0)
        rows.append(np.where(failed, 0.0 if c == k else np.nan, fits[k][c]))
    return stack_rows(b, [b.xp.asarray(r) for r in rows])


# ---- augmented Dickey-Fuller ---------------------------------------------------------------
def _adf(x: np.ndarray) -> np.ndarray:
    """Statsmodels' ``adfuller(x, autolag="AIC")`` (constant only): statistic, p-value, lag.

    The lag search fits ``startlag..maxlag`` nested OLS models on one sample; their residual
    sums of squares come from one QR factorisation (:func:`_nested_fits`). The chosen model
    is refitted on its own (longer) sample. Constant or too short series are NaN
    (statsmodels raises, tsfresh returns NaN).
    """
    nan = np.full(3, np.nan)
    n = x.shape[0]
    if n == 0 or not np.isfinite(x).all() or x.max() == x.min():
        return nan
    maxlag = min(n // 2 - 2, math.ceil(12.0 * (n / 100.0) ** 0.25))
    if maxlag < 0:
        return nan
    diff = np.diff(x)
    design, y = _adf_design(x, diff, maxlag)
    rows = y.shape[0]
    columns = design.shape[1]  # constant, level, maxlag differences
    if rows < columns:
        return nan
    upper = _centred_upper(design, y)
    rss, rank = _nested_fits(design, y) if upper is None else _nested_from_upper(upper)
    # residuals below rounding are zero: an exact fit (a ramp) is not improved by more lags
    rss = np.maximum(rss, rows * (np.finfo(float).eps * float(np.linalg.norm(y))) ** 2)
    best: tuple[float, int] | None = None
    for used in range(2, columns + 1):
        with np.errstate(divide="ignore"):
            aic = rows * (math.log(2 * math.pi) + np.log(rss[used] / rows) + 1.0)
        aic += 2.0 * rank[used]
        if best is None or (aic, used) < best:
            best = (float(aic), used)
    assert best is not None
    lag = best[1] - 2
    design, y = _adf_design(x, diff, lag)
    stat = _level_tstat(design, y)
    return np.array([stat, _adf_pvalue(stat), float(lag)])


def _adf_pvalue(stat: float) -> float:
    """Statsmodels' ``mackinnonp(stat, regression="c", N=1)``: its tables, its formula.

    Why not the call: ``scipy.stats.norm.cdf`` checks its arguments at about 20 us a call,
    a tenth of the ADF's time over the year's 40,000 segments; ``ndtr`` is the function it
    ends in.
    """
    if not np.isfinite(stat):
        return math.nan
    from scipy.special import ndtr
    from statsmodels.tsa import adfvalues as tables

    if stat > tables._tau_maxs["c"][0]:
        return 1.0
    if stat < tables._tau_mins["c"][0]:
        return 0.0
    small = stat <= tables._tau_stars["c"][0]
    coef = (tables._tau_smallps if small else tables._tau_largeps)["c"][0]
    return float(ndtr(np.polyval(coef[::-1], stat)))


def _nested_fits(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual sum of squares and rank of the OLS fit on the first j columns, every j.

    The tails of the last column of R, for ``[design | y] = QR``. A column in the span of
    the ones before it (a level that stays constant over the sample, differences that are all
    zero) adds nothing to the fit, but Householder QR would give it a direction of rounding
    noise: such columns are found on R's diagonal (the tolerance of ``matrix_rank``) and the
    factorisation is redone without them.
    """
    rows, columns = design.shape
    r = np.asarray(np.linalg.qr(np.column_stack([design, y]), mode="r"))
    diag = np.abs(np.diag(r)[:columns])
    kept = diag > diag.max() * max(rows, columns) * np.finfo(float).eps
    if not kept.all():
        r = np.asarray(np.linalg.qr(np.column_stack([design[:, kept], y]), mode="r"))
    width = int(kept.sum())
    tail = np.cumsum((r[: width + 1, width] ** 2)[::-1])[::-1]  # by number of kept columns
    rank = np.concatenate([[0], np.cumsum(kept)])
    return tail[rank], rank


#: A column whose Cholesky pivot keeps less than this share of its centred sum of squares
#: is nearly in the span of the columns before it: the Gram route would lose digits there
#: (at a share of 4e-6 the statistic moved by 1e-8), so the QR route decides such designs.
#: Sensor series keep shares far above it (their differences are far from collinear).
GRAM_PIVOT_SHARE = 1e-3


def _centred_upper(design: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """R of the centred ``[design[:, 1:] | y]`` by Cholesky of its Gram matrix, or None.

    Why not QR: for the long segments of coarse eras the ADF's two QR factorisations were
    nearly half of the whole profile's time; the Gram matrix is one BLAS product and its
    Cholesky factor is QR's R up to signs (the product took 8-14x less time than the QR at
    6,000-30,000 rows; the whole ADF 2-3.4x less). Centring
    takes the constant column out (an intercept's fit equals the centred fit's), which keeps
    the Gram matrix well conditioned; where a column is still nearly dependent on the ones
    before it (:data:`GRAM_PIVOT_SHARE`), or ``y`` is fitted exactly, None sends the caller
    to the QR route, whose rank rules then apply unchanged.
    """
    rows, columns = design.shape
    if rows <= columns or columns < 2:
        return None
    centred = np.column_stack([design[:, 1:], y])
    centred -= centred.mean(axis=0)
    gram = centred.T @ centred
    try:
        lower = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        return None
    share = np.diag(lower) ** 2 / np.where(np.diag(gram) > 0, np.diag(gram), np.inf)
    if not (share > GRAM_PIVOT_SHARE).all():
        return None
    return lower.T


def _nested_from_upper(upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_nested_fits`' result from :func:`_centred_upper` (every column kept)."""
    width = upper.shape[0] - 1  # columns besides the constant
    tail = np.cumsum((upper[:, width] ** 2)[::-1])[::-1]  # constant + j columns: tail[j]
    rss = np.concatenate([[np.nan], tail])  # by number of columns, the constant included
    return rss, np.arange(width + 2)


def _level_tstat(design: np.ndarray, y: np.ndarray) -> float:
    """The t statistic of the lagged level (column 1) in the OLS fit of ``y`` on ``design``.

    The Gram route where the centred design is well conditioned (:func:`_centred_upper`),
    else one QR factorisation of ``[design | y]``; statsmodels' pseudo-inverse (two SVDs)
    only where the design is nearly rank-deficient, where the two may differ.
    """
    rows, k = design.shape
    if rows <= k:
        return _level_tstat_pinv(design, y)
    upper = _centred_upper(design, y)
    if upper is not None:  # the level is the centred design's first column
        return _tstat(upper[:-1, :-1], upper[:-1, -1], float(upper[-1, -1]), rows - k, 0)
    r = np.asarray(np.linalg.qr(np.column_stack([design, y]), mode="r"))
    diag = np.abs(np.diag(r)[:k])
    if diag.min() <= 1e-8 * diag.max():
        return _level_tstat_pinv(design, y)
    return _tstat(r[:k, :k], r[:k, k], float(r[k, k]), rows - k, 1)


def _tstat(upper: np.ndarray, qty: np.ndarray, resid_norm: float, dof: int, column: int) -> float:
    """The t statistic of one coefficient from R, Q'y and the residual norm of an OLS fit."""
    from scipy.linalg import solve_triangular

    coef = solve_triangular(upper, qty)
    unit = np.zeros(upper.shape[0])
    unit[column] = 1.0
    w = solve_triangular(upper, unit, trans="T")  # R^-T e: (X'X)^-1[c, c] = |w|^2
    variance = resid_norm**2 / dof * float(w @ w)
    return float(coef[column] / math.sqrt(variance)) if variance > 0 else float("nan")


def _level_tstat_pinv(design: np.ndarray, y: np.ndarray) -> float:
    """The route of statsmodels: parameters and covariance from the pseudo-inverse."""
    pinv = np.linalg.pinv(design, rcond=1e-15)
    coef = pinv @ y
    resid = y - design @ coef
    dof = y.shape[0] - np.linalg.matrix_rank(design)
    if dof <= 0:
        return float("nan")
    variance = resid @ resid / dof * float(pinv[1] @ pinv[1])
    with np.errstate(all="ignore"):
        return float(coef[1] / math.sqrt(variance)) if variance > 0 else float("nan")


def _adf_design(x: np.ndarray, diff: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """``[1, x_{t-1}, dx_{t-1} .. dx_{t-lags}]`` and ``dx_t`` on the rows where all exist."""
    rows = diff.shape[0] - lags
    design = np.empty((max(rows, 0), lags + 2))
    if rows <= 0:
        return design, diff[:0]
    design[:, 0] = 1.0
    design[:, 1] = x[lags : lags + rows]
    if lags:  # column lag + 1 holds diff[lags - lag + row]: each row a reversed window
        windows = np.lib.stride_tricks.sliding_window_view(diff[: rows + lags - 1], lags)
        design[:, 2:] = windows[:, ::-1]
    return design, diff[lags:]


_ADF_ATTRS = ("teststat", "pvalue", "usedlag")


@feature(
    "augmented_dickey_fuller",
    params=[{"attr": a, "autolag": "AIC"} for a in _ADF_ATTRS],
    tsfresh=True,
)
def augmented_dickey_fuller(b: SegmentBatch, params: Params) -> Any:
    """ADF test statistic, its MacKinnon p-value and the lag chosen by AIC (constant only)."""
    for p in params:
        if str(p.get("autolag", "AIC")).upper() != "AIC":
            from eraflow.common.errors import ConfigError

            raise ConfigError(
                f"augmented_dickey_fuller: the engine chooses the lag by AIC only, not "
                f"{p['autolag']!r}; compute other lag rules in the tsfresh stage"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fits = _per_segment(b, "augmented_dickey_fuller", 3, _adf)
    return stack_rows(
        b,
        [
            b.xp.asarray(fits[_ADF_ATTRS.index(p["attr"])])
            if p["attr"] in _ADF_ATTRS
            else b.xp.full(b.nseg, np.nan)
            for p in params
        ],
    )


# ---- Langevin model (Friedrich) ------------------------------------------------------------
def _friedrich(m: int, r: int) -> Callable[[np.ndarray], np.ndarray]:
    """The fit of tsfresh's ``_estimate_friedrich_coefficients``, without pandas.

    pandas' ``qcut`` puts ``x[:-1]`` into ``r`` quantile bins; the mean value and mean change
    per bin are fitted by ``np.polyfit`` of degree m.

    The bin edges are pandas' (``np.quantile``, the quantiles rounded up where ``r q`` is
    inexact); repeated edges make it NaN, as pandas' ``ValueError`` does.
    """
    quantiles = np.linspace(0, 1, r + 1)
    np.putmask(quantiles, r * quantiles != np.arange(r + 1), np.nextafter(quantiles, 1))

    def fit(x: np.ndarray) -> np.ndarray:
        nan = np.full(m + 1, np.nan)
        if x.shape[0] < 2:
            return nan
        signal, delta = x[:-1], np.diff(x)
        edges = np.quantile(signal, quantiles)
        if np.unique(edges).shape[0] < edges.shape[0]:
            return nan
        ids = np.searchsorted(edges, signal, side="left")
        ids[signal == edges[0]] = 1
        ids -= 1
        count = np.bincount(ids, minlength=r)
        used = count > 0
        x_mean = np.bincount(ids, signal, minlength=r)[used] / count[used]
        y_mean = np.bincount(ids, delta, minlength=r)[used] / count[used]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", np.exceptions.RankWarning)
                return np.polyfit(x_mean, y_mean, deg=m)
        except (np.linalg.LinAlgError, ValueError, TypeError):
            return nan

    return fit


def _friedrich_fits(b: SegmentBatch, name: str, params: Params) -> dict[tuple[int, int], Any]:
    """The fits of ``params``' (m, r), each made once per batch.

    ``friedrich_coefficients`` and ``max_langevin_fixed_point`` share tsfresh's (3, 30): the
    batch keeps the fits (a per-segment loop, 2 s of the year's features each time).
    """
    fits: dict[tuple[int, int], Any] = b.__dict__.setdefault("_friedrich_fits", {})
    for p in params:
        key = (int(p["m"]), int(p["r"]))
        if key not in fits:
            fits[key] = _per_segment(b, name, key[0] + 1, _friedrich(*key))
    return fits


@feature(
    "friedrich_coefficients",
    params=[{"coeff": c, "m": 3, "r": 30} for c in range(4)],
    tsfresh=True,
)
def friedrich_coefficients(b: SegmentBatch, params: Params) -> Any:
    """Coefficient ``coeff`` (highest power first) of the Langevin drift polynomial."""
    fits = _friedrich_fits(b, "friedrich_coefficients", params)
    rows = []
    for p in params:
        coeffs = fits[(int(p["m"]), int(p["r"]))]
        c = int(p["coeff"])
        rows.append(coeffs[c] if c < coeffs.shape[0] else np.full(b.nseg, np.nan))
    return stack_rows(b, [b.xp.asarray(r) for r in rows])


def _largest_real_root(coeffs: np.ndarray) -> float:
    """``max(real(np.roots(coeffs)))``, NaN where tsfresh's call raises."""
    try:
        return float(np.max(np.real(np.roots(coeffs))))
    except (np.linalg.LinAlgError, ValueError):
        return float("nan")


@feature("max_langevin_fixed_point", params=[{"m": 3, "r": 30}], tsfresh=True)
def max_langevin_fixed_point(b: SegmentBatch, params: Params) -> Any:
    """Largest real part of the roots of the Langevin drift polynomial."""
    fits = _friedrich_fits(b, "max_langevin_fixed_point", params)
    rows = []
    for p in params:
        coeffs = fits[(int(p["m"]), int(p["r"]))]
        rows.append(np.array([_largest_real_root(coeffs[:, s]) for s in range(b.nseg)]))
    return stack_rows(b, [b.xp.asarray(r) for r in rows])


# ---- timewise trend ------------------------------------------------------------------------
@feature("linear_trend_timewise", params=[{"attr": a} for a in LINREG_ATTRS], tsfresh=True)
def linear_trend_timewise(b: SegmentBatch, params: Params) -> Any:
    """Least-squares line against the hours since the segment's first valid value.

    The grid gives every value its time, so gaps stretch the abscissa as tsfresh's datetime
    index does. Without a grid step the feature is NaN.
    """
    xp = b.xp
    if b.step_ns is None or b.total == 0:
        return xp.full((len(params), b.nseg), np.nan)
    grid_pos = xp.arange(b.grid.shape[0], dtype=np.int64) - b.grid_offsets[:-1][b.grid_seg]
    pos = grid_pos[b.grid_valid]
    first = pos[xp.minimum(b.start, b.total - 1)]
    hours = (pos - first[b.seg]).astype(np.float64) * (b.step_ns / _HOUR_NS)
    lr = segment_linregress(xp, b.x, hours, b.seg, b.nseg, b.n, evenly_spaced=False)
    return stack_rows(b, [lr[p["attr"]] for p in params])
