"""Segment costs for changepoint search, apart from the search itself (ruptures' model).

Each cost class is registered by its ``model`` key and found with :func:`cost_factory`. A fitted
cost holds cumulative sums of the (centred) signal, so that the cost of any segment
``signal[start:end]`` is O(1) in the number of rows (O(d^3) in the number of signals for the
multivariate normal cost). The definitions replicate ruptures 1.1 exactly:

- ``"l2"`` (``CostL2``): ``sum_d sum_{i in seg} (x_id - mean_d)^2``, i.e. ``var(axis=0).sum() * m``
  with ``ddof=0``; ``min_size = 1``.
- ``"normal"`` (``CostNormal``): ``m * log(var + eps)`` for one signal (``ddof=0``) and
  ``m * logdet(cov + eps * I)`` for several (``np.cov``, i.e. ``ddof=1``), with ``eps = 1e-6``
  (ruptures' ``add_small_diag``, PR#198); ``min_size = 2``.

The signal is centred on its column means before the cumulative sums are taken: variance and
covariance are shift invariant, and centring keeps the sums small (less cancellation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from eraflow.common.jit import jit
from eraflow.stages.eras.exceptions import SignalDataError
from eraflow.stages.eras.fastlog import log_positive_normal

__all__ = [
    "BaseCost",
    "CostL2",
    "CostNormal",
    "batch_costs",
    "batch_scratch",
    "cost_factory",
    "segment_cost",
]

#: Integer codes of the numba cost kernels, by model key.
L2_CODE = 0
NORMAL_CODE = 1


@jit(inline="always")
def _logdet_spd(a: NDArray[np.float64]) -> float:  # pragma: no cover - numba
    """Log-determinant by LU with partial pivoting (as ``numpy.linalg.slogdet``), in place."""
    d = a.shape[0]
    logdet = 0.0
    for k in range(d):
        p = k
        best = abs(a[k, k])
        for i in range(k + 1, d):
            if abs(a[i, k]) > best:
                best = abs(a[i, k])
                p = i
        if p != k:
            for j in range(d):
                tmp = a[k, j]
                a[k, j] = a[p, j]
                a[p, j] = tmp
        piv = a[k, k]
        if piv == 0.0:
            return -np.inf
        logdet += np.log(abs(piv))
        for i in range(k + 1, d):
            f = a[i, k] / piv
            if f != 0.0:
                for j in range(k + 1, d):
                    a[i, j] -= f * a[k, j]
    return logdet


#: Segments of at most this many rows are costed by a direct two-pass sum over the rows:
#: for short segments the covariance is near-singular, so ``log(det(cov + eps))`` amplifies the
#: cancellation error of cumulative sums (ruptures computes two-pass too).
DIRECT_ROWS = 32


@jit()
def _direct_cov(
    x: NDArray[np.float64],
    start: int,
    end: int,
    ddof: int,
    work: NDArray[np.float64],
    diagonal_only: bool,
) -> None:  # pragma: no cover - numba
    """Two-pass (co)variances of ``x[start:end]`` into ``work``, allocating nothing.

    The means wait on the diagonal while the off-diagonal entries are summed, then each
    diagonal entry replaces its own mean; ``diagonal_only`` (l2) skips the off-diagonals.
    """
    d = x.shape[1]
    m = end - start
    for i in range(d):
        mu = 0.0
        for r in range(start, end):
            mu += x[r, i]
        work[i, i] = mu / m
    if not diagonal_only:
        for i in range(d):
            for j in range(i + 1, d):
                acc = 0.0
                for r in range(start, end):
                    acc += (x[r, i] - work[i, i]) * (x[r, j] - work[j, j])
                work[i, j] = acc / (m - ddof)
                work[j, i] = work[i, j]
    for i in range(d):
        mu = work[i, i]
        acc = 0.0
        for r in range(start, end):
            acc += (x[r, i] - mu) * (x[r, i] - mu)
        work[i, i] = acc / (m - ddof)


@jit(inline="always")
def packed_index(d: int, i: int, j: int) -> int:  # pragma: no cover - numba
    """Column of ``(i, j)``, ``i <= j``, in a row-major packed upper triangle of order ``d``."""
    return i * d - i * (i - 1) // 2 + (j - i)


@jit()
def segment_cost(
    code: int,
    x: NDArray[np.float64],
    s1: NDArray[np.float64],
    s2: NDArray[np.float64],
    eps: float,
    start: int,
    end: int,
    work: NDArray[np.float64],
) -> float:  # pragma: no cover - numba
    """Cost of ``signal[start:end]`` from cumulative sums.

    Parameters
    ----------
    code : int
        ``L2_CODE`` or ``NORMAL_CODE``.
    x : ndarray, shape (n, d)
        The centred signal (used directly for segments of at most ``DIRECT_ROWS`` rows).
    s1 : ndarray, shape (n + 1, d)
        Cumulative sums of the centred signal, ``s1[0] = 0``.
    s2 : ndarray, shape (n + 1, d (d + 1) / 2)
        Cumulative sums of the products ``x_i x_j`` for ``i <= j``, row-major upper triangle
        (see :func:`packed_index`; l2 uses only the diagonal).
    eps : float
        Diagonal added to the covariance by the normal cost.
    start, end : int
        Half-open row range, ``end - start >= 1`` (``>= 2`` for the normal cost).
    work : ndarray, shape (d, d)
        Scratch space for the covariance matrix.

    Returns
    -------
    float
        The segment cost.
    """
    d = s1.shape[1]
    m = end - start
    if m <= DIRECT_ROWS:
        ddof = 1 if (code == NORMAL_CODE and d > 1) else 0
        _direct_cov(x, start, end, ddof, work, code == L2_CODE)
        if code == L2_CODE:
            total = 0.0
            for k in range(d):
                total += work[k, k]
            return total * m
        if d == 1:
            return np.log(work[0, 0] + eps) * m
        for i in range(d):
            work[i, i] += eps
        return _logdet_spd(work) * m
    if code == L2_CODE:
        total = 0.0
        for k in range(d):
            a = s1[end, k] - s1[start, k]
            q = packed_index(d, k, k)
            v = (s2[end, q] - s2[start, q]) - a * a / m
            if v > 0.0:
                total += v
        return total
    if d == 1:
        a = s1[end, 0] - s1[start, 0]
        var = ((s2[end, 0] - s2[start, 0]) - a * a / m) / m
        if var < 0.0:
            var = 0.0
        return np.log(var + eps) * m
    q = 0
    for i in range(d):
        ai = s1[end, i] - s1[start, i]
        for j in range(i, d):
            aj = s1[end, j] - s1[start, j]
            c = ((s2[end, q] - s2[start, q]) - ai * aj / m) / (m - 1)
            work[i, j] = c
            work[j, i] = c
            q += 1
        if work[i, i] < 0.0:
            work[i, i] = 0.0
        work[i, i] += eps
    return _logdet_spd(work) * m


@jit()
def batch_scratch(
    n_dims: int, capacity: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:  # pragma: no cover
    """Scratch of :func:`batch_costs` for up to ``capacity`` starts, allocated once per search.

    One block of rows (the ``d`` sums, the ``d (d + 1) / 2`` moments, four per-start rows,
    the determinants and the pivots' reciprocals), the log's exponents, a ``d x d`` matrix.
    """
    n_packed = n_dims * (n_dims + 1) // 2
    return (
        np.empty((n_dims + n_packed + 6, capacity)),
        np.empty(capacity, dtype=np.int64),
        np.empty((n_dims, n_dims)),
    )


@jit()
def batch_costs(
    code: int,
    x: NDArray[np.float64],
    s1: NDArray[np.float64],
    s2: NDArray[np.float64],
    eps: float,
    starts: NDArray[np.int64],
    count: int,
    end: int,
    out: NDArray[np.float64],
    scratch: tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]],
) -> None:  # pragma: no cover - numba
    """``out[k] = segment_cost(..., starts[k], end, ...)`` for ``k < count``, vectorised.

    ``scratch`` comes from :func:`batch_scratch` with room for ``count`` starts.

    Why not a loop of :func:`segment_cost`: PELT costs every admissible start against one end,
    and per start the covariance, its factorisation and the log were scalar code with a
    division per entry and a libm log (46 ns per start with four signals). Here each step runs
    across all starts at once (structure of arrays, SIMD): the covariances scaled by
    reciprocals, a symmetric elimination without pivoting whose pivots multiply into the
    determinant, and one vectorised log (:func:`~eraflow.stages.eras.fastlog.log_positive_normal`)
    per start. Starts whose segment is short (``DIRECT_ROWS``), whose matrix is not numerically
    positive definite, or whose determinant leaves the normal range fall back to
    :func:`segment_cost`, so the values agree with it to rounding (about 1e-13 relative).
    """
    block, exponent, work = scratch
    d, n_packed = s1.shape[1], s2.shape[1]
    sums, moments = block[:d], block[d : d + n_packed]
    rows = block[d + n_packed : d + n_packed + 4]  # m, 1/m, 1/(m - ddof), smallest pivot
    det, factor = block[d + n_packed + 4], block[d + n_packed + 5]
    for k in range(count):
        t = starts[k]
        m = float(end - t)
        rows[0, k] = m
        rows[1, k] = 1.0 / m
        rows[2, k] = 1.0 / (m - 1.0) if (code == NORMAL_CODE and d > 1) else 1.0 / m
        rows[3, k] = np.inf
        for i in range(d):
            sums[i, k] = s1[end, i] - s1[t, i]
        if code == L2_CODE:
            for i in range(d):
                q = packed_index(d, i, i)
                moments[q, k] = s2[end, q] - s2[t, q]
        else:
            for q in range(n_packed):
                moments[q, k] = s2[end, q] - s2[t, q]
    if code == L2_CODE:
        for k in range(count):
            out[k] = 0.0
        for i in range(d):
            q = packed_index(d, i, i)
            for k in range(count):
                v = moments[q, k] - sums[i, k] * sums[i, k] * rows[1, k]
                out[k] += v if v > 0.0 else 0.0
    else:
        for i in range(d):
            for j in range(i, d):
                q = packed_index(d, i, j)
                for k in range(count):
                    moments[q, k] = (moments[q, k] - sums[i, k] * sums[j, k] * rows[1, k]) * rows[
                        2, k
                    ]
            q = packed_index(d, i, i)
            for k in range(count):
                c = moments[q, k]
                moments[q, k] = (c if c > 0.0 else 0.0) + eps
        for k in range(count):
            det[k] = 1.0
        for p in range(d):
            qp = packed_index(d, p, p)
            for k in range(count):
                piv = moments[qp, k]
                det[k] *= piv
                rows[3, k] = min(rows[3, k], piv)
                factor[k] = 1.0 / piv
            for i in range(p + 1, d):
                qpi = packed_index(d, p, i)
                for k in range(count):
                    sums[0, k] = moments[qpi, k] * factor[k]  # sums are spent: reuse a row
                for j in range(i, d):
                    qij = packed_index(d, i, j)
                    qpj = packed_index(d, p, j)
                    for k in range(count):
                        moments[qij, k] -= sums[0, k] * moments[qpj, k]
        for k in range(count):
            if not (rows[3, k] > 0.0 and 1e-300 < det[k] < 1e300):
                rows[3, k] = -1.0  # marked: costed by segment_cost below
                det[k] = 1.0  # a placeholder in the log's range
        log_positive_normal(det, out, exponent, count)
        for k in range(count):
            out[k] *= rows[0, k]
    for k in range(count):
        if rows[0, k] <= DIRECT_ROWS or not rows[3, k] > 0.0:
            out[k] = segment_cost(code, x, s1, s2, eps, starts[k], end, work)


class BaseCost(ABC):
    """A segment cost: ``fit(signal)`` once, then ``error(start, end)`` per segment.

    Subclasses set ``model`` (the registry key), ``min_size`` (the fewest rows a segment may
    have) and ``code`` (the numba kernel), and say how many free parameters a segment of ``d``
    signals has (for BIC penalties).
    """

    model: ClassVar[str]
    min_size: ClassVar[int]
    code: ClassVar[int]

    def __init__(self) -> None:
        self.x: NDArray[np.float64] = np.zeros((1, 1))
        self.s1: NDArray[np.float64] = np.zeros((1, 1))
        self.s2: NDArray[np.float64] = np.zeros((1, 1))
        self.eps = 0.0
        self.n_samples = 0
        self.n_dims = 0

    def fit(self, signal: NDArray[np.floating[Any]]) -> Self:
        """Take cumulative sums of a finite signal of shape (n,) or (n, d); return self."""
        x = np.asarray(signal, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[0] == 0:
            raise SignalDataError(
                f"signal must have shape (n,) or (n, d) with n > 0, got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise SignalDataError("signal contains NaN or inf: fill or drop missing rows first")
        x = x - x.mean(axis=0)
        n, d = x.shape
        self.x = np.ascontiguousarray(x)
        self.s1 = np.zeros((n + 1, d))
        np.cumsum(x, axis=0, out=self.s1[1:])
        upper_i, upper_j = np.triu_indices(d)  # row-major: the order of packed_index
        self.s2 = np.zeros((n + 1, upper_i.size))
        np.cumsum(x[:, upper_i] * x[:, upper_j], axis=0, out=self.s2[1:])
        self.n_samples, self.n_dims = n, d
        return self

    def error(self, start: int, end: int) -> float:
        """Return the cost of the half-open segment ``[start, end)`` of the fitted signal."""
        if end - start < self.min_size:
            raise SignalDataError(
                f"segment [{start}, {end}) has fewer than {self.min_size} rows ({self.model})"
            )
        work = np.empty((self.n_dims, self.n_dims))
        return float(segment_cost(self.code, self.x, self.s1, self.s2, self.eps, start, end, work))

    def sum_of_costs(self, bkps: list[int]) -> float:
        """Return the total cost of a segmentation given as ruptures-style breakpoints."""
        starts = [0, *bkps[:-1]]
        return float(sum(self.error(s, e) for s, e in zip(starts, bkps, strict=True)))

    @staticmethod
    @abstractmethod
    def n_params(n_dims: int) -> int:
        """Return the number of free parameters of one segment of ``n_dims`` signals."""


class CostL2(BaseCost):
    """Least squared deviation from the segment mean: detects changes in the mean."""

    model = "l2"
    min_size = 1
    code = L2_CODE

    @staticmethod
    def n_params(n_dims: int) -> int:
        """Return ``d``: one mean per signal."""
        return n_dims


class CostNormal(BaseCost):
    """Gaussian negative log-likelihood (up to constants): changes in mean and (co)variance.

    Parameters
    ----------
    add_small_diag : bool
        Add ``eps`` to the covariance diagonal, as ruptures does since 1.1.5, so that truly
        constant segments have a finite cost.
    eps : float
        The diagonal added; ruptures uses 1e-6 (in the units of the signal squared).
    """

    model = "normal"
    min_size = 2
    code = NORMAL_CODE

    def __init__(self, *, add_small_diag: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps if add_small_diag else 0.0

    @staticmethod
    def n_params(n_dims: int) -> int:
        """Return ``d + d (d + 1) / 2``: the mean vector and the covariance matrix."""
        return n_dims + n_dims * (n_dims + 1) // 2


def cost_factory(model: str, **params: Any) -> BaseCost:
    """Return an unfitted cost instance for a model key (``"l2"``, ``"normal"``).

    Raises
    ------
    eraflow.common.errors.ConfigError
        When no cost class has that key.
    """
    from eraflow.common.errors import ConfigError

    for cls in BaseCost.__subclasses__():
        if cls.model == model:
            return cls(**params)
    known = sorted(c.model for c in BaseCost.__subclasses__())
    raise ConfigError(f"unknown cost model {model!r}; choose one of {known}")
