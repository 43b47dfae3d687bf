"""PELT (Killick et al. 2012) with ruptures' exact admissible-set and pruning semantics.

:func:`pelt` gives the same breakpoints as
``ruptures.Pelt(model=model, min_size=min_size, jump=1).fit(x).predict(pen=pen)``:

- candidate ends ``bkp`` run over ``min_size, ..., n - 1`` and then ``n``;
- at each ``bkp`` the point ``bkp - min_size`` joins the admissible set; points in
  ``1 .. min_size - 1`` (no partition of ``x[:t]`` exists) are dropped;
- ``F(bkp) = min_t F(t) + (cost(t, bkp) + pen)``, ties going to the smallest ``t``;
- ``t`` stays admissible iff ``F(t) + cost(t, bkp) + pen <= F(bkp) + pen``.

With ``min_size > 1`` (and ruptures' ``ddof=1`` multivariate normal cost) this pruning is not
guaranteed optimal, which is why it is replicated rather than replaced by an exact search.
Floating point differs from ruptures only in the cost's last bits (cumulative sums vs.
two-pass variance), so results can differ only on near-exact ties.

:func:`partition_candidates` is exact optimal partitioning restricted to a candidate set of
boundaries; it is what nests coarse era levels inside fine ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from eraflow.common.jit import jit
from eraflow.stages.eras.costs import (
    BaseCost,
    batch_costs,
    batch_scratch,
    cost_factory,
    segment_cost,
)
from eraflow.stages.eras.exceptions import BadSegmentationParameters

__all__ = ["bic_penalty", "partition_candidates", "pelt", "pelt_fitted"]


@jit()
def _pelt_core(
    code: int,
    x: NDArray[np.float64],
    s1: NDArray[np.float64],
    s2: NDArray[np.float64],
    eps: float,
    pen: float,
    min_size: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:  # pragma: no cover - numba
    """Run PELT (jump=1); return (last change before each end, optimal cost F).

    The admissible starts are costed together against each end (:func:`batch_costs`).
    """
    n = s1.shape[0] - 1
    d = s1.shape[1]
    scratch = batch_scratch(d, n + 1)
    costs = np.empty(n + 1)
    f = np.full(n + 1, np.inf)
    f[0] = 0.0
    has = np.zeros(n + 1, dtype=np.bool_)
    has[0] = True
    last = np.zeros(n + 1, dtype=np.int64)
    adm = np.empty(n + 1, dtype=np.int64)
    vals = np.empty(n + 1)
    n_adm = 0
    first = min_size if min_size < n else n
    bkp = first
    while True:
        adm[n_adm] = bkp - min_size
        n_adm += 1
        if not has[adm[n_adm - 1]]:
            # ruptures skips it, and zip() then drops it: it is always the newest point
            n_adm -= 1
        batch_costs(code, x, s1, s2, eps, adm, n_adm, bkp, costs, scratch)
        best = np.inf
        best_t = -1
        for k in range(n_adm):
            v = f[adm[k]] + (costs[k] + pen)
            vals[k] = v
            if v < best:
                best = v
                best_t = adm[k]
        f[bkp] = best
        last[bkp] = best_t
        has[bkp] = True
        thr = best + pen
        n_val = n_adm
        n_adm = 0
        for k in range(n_val):
            if vals[k] <= thr:
                adm[n_adm] = adm[k]
                n_adm += 1
        if bkp == n:
            break
        bkp = bkp + 1 if bkp + 1 < n else n
    return last, f


def _backtrack(last: NDArray[np.int64], n: int) -> list[int]:
    bkps = [n]
    t = n
    while True:
        t = int(last[t])
        if t <= 0:
            break
        bkps.append(t)
    return sorted(bkps)


def pelt_fitted(cost: BaseCost, *, pen: float, min_size: int = 2) -> list[int]:
    """Run PELT on an already fitted cost (see :func:`pelt`)."""
    n = cost.n_samples
    min_size = max(int(min_size), cost.min_size)
    if pen < 0 or not np.isfinite(pen):
        raise BadSegmentationParameters(f"penalty must be finite and >= 0, got {pen}")
    if n < min_size:
        raise BadSegmentationParameters(
            f"{n} rows cannot hold one segment of min_size={min_size}: use a smaller min_size"
        )
    last, _ = _pelt_core(cost.code, cost.x, cost.s1, cost.s2, cost.eps, float(pen), min_size)
    return _backtrack(last, n)


def pelt(
    signal: NDArray[np.floating[Any]],
    *,
    model: str = "normal",
    pen: float,
    min_size: int = 2,
    params: dict[str, Any] | None = None,
) -> list[int]:
    """Penalised changepoint search (PELT, jump=1), equal to ruptures' ``Pelt``.

    Parameters
    ----------
    signal : ndarray, shape (n,) or (n, d)
        Finite values, one row per grid step (missing rows must be filled or dropped first).
    model : str
        Cost model key: ``"normal"`` (mean and variance change) or ``"l2"`` (mean change).
    pen : float
        Penalty per segment, in the cost's units (see :func:`bic_penalty`).
    min_size : int
        Fewest rows per segment; raised to the cost's own minimum (2 for ``"normal"``).
    params : dict, optional
        Keyword arguments of the cost class (e.g. ``{"add_small_diag": False}``).

    Returns
    -------
    list of int
        Sorted breakpoints (exclusive segment ends), the last one equal to ``n``.

    Raises
    ------
    BadSegmentationParameters
        When ``n < min_size`` or the penalty is negative.
    """
    cost = cost_factory(model, **(params or {})).fit(signal)
    return pelt_fitted(cost, pen=pen, min_size=min_size)


def bic_penalty(cost: BaseCost, *, n_rows: int, scale: float = 1.0) -> float:
    """BIC-style penalty ``scale * n_params(d) * log(n_rows)``.

    The normal cost is ``-2 log L`` up to constants, so ``scale = 1`` is the Schwarz criterion;
    for l2 on unit-variance signals likewise. Real greenhouse series are strongly autocorrelated,
    so useful scales are much larger than 1.
    """
    return float(scale * cost.n_params(cost.n_dims) * np.log(max(n_rows, 2)))


@jit()
def _partition_core(
    code: int,
    x: NDArray[np.float64],
    s1: NDArray[np.float64],
    s2: NDArray[np.float64],
    eps: float,
    cands: NDArray[np.int64],
    pen: float,
    min_size: int,
) -> NDArray[np.int64]:  # pragma: no cover - numba
    """Optimal partitioning over candidate boundaries ``cands`` (``cands[0] = 0``, last = n)."""
    k = cands.shape[0]
    d = s1.shape[1]
    work = np.empty((d, d))
    f = np.full(k, np.inf)
    f[0] = 0.0
    last = np.full(k, -1, dtype=np.int64)
    for j in range(1, k):
        e = cands[j]
        for i in range(j):
            if f[i] == np.inf:
                continue
            s = cands[i]
            if e - s < min_size:
                break
            v = f[i] + (segment_cost(code, x, s1, s2, eps, s, e, work) + pen)
            if v < f[j]:
                f[j] = v
                last[j] = i
    return last


def partition_candidates(
    cost: BaseCost, candidates: list[int], *, pen: float, min_size: int
) -> list[int]:
    """Exact penalised segmentation whose breakpoints are a subset of ``candidates``.

    Parameters
    ----------
    cost : BaseCost
        A fitted cost on the full-resolution signal (segment costs use every row).
    candidates : list of int
        Sorted breakpoints of a finer segmentation, ending with ``n``.
    pen : float
        Penalty per segment.
    min_size : int
        Fewest rows per segment.

    Returns
    -------
    list of int
        Sorted breakpoints ending with ``n``; ``[n]`` (one segment) when ``n < 2 * min_size``.
    """
    n = cost.n_samples
    min_size = max(int(min_size), cost.min_size)
    cands = np.array(sorted({0, *[int(c) for c in candidates], n}), dtype=np.int64)
    if n < 2 * min_size or cands.shape[0] <= 2:
        return [n]
    last = _partition_core(
        cost.code, cost.x, cost.s1, cost.s2, cost.eps, cands, float(pen), min_size
    )
    if last[-1] < 0:  # no admissible split at all: keep the whole series
        return [n]
    bkps = []
    j = cands.shape[0] - 1
    while j > 0:
        bkps.append(int(cands[j]))
        j = int(last[j])
    return sorted(bkps)
