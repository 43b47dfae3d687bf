"""The batch every calculator sees: many (era, sensor) segments in one flat array.

Layout: ``grid`` is the concatenation of every segment's grid slice (NaN where a value stayed
missing), ``grid_offsets`` (length nseg + 1) delimit them. The valid values (NaN dropped, order
kept) form a second flat array ``x`` with its own ``offsets``. Shared intermediate results
(exact means, the per-segment sort, FFTs) are cached properties, computed once per batch and
only when a calculator asks for them. Nothing here loops over segments in Python.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cached_property
from types import ModuleType
from typing import Any

import numpy as np

from eraflow.stages.features import arrays as ar
from eraflow.stages.features.exact import ExactMean, exact_mean, exact_moments, mean_sign


class SegmentBatch:
    """Flat segments on one array module (NumPy or CuPy) plus cached shared statistics.

    Parameters
    ----------
    xp
        Array module (``numpy`` or ``cupy``).
    grid
        Flat float64 grid values, NaN where missing (device array).
    grid_offsets
        int64 offsets into ``grid``, length ``nseg + 1``, non-decreasing.
    filled
        Optional flat bool array aligned with ``grid``: True where gap-fill produced the value.
    step_ns
        Grid step in nanoseconds (needed by time-window features), or None.
    native_stride
        Grid rows per row of this batch when it holds sensors on their native grid (one
        reading every ``native_stride`` grid steps; ``step_ns`` is then the native step).
    """

    def __init__(
        self,
        xp: ModuleType,
        grid: Any,
        grid_offsets: Any,
        *,
        filled: Any | None = None,
        step_ns: int | None = None,
        native_stride: int = 1,
    ) -> None:
        self.xp = xp
        self.grid = grid.astype(np.float64, copy=False)
        self.grid_offsets = grid_offsets.astype(np.int64, copy=False)
        self.nseg = int(grid_offsets.shape[0]) - 1
        self.filled = filled
        self.step_ns = step_ns
        self.native_stride = native_stride
        self.grid_len = xp.diff(self.grid_offsets)
        self.grid_seg = ar.segment_ids(xp, self.grid_offsets, int(self.grid.shape[0]))
        valid = ~xp.isnan(self.grid)
        self.grid_valid = valid
        self.x = self.grid[valid]
        self.seg = self.grid_seg[valid]
        self.n_int = xp.bincount(self.seg, minlength=self.nseg)[: self.nseg].astype(np.int64)
        self.n = self.n_int.astype(np.float64)
        self.offsets = xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(self.n_int)])
        self.start = self.offsets[:-1]
        self.end = self.offsets[1:]
        self.total = int(self.x.shape[0])
        self.pos = xp.arange(self.total, dtype=np.int64) - self.start[self.seg]
        self.nonempty = self.n_int > 0

    # ---- helpers -------------------------------------------------------------------------
    def sum(self, v: Any) -> Any:
        """Per-segment sum of an array aligned with ``x``."""
        return ar.seg_sum(self.xp, v, self.seg, self.nseg)

    def per_value(self, v: Any) -> Any:
        """``v[seg]`` for a per-segment array ``v``: its value at every valid value."""
        return ar.seg_broadcast(self.xp, v, self.seg, self.n_int)

    def count(self, mask: Any) -> Any:
        """Per-segment number of True values of a mask aligned with ``x``."""
        return ar.seg_count(self.xp, mask, self.seg, self.nseg)

    def div(self, a: Any, b: Any) -> Any:
        """``a / b`` with NaN (not a warning) where ``b`` is 0."""
        xp = self.xp
        safe = xp.where(b == 0, 1.0, b)
        return xp.where(b == 0, np.nan, a / safe)

    def at_start(self, v: Any, k: int = 0) -> Any:
        """``v[start + k]`` per segment (NaN where the segment has no element ``k``)."""
        xp = self.xp
        idx = self.start + k
        ok = self.n_int > k
        idx = xp.where(ok, idx, 0)
        if self.total == 0:
            return xp.full(self.nseg, np.nan)
        return xp.where(ok, v[idx], np.nan)

    def at_end(self, v: Any, k: int = 1) -> Any:
        """``v[end - k]`` per segment (NaN where the segment is shorter than ``k``)."""
        xp = self.xp
        ok = self.n_int >= k
        idx = xp.where(ok, self.end - k, 0)
        if self.total == 0:
            return xp.full(self.nseg, np.nan)
        return xp.where(ok, v[idx], np.nan)

    def pairs(self, lag: int) -> tuple[Any, Any]:
        """Indices ``i`` whose ``i + lag`` is in the same segment, and their segment ids."""
        xp = self.xp
        if lag == 0:
            return xp.arange(self.total), self.seg
        i = xp.nonzero(self.pos + lag < self.n_int[self.seg])[0]
        return i, self.seg[i]

    def head(self, width: int) -> Any:
        """The first ``width`` values of every segment, ``(nseg, width)``, zero-padded."""
        xp = self.xp
        k = xp.arange(width)[None, :]
        ok = k < self.n_int[:, None]
        if self.total == 0:
            return xp.zeros((self.nseg, width))
        idx = xp.minimum(self.start[:, None] + k, self.total - 1)
        return xp.where(ok, self.x[idx], 0.0)

    # ---- shared statistics (computed once, on first use) ---------------------------------
    @cached_property
    def exact(self) -> ExactMean:
        """The exact sums and the correctly rounded mean of every segment (see :mod:`.exact`).

        Why: a count against the mean flips when the mean is one rounding step off; an exact
        sum fixes the mean, its remainder and the sign of every tie, on either module alike.
        """
        return exact_mean(self.xp, self.x, self.seg, self.offsets, self.n_int, self.nseg)

    @cached_property
    def mean(self) -> Any:
        """Mean of the valid values: the double nearest ``Fraction(sum) / n`` (:mod:`.exact`)."""
        return self.exact.mean

    @cached_property
    def mean_sign(self) -> Any:
        """Exact sign (int8: -1, 0, 1) of ``x - exact mean`` per value, for counts against it."""
        mean = self.per_value(self.mean)
        return mean_sign(self.x, mean, self.per_value(self.exact.tie))

    @cached_property
    def centered(self) -> Any:
        """``x - mean`` per element, against the mean carried to ~106 bits (``mean + lo``).

        ``(x - mean) - lo`` keeps the digits that ``x - mean`` alone would lose when the mean
        is rounded at the scale of a large offset (1e9 + 1e-3 noise); it is exactly 0 where
        ``x`` equals the exact mean, and its sign is that of :attr:`mean_sign`.
        """
        return (self.x - self.per_value(self.mean)) - self.per_value(self.exact.lo)

    def exact_moments(self, segs: np.ndarray) -> list[tuple[int, Fraction, Fraction]]:
        """Exact ``(n, sum, sum of squares)`` of the segments ``segs`` (host ids), cached.

        For the few segments whose decision lies within rounding of a threshold; each is
        computed once per batch, however many calculators and parameters ask.
        """
        cache: dict[int, tuple[int, Fraction, Fraction]] = self.__dict__.setdefault("_moments", {})
        todo = [int(s) for s in segs if int(s) not in cache]
        if todo:
            off = ar.to_host(self.offsets)
            for s in todo:
                cache[s] = exact_moments(ar.to_host(self.x[int(off[s]) : int(off[s + 1])]))
        return [cache[int(s)] for s in segs]

    @cached_property
    def m2(self) -> Any:
        """Sum of squared deviations from the mean, per segment."""
        return self.sum(self.centered**2)

    @cached_property
    def var(self) -> Any:
        """Population variance (ddof 0, as ``np.var``)."""
        return self.div(self.m2, self.n)

    @cached_property
    def std(self) -> Any:
        """Population standard deviation (ddof 0, as ``np.std``)."""
        return self.xp.sqrt(self.var)

    @cached_property
    def order(self) -> Any:
        """Permutation sorting ``x`` by (segment, value): two stable argsorts, no segment loop."""
        xp = self.xp
        o = ar.stable_argsort(xp, self.x)
        return o[ar.stable_argsort(xp, self.seg[o])]

    @cached_property
    def sorted(self) -> Any:
        """``x`` sorted ascending within each segment (same offsets as ``x``)."""
        return self.x[self.order]

    @cached_property
    def minimum(self) -> Any:
        """Per-segment minimum."""
        return self.at_start(self.sorted)

    @cached_property
    def maximum(self) -> Any:
        """Per-segment maximum."""
        return self.at_end(self.sorted)

    def quantile(self, q: float) -> Any:
        """``np.quantile(x, q)`` (linear) per segment, reproducing NumPy's lerp exactly."""
        xp = self.xp
        virt = q * (self.n - 1.0)
        lo = xp.floor(virt)
        gamma = virt - lo
        lo_i = xp.clip(lo.astype(np.int64), 0, xp.maximum(self.n_int - 1, 0))
        hi_i = xp.minimum(lo_i + 1, xp.maximum(self.n_int - 1, 0))
        if self.total == 0:
            return xp.full(self.nseg, np.nan)
        a = self.sorted[xp.minimum(self.start + lo_i, self.total - 1)]
        b = self.sorted[xp.minimum(self.start + hi_i, self.total - 1)]
        diff = b - a
        res = xp.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)
        return xp.where(self.nonempty, res, np.nan)

    @cached_property
    def median(self) -> Any:
        """``np.median`` per segment (mean of the two middle values when n is even)."""
        xp = self.xp
        if self.total == 0:
            return xp.full(self.nseg, np.nan)
        lo = self.start + xp.maximum(self.n_int - 1, 0) // 2
        hi = self.start + self.n_int // 2
        lo = xp.minimum(lo, self.total - 1)
        hi = xp.minimum(hi, self.total - 1)
        a, b = self.sorted[lo], self.sorted[hi]
        return xp.where(self.nonempty, (a + b) / 2.0, np.nan)

    @cached_property
    def runs(self) -> dict[str, Any]:
        """Runs of equal values in the per-segment sort: the ``np.unique(..., return_counts)``.

        Keys: ``value`` (unique value), ``count``, ``seg`` (segment of the run).
        """
        xp = self.xp
        s = self.sorted
        pos_sorted = self.pos  # the sort keeps segment offsets, so positions are the same
        if self.total == 0:
            empty_f = xp.zeros(0, dtype=np.float64)
            return {"value": empty_f, "count": empty_f, "seg": xp.zeros(0, dtype=np.int64)}
        new = xp.ones(self.total, dtype=bool)
        new[1:] = s[1:] != s[:-1]
        new = new | (pos_sorted == 0)
        run_id = xp.cumsum(new) - 1
        nruns = int(run_id[-1]) + 1
        count = xp.bincount(run_id, minlength=nruns).astype(np.float64)
        return {"value": s[new], "count": count, "seg": self.seg[new]}

    @cached_property
    def diff(self) -> tuple[Any, Any]:
        """First differences within segments: ``(values, segment ids)``."""
        i, sid = self.pairs(1)
        return self.x[i + 1] - self.x[i], sid

    def rfft_groups(self) -> list[tuple[Any, Any]]:
        """``rfft`` of every segment, batched per distinct length.

        An FFT of a zero-padded series is a different FFT, so segments cannot simply be padded
        to one length: they are grouped by exact length, and each group is one batched 2-D
        ``xp.fft.rfft`` (one launch per distinct length, never one per segment).
        """
        cached = getattr(self, "_rfft_cache", None)
        if cached is not None:
            return cached
        xp = self.xp
        lengths = ar.to_host(self.n_int)
        groups = []
        for length in np.unique(lengths[lengths > 0]):
            segs_h = np.nonzero(lengths == length)[0]
            segs = xp.asarray(segs_h)
            idx = self.start[segs][:, None] + xp.arange(int(length))[None, :]
            groups.append((segs, xp.fft.rfft(self.x[idx], axis=1)))
        self._rfft_cache = groups
        return groups


def lengths_to_offsets(xp: ModuleType, lengths: Any) -> Any:
    """Offsets (len n + 1, int64) of segments of the given lengths."""
    lengths = xp.asarray(lengths, dtype=np.int64)
    return xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(lengths)])
