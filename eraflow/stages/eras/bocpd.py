"""Bayesian online changepoint detection (Adams & MacKay 2007), Normal-Gamma model.

Each signal is Gaussian with unknown mean and variance, a Normal-Gamma prior
``(mu0, kappa0, alpha0, beta0)``; signals are independent given the run, so the predictive of a
row is the product of per-signal Student-t densities. The hazard is constant, ``1 / hazard``
being the expected run length in rows.

Convention: after observing ``x[0..t]``, ``R_t[k]`` is the posterior probability that the current
run started at row ``t - k``. A run starting at ``t`` uses the prior predictive for ``x[t]`` (so
``R_t[0]`` is informative, unlike ``P(r_t = 0) = H`` in the paper's indexing, which is constant
for a constant hazard). ``cp_prob[t] = R_{t + lag}[lag]`` is the probability that a new run
started at row ``t``, seen ``lag`` rows later: a lag gives the new run some rows of evidence.

Run lengths are truncated at ``r_max``: the last bin holds every run at least ``r_max - 1`` rows
old (their mass is added; the sufficient statistics kept are those of the likelier run), so the
cost is O(n * r_max * d) and memory O(r_max * d), and a long run is not mistaken for a change
when it reaches ``r_max`` (as it would be if its mass were dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lgamma, log

import numpy as np
from numpy.typing import NDArray

from eraflow.common.jit import jit
from eraflow.stages.eras.exceptions import BadSegmentationParameters, SignalDataError

__all__ = ["BocpdResult", "bocpd", "pick_peaks"]


@dataclass(frozen=True, slots=True)
class BocpdResult:
    """What :func:`bocpd` returns.

    Attributes
    ----------
    cp_prob : ndarray, shape (n,)
        ``P(run starts at row t | x[0 .. t + lag])``; the last ``lag`` rows use the data to the
        end (a shorter lag). Row 0 is 1 by definition.
    map_run_length : ndarray of int64, shape (n,)
        MAP run length after each row (rows since the run started, 0 = this row starts one).
    bkps : list of int
        Changepoints (rows that start a new run), ruptures-style: sorted, ending with ``n``.
    """

    cp_prob: NDArray[np.float64]
    map_run_length: NDArray[np.int64]
    bkps: list[int]


@jit()
def _t_const(alpha: float) -> float:  # pragma: no cover - numba
    """The part of the Student-t log density that depends only on ``alpha``."""
    return lgamma(alpha + 0.5) - lgamma(alpha) - 0.5 * log(2.0 * alpha * np.pi)


@jit()
def _t_logpdf(
    xv: float, mu: float, kap: float, alpha: float, beta: float, tconst: float
) -> float:  # pragma: no cover - numba
    """Student-t predictive of a Normal-Gamma posterior (``tconst = _t_const(alpha)``)."""
    scale2 = beta * (kap + 1.0) / (alpha * kap)
    z = (xv - mu) ** 2 / scale2
    return tconst - 0.5 * log(scale2) - (alpha + 0.5) * np.log1p(z / (2.0 * alpha))


@jit()
def _bocpd_core(
    x: NDArray[np.float64],
    hazard: float,
    r_max: int,
    mu0: float,
    kappa0: float,
    alpha0: float,
    beta0: float,
    lag: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:  # pragma: no cover - numba
    n, d = x.shape
    log_h = log(hazard)
    log_1mh = log(1.0 - hazard)
    logr = np.full(r_max, -np.inf)
    new_logr = np.empty(r_max)
    # per live run (bin k = run started k rows ago; the last bin holds every older run)
    cnt = np.zeros(r_max)
    mu = np.empty((r_max, d))
    beta = np.empty((r_max, d))
    src = np.empty(r_max, dtype=np.int64)  # which old bin each new bin continues
    new_cnt = np.empty(r_max)
    new_mu = np.empty((r_max, d))
    new_beta = np.empty((r_max, d))
    cp_prob = np.zeros(n)
    map_rl = np.zeros(n, dtype=np.int64)
    # t-constants by number of points in a run (bins below the cap hold k + 1 points)
    tconst = np.empty(r_max + 1)
    for c in range(r_max + 1):
        tconst[c] = _t_const(alpha0 + 0.5 * c)
    n_r = 0  # live bins: k = 0 .. n_r - 1
    for t in range(n):
        # new run starting at t: prior predictive
        lp0 = 0.0
        for j in range(d):
            lp0 += _t_logpdf(x[t, j], mu0, kappa0, alpha0, beta0, tconst[0])
        new_logr[0] = log_h + lp0
        src[0] = -1
        mx = new_logr[0]
        top = 0
        for k in range(n_r):
            c = cnt[k]
            kap = kappa0 + c
            alpha = alpha0 + 0.5 * c
            tc = tconst[int(c)] if c <= r_max else _t_const(alpha)
            lp = 0.0
            for j in range(d):
                lp += _t_logpdf(x[t, j], mu[k, j], kap, alpha, beta[k, j], tc)
            v = logr[k] + log_1mh + lp
            dest = k + 1 if k + 1 < r_max else r_max - 1
            if dest > top:
                top = dest
                new_logr[dest] = v
                src[dest] = k
            else:  # the capped bin: add the mass, keep the stats of the likelier run
                hi = max(new_logr[dest], v)
                if v > new_logr[dest]:
                    src[dest] = k
                new_logr[dest] = hi + log(np.exp(new_logr[dest] - hi) + np.exp(v - hi))
            if new_logr[dest] > mx:
                mx = new_logr[dest]
        if t == 0:
            new_logr[0] = 0.0
            mx = 0.0
        tot = 0.0
        for k in range(top + 1):
            tot += np.exp(new_logr[k] - mx)
        norm = mx + log(tot)
        best = 0
        for k in range(top + 1):
            logr[k] = new_logr[k] - norm
            if logr[k] > logr[best]:
                best = k
        map_rl[t] = best
        # posterior statistics after x[t] (Normal-Gamma conjugate update)
        for k in range(top + 1):
            o = src[k]
            if o < 0:
                new_cnt[k] = 1.0
                for j in range(d):
                    new_mu[k, j] = (kappa0 * mu0 + x[t, j]) / (kappa0 + 1.0)
                    new_beta[k, j] = beta0 + kappa0 * (x[t, j] - mu0) ** 2 / (2.0 * (kappa0 + 1.0))
            else:
                kp = kappa0 + cnt[o]
                new_cnt[k] = cnt[o] + 1.0
                for j in range(d):
                    m_old = mu[o, j]
                    new_mu[k, j] = (kp * m_old + x[t, j]) / (kp + 1.0)
                    new_beta[k, j] = beta[o, j] + kp * (x[t, j] - m_old) ** 2 / (2.0 * (kp + 1.0))
        for k in range(top + 1):
            cnt[k] = new_cnt[k]
            for j in range(d):
                mu[k, j] = new_mu[k, j]
                beta[k, j] = new_beta[k, j]
        n_r = top + 1
        # lagged change probability: the run started at t - lag
        if t >= lag:
            cp_prob[t - lag] = np.exp(logr[lag]) if lag < n_r else 0.0
        if t == n - 1:
            for back in range(1, min(lag, n) + 1):
                s_row = t - lag + back
                if s_row >= 0 and lag - back < n_r:
                    cp_prob[s_row] = np.exp(logr[lag - back])
    cp_prob[0] = 1.0
    return cp_prob, map_rl


def pick_peaks(
    prob: NDArray[np.float64], *, threshold: float, min_size: int, window: int = 0
) -> list[int]:
    """Return rows where the change probability peaks, at least ``min_size`` apart.

    The evidence for a change near row ``t`` is ``prob`` summed over ``t - window .. t +
    window`` (the posterior spreads one change over neighbouring rows when the exact row is
    uncertain). Each maximal run of rows where that sum reaches ``threshold`` gives one
    boundary, at its most probable row; boundaries closer than ``min_size`` to the previous one
    (or to row 0 or ``n``) are dropped, keeping the more probable. Row 0 is never a boundary.
    """
    n = prob.shape[0]
    p = prob.copy()
    p[0] = 0.0
    if window > 0:
        csum = np.concatenate(([0.0], np.cumsum(p)))
        lo = np.clip(np.arange(n) - window, 0, n)
        hi = np.clip(np.arange(n) + window + 1, 0, n)
        mass = csum[hi] - csum[lo]
    else:
        mass = p
    above = mass >= threshold
    peaks: list[int] = []
    i = 1
    while i < n:
        if above[i]:
            j = i
            while j < n and above[j]:
                j += 1
            peaks.append(i + int(np.argmax(p[i:j])))
            i = j
        else:
            i += 1
    kept: list[int] = []
    for q in peaks:
        if q < min_size or n - q < min_size:
            continue
        if kept and q - kept[-1] < min_size:
            if p[q] > p[kept[-1]]:
                kept[-1] = q
            continue
        kept.append(q)
    return kept


def bocpd(
    signal: NDArray[np.floating],
    *,
    hazard: float = 1.0 / 250.0,
    r_max: int = 500,
    lag: int = 5,
    threshold: float = 0.5,
    min_size: int = 2,
    window: int | None = None,
    prior: tuple[float, float, float, float] = (0.0, 1.0, 1.0, 1.0),
) -> BocpdResult:
    """Detect changes of mean and variance online, with run-length posteriors.

    Parameters
    ----------
    signal : ndarray, shape (n,) or (n, d)
        Finite values; standardise them first, the default prior assumes unit scale.
    hazard : float
        Prior probability of a change at each row (``1 / expected run length``), in (0, 1).
    r_max : int
        Longest run length tracked; longer runs are truncated (see module docstring).
    lag : int
        Rows of evidence after a candidate change used for ``cp_prob``; ``0 <= lag < r_max``.
    threshold : float
        A boundary needs at least this much change probability within ``window`` rows (see
        :func:`pick_peaks`).
    min_size : int
        Fewest rows between changepoints (and to either end).
    window : int, optional
        Half-width of the window that sums ``cp_prob``; default ``max(1, lag // 2)``.
    prior : tuple of float
        Normal-Gamma ``(mu0, kappa0, alpha0, beta0)``, the same for every signal.

    Returns
    -------
    BocpdResult
        Change probabilities, MAP run lengths and the breakpoints.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise SignalDataError(f"signal must have shape (n,) or (n, d) with n > 0, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SignalDataError("signal contains NaN or inf: fill or drop missing rows first")
    if not 0.0 < hazard < 1.0:
        raise BadSegmentationParameters(f"hazard must be in (0, 1), got {hazard}")
    if not 0 <= lag < r_max:
        raise BadSegmentationParameters(f"need 0 <= lag < r_max, got lag={lag}, r_max={r_max}")
    mu0, kappa0, alpha0, beta0 = (float(v) for v in prior)
    if min(kappa0, alpha0, beta0) <= 0:
        raise BadSegmentationParameters(f"kappa0, alpha0, beta0 must be > 0, got {prior}")
    cp_prob, map_rl = _bocpd_core(x, hazard, int(r_max), mu0, kappa0, alpha0, beta0, int(lag))
    w = max(1, lag // 2) if window is None else int(window)
    peaks = pick_peaks(cp_prob, threshold=threshold, min_size=max(1, min_size), window=w)
    bkps = [*peaks, x.shape[0]]
    return BocpdResult(cp_prob=cp_prob, map_run_length=map_rl, bkps=bkps)
