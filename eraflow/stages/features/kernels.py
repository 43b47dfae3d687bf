"""Shared kernels of the feature calculators: the one module calculator modules compute with.

Every helper that more than one calculator module uses lives here (or in the leaf modules it
re-exports: :mod:`~eraflow.stages.features.spectral` for Welch's density and the Mexican-hat CWT,
:mod:`~eraflow.stages.features.cwt_peaks` for scipy's CWT peak count,
:mod:`~eraflow.stages.features.exact` for exact sums), so that a calculator module
imports only the registry and this module (plus :mod:`~eraflow.stages.features.arrays` and
:mod:`~eraflow.stages.features.segments`), never another calculator module. Why: registration is an
import side effect; calculator modules that import each other make the registration order, and
the feature order with it, depend on which module happened to be imported first, and close an
import circle through the registry.

Conventions shared by every function here:

- *device*: the work runs on the batch's array module ``xp`` (NumPy or CuPy) unless a docstring
  says it moves to the host; results stay on that module.
- *segments*: a flat array aligned with the batch's valid values ``b.x`` (or with any flat
  array) plus a segment id per element; results are per segment, shape ``(nseg,)``.
- *NaN*: inputs are the valid values (NaN already dropped) unless stated; a segment too short
  for a statistic gets NaN, never a warning.

Nothing here registers a feature, and nothing imports the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from eraflow.common.jit import jit
from eraflow.stages.features import arrays as ar
from eraflow.stages.features.cwt_peaks import count_cwt_peaks, ricker_transform
from eraflow.stages.features.exact import EPS
from eraflow.stages.features.segments import SegmentBatch
from eraflow.stages.features.spectral import cwt_head, welch_density

__all__ = [
    "EPS",
    "LINREG_ATTRS",
    "Moments",
    "Params",
    "count_cwt_peaks",
    "cwt_head",
    "histogram_entropy",
    "lagged_cov",
    "moment_tolerance",
    "on_cpu",
    "ricker_transform",
    "segment_linregress",
    "settle_segments",
    "single_row",
    "stack_rows",
    "welch_density",
]

logger = logging.getLogger(__name__)

Params = list[dict[str, Any]]
"""A calculator's parameter sets: one dict per requested feature (``[{}]`` without params)."""

Moments = tuple[int, Fraction, Fraction]
"""A segment's exact ``(n, sum, sum of squares)`` (see ``SegmentBatch.exact_moments``)."""

LINREG_ATTRS = ("pvalue", "rvalue", "intercept", "slope", "stderr")
"""The attributes of ``scipy.stats.linregress`` that tsfresh's linear-trend features name."""

_said: set[str] = set()


# ---- calculator results ---------------------------------------------------------------------
def stack_rows(b: SegmentBatch, rows: list[Any]) -> Any:
    """Stack one row per parameter set into a calculator result, ``(len(rows), b.nseg)`` float64.

    Each row is a per-segment array (bool or numeric, NumPy or the batch's module); it is moved
    to the batch's module and cast, so comparisons can be returned as 0.0/1.0.
    """
    return b.xp.stack([b.xp.asarray(r, dtype=np.float64) for r in rows])


def single_row(b: SegmentBatch, v: Any) -> Any:
    """The result of a calculator without parameters: ``v`` (``(b.nseg,)``) as ``(1, b.nseg)``."""
    return b.xp.asarray(v, dtype=np.float64)[None, :]


# ---- host fallback for sequential kernels ---------------------------------------------------
def on_cpu(b: SegmentBatch, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The batch's values and offsets on the host, for a sequential (numba or LAPACK) calculator.

    Returns ``(x, offsets)``: NumPy copies of ``b.x`` (valid values, NaN dropped) and
    ``b.offsets`` (length ``nseg + 1``). Inside a GPU batch this copies them from the device
    and logs once per calculator ``name`` that it runs on the CPU; the caller moves its result
    back with ``b.xp.asarray``. Why: some tsfresh features are left-to-right parses or one small
    fit per segment, which no batched array code expresses.
    """
    if not ar.is_numpy(b.xp) and name not in _said:
        _said.add(name)
        logger.info("%s is sequential: it runs on the CPU inside GPU batches", name)
    return ar.to_host(b.x), ar.to_host(b.offsets)


# ---- exact decisions near a threshold -------------------------------------------------------
def moment_tolerance(b: SegmentBatch) -> Any:
    """Per segment, a bound on the relative error of the variance and std, ``(n + 16) eps``.

    The centred values are exact to a few ulps (:attr:`SegmentBatch.centered`) and their
    squares are summed by ``bincount`` (or GPU atomics) in some order: recursive summation,
    whose error is at most ``(n - 1) eps / 2`` of the sum (Higham, *Accuracy and Stability of
    Numerical Algorithms*, 4.2); this is that bound with room to spare. A float decision
    farther than this from its threshold is the exact decision; closer ones are settled exactly
    (:func:`settle_segments`, or per value with ``SegmentBatch.exact_moments``).
    """
    return (b.n + 16.0) * EPS


def settle_segments(
    b: SegmentBatch, flag: Any, near: Any, decide: Callable[[int, Moments], bool]
) -> Any:
    """``flag`` (one bool per segment) with the segments marked ``near`` decided exactly.

    ``decide(segment, moments)`` gets the segment id and its exact moments (host). The
    segments near a threshold are few (ties in quantised data), so this runs on the host; the
    result is the exact decision on either module, whatever order the GPU summed in.
    """
    xp = b.xp
    idx = xp.nonzero(near)[0]
    if int(idx.shape[0]) == 0:
        return flag
    segs = ar.to_host(idx)
    got = [decide(int(s), mo) for s, mo in zip(segs, b.exact_moments(segs), strict=True)]
    out = flag.copy()
    out[idx] = xp.asarray(np.array(got, dtype=bool))
    return out


# ---- moments --------------------------------------------------------------------------------
def lagged_cov(b: SegmentBatch, lag: int) -> Any:
    """Per segment, ``sum_t (x_t - mean)(x_{t+lag} - mean)`` over pairs inside the segment.

    Unnormalised (callers divide by ``n - lag`` and/or the variance); 0 where the segment has
    no pair at this lag. Built on the batch's centred values (two-pass, exact for constants), so
    the autocorrelation and the partial autocorrelation read the same numbers.
    """
    if not ar.is_numpy(b.xp):
        i, sid = b.pairs(lag)
        d = b.centered
        return ar.seg_sum(b.xp, d[i] * d[i + lag], sid, b.nseg)
    table = b.__dict__.get("_lagged_covs")
    if table is None or table.shape[1] <= lag:
        wider = max(lag + 1, LAGS_AT_ONCE + 1, 2 * (0 if table is None else table.shape[1]))
        table = _lagged_covs(b.centered, b.start, b.n_int, wider)
        table.flags.writeable = False  # shared by every caller of this batch
        b.__dict__["_lagged_covs"] = table
    return table[:, lag]


LAGS_AT_ONCE = 40
"""Lags whose covariances one pass computes on the CPU (agg_autocorrelation's maxlag, which
covers autocorrelation's and partial_autocorrelation's): one compiled loop per segment and
lag, in the order the per-lag ``bincount`` summed, so the same numbers, instead of an index
array, a gather and a ``bincount`` per lag (0.040 -> 0.00x s on 8 month-long segments)."""


@jit()
def _lagged_covs(d: Any, start: Any, n: Any, lags: int) -> Any:  # pragma: no cover - numba
    out = np.zeros((start.shape[0], lags))
    for s in range(start.shape[0]):
        first, m = start[s], n[s]
        for lag in range(min(lags, m)):
            total = 0.0
            for t in range(first, first + m - lag):
                total += d[t] * d[t + lag]
            out[s, lag] = total
    return out


# ---- histograms -----------------------------------------------------------------------------
def histogram_entropy(xp: Any, values: Any, seg: Any, nseg: int, nb: int) -> Any:
    """Per segment, the entropy of ``nb`` NumPy-histogram bins (see :func:`_histogram_entropy`).

    Inside a GPU batch it runs on the host and moves the result back: on an H200 (CuPy 14) its
    array code produced a negative bin index in ``binned_entropy`` and ``fourier_entropy``
    (``bincount`` refused it), so those features failed every GPU batch. Until that is found
    with a GPU at hand, the host path keeps them computed, and equal to the CPU's.
    """
    if ar.is_numpy(xp):
        return _histogram_entropy(np, values, seg, nseg, nb)
    if "histogram_entropy" not in _said:
        _said.add("histogram_entropy")
        logger.info("histogram_entropy runs on the CPU inside GPU batches")
    host = _histogram_entropy(np, ar.to_host(values), ar.to_host(seg), nseg, nb)
    return xp.asarray(host)


def _histogram_entropy(xp: Any, values: Any, seg: Any, nseg: int, nb: int) -> Any:
    """Per segment, ``-sum(p log p)`` of ``np.histogram(values, bins=nb)`` shares (p > 0).

    ``values`` (flat, NaN-free, on ``xp``) with segment ids ``seg`` in ``[0, nseg)``; returns
    ``(nseg,)``. NumPy's histogram, reproduced: edges ``linspace(min, max, nb + 1)``
    (``min - 0.5``, ``max + 0.5`` for a constant segment), the bin from the scaled value, then
    the one-off corrections against the edges, the last bin closed on the right. Shared by
    ``binned_entropy`` and ``fourier_entropy`` (tsfresh bins Welch's density the same way).
    """
    count = ar.seg_count(xp, xp.ones(values.shape[0], dtype=bool), seg, nseg).astype(np.float64)
    first = ar.seg_min(xp, values, seg, nseg)
    last = ar.seg_max(xp, values, seg, nseg)
    same = first == last
    first = xp.where(same, first - 0.5, first)
    last = xp.where(same, last + 0.5, last)
    step = (last - first) / nb
    jj = xp.arange(nb + 1, dtype=np.float64)
    edges = first[:, None] + jj[None, :] * step[:, None]
    edges[:, -1] = last
    norm = nb / (last - first)
    f = (values - first[seg]) * norm[seg]
    idx = xp.clip(xp.nan_to_num(f, nan=0.0), 0, nb).astype(np.int64)
    idx = xp.where(idx == nb, nb - 1, idx)
    flat_edges = edges.reshape(-1)
    base = seg * (nb + 1)
    dec = values < flat_edges[base + idx]
    idx = idx - dec
    inc = (values >= flat_edges[base + idx + 1]) & (idx != nb - 1)
    idx = idx + inc
    counts = xp.bincount(seg * nb + idx, minlength=nseg * nb)[: nseg * nb]
    probs = counts.reshape(nseg, nb).astype(np.float64) / xp.where(count > 0, count, 1.0)[:, None]
    probs = xp.where(probs == 0, 1.0, probs)
    return -(probs * xp.log(probs)).sum(axis=1)


# ---- linear regression ----------------------------------------------------------------------
def segment_linregress(
    xp: Any, y: Any, t: Any, sid: Any, nseg: int, m: Any, *, evenly_spaced: bool = True
) -> dict[str, Any]:
    """``scipy.stats.linregress(t, y)`` per segment, vectorised.

    ``y`` and ``t`` are flat, NaN-free and aligned, ``sid`` their segment ids (sorted, in
    ``[0, nseg)``); returns ``{attr: (nseg,)}`` for every name in :data:`LINREG_ATTRS`, NaN for
    segments with fewer than two points. ``t`` is the 0-based position of each ``y`` in its
    segment (``evenly_spaced``: it is ``0..m-1`` and its mean is ``(m-1)/2``; otherwise any
    abscissa, its mean summed), ``m`` the segment length (float array). Moments are centred (no
    cancellation on large offsets). The p-value needs Student's t distribution: it is evaluated
    on the host with SciPy (one value per segment) and moved back to ``xp``. Shared by the
    index, chunk-aggregate and timewise trends.
    """
    safe_m = xp.where(m > 0, m, 1.0)
    tm = (m - 1.0) / 2.0 if evenly_spaced else ar.seg_sum(xp, t, sid, nseg) / safe_m
    # shift by the first y of the segment for an accurate mean
    first_idx = xp.searchsorted(sid, xp.arange(nseg), side="left")
    has = m > 0
    y0 = (
        xp.where(has, y[xp.clip(first_idx, 0, max(int(y.shape[0]) - 1, 0))], 0.0)
        if int(y.shape[0])
        else xp.zeros(nseg)
    )
    ym = y0 + ar.seg_sum(xp, y - y0[sid], sid, nseg) / safe_m
    dy = y - ym[sid]
    dt = t - tm[sid]
    ssxm = ar.seg_sum(xp, dt * dt, sid, nseg) / safe_m
    ssxym = ar.seg_sum(xp, dt * dy, sid, nseg) / safe_m
    ssym = ar.seg_sum(xp, dy * dy, sid, nseg) / safe_m
    degenerate = (ssxm == 0.0) | (ssym == 0.0)
    with np.errstate(all="ignore"):
        r = ssxym / xp.sqrt(ssxm * ssym)
        r = xp.clip(r, -1.0, 1.0)
        r = xp.where(degenerate, xp.where(ssxym == 0, np.nan, 0.0), r)
        slope = ssxym / ssxm
        intercept = ym - slope * tm
        df = m - 2.0
        tiny = 1.0e-20
        tstat = r * xp.sqrt(df / ((1.0 - r + tiny) * (1.0 + r + tiny)))
        stderr = xp.sqrt((1.0 - r**2) * ssym / ssxm / df)
    from scipy import special

    t_h = ar.to_host(tstat)
    df_h = ar.to_host(df)
    with np.errstate(all="ignore"):
        p_h = 2.0 * special.stdtr(np.where(df_h > 0, df_h, 1.0), -np.abs(t_h))
    pvalue = xp.asarray(np.where(df_h > 0, p_h, np.nan))
    # n == 2: scipy's special case
    two = m == 2
    last_idx = xp.clip(first_idx + 1, 0, max(int(y.shape[0]) - 1, 0))
    if int(y.shape[0]):
        eq = y[xp.clip(first_idx, 0, int(y.shape[0]) - 1)] == y[last_idx]
    else:
        eq = xp.zeros(nseg, dtype=bool)
    pvalue = xp.where(two, xp.where(eq, 1.0, 0.0), pvalue)
    stderr = xp.where(two, 0.0, stderr)
    out = {"slope": slope, "intercept": intercept, "rvalue": r, "pvalue": pvalue, "stderr": stderr}
    single = m < 2
    return {k: xp.where(single, np.nan, v) for k, v in out.items()}
