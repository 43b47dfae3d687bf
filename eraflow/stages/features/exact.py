"""Exact per-segment sums, the correctly rounded mean, and exact decisions against it.

Why: a feature that counts values above the mean flips whenever the computed mean is one
rounding step off the exact mean ``Fraction(sum) / n``. NumPy's pairwise mean (tsfresh's) puts a
constant 80.03 era at 80.02999999999997, so tsfresh counts all 66 values "above the mean"; a
running or shifted sum rounds on the way (0.0, 5 x 0.05, 0.1: 0.049999999999999996, not the
exact 0.05, and six values "above" it). Here every sum
is exact and every comparison with the mean is decided exactly, on NumPy and CuPy alike, with
results that do not depend on summation order (so CPU and GPU counts are bit for bit the same).

How, in three steps, all vectorised over segments (no loop over segments):

1. :func:`segment_sum_expansion`: Rump, Ogita and Oishi's error-free extraction ("Accurate
   floating-point summation", SIAM J. Sci. Comput. 31, 2008, Alg. 3.2). With ``sigma`` a power of
   two at least ``2^M max|p|`` of its segment (``2^M >= 2n``), ``q = (sigma + p) - sigma`` is a
   multiple of ``2^-53 sigma``, ``p - q`` is exact, and the ``q`` of a segment add up exactly in
   any order (``bincount``, or CUDA atomics). Repeating on the remainders (``sigma`` shrinks by
   ``2^(M-53)`` per level) gives the exact sum as a few doubles per segment, usually 2-3 levels.
2. :func:`expansion_sign`: the exact sign of a short sum of doubles (the sum minus ``n * m``
   formed exactly by Dekker's product), by repeated error-free two-sum sweeps until a
   certificate holds; the rare undecided segment is settled with :class:`fractions.Fraction`.
3. :func:`exact_mean`: the mean ``m`` (the double nearest to the exact mean, up to a
   1e-16-ulp neighbourhood of a rounding midpoint: always one of the two doubles around it), its
   remainder ``m_lo`` (``m + m_lo`` carries the mean to about 106 bits, for centring) and the
   exact sign of ``sum - n m``. A value ``x`` is above the exact mean iff ``x > m``, or ``x == m``
   and that sign is negative: no double lies strictly between ``m`` and the exact mean.

Decisions that involve the variance (values beyond ``r`` standard deviations, a variance above
one) cannot be exact in floating point; :func:`exact_moments` gives the exact ``(n, sum, sum of
squares)`` of a few segments on the host, for the calculators to settle the values that lie
within a rigorous error bound of their threshold.

Segments holding a non-finite value, or values above ``2^900`` (``sigma`` would overflow), are
summed the plain way and compared with the plain mean: there is no exact answer to keep there.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

from eraflow.stages.features import arrays as ar

__all__ = [
    "EPS",
    "ExactMean",
    "exact_mean",
    "exact_moments",
    "expansion_sign",
    "segment_sum_expansion",
    "two_prod",
    "two_sum",
]

EPS = float(np.finfo(np.float64).eps)
"""``2^-52``: the spacing of doubles at 1 (twice the unit roundoff)."""

_SPLIT = 134217729.0  # 2^27 + 1: Veltkamp's splitter for 53-bit doubles
_HUGE = 2.0**900  # above this, sigma or Dekker's split would overflow: plain path
_TINY = 2.0**-900  # below this, Dekker's product may underflow: fractions instead
_MAX_LEVELS = 200  # each level resolves >= 53 - M bits; 2,100 bits span every double


# ---- error-free transformations (elementwise; no FMA, so NumPy and CuPy agree bit for bit) -------
def two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and ``e`` with ``a + b == s + e`` exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _split(a: Any) -> tuple[Any, Any]:
    """Veltkamp's split of ``a`` into two 26-bit halves, ``a == hi + lo`` exactly."""
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    """Dekker's TwoProduct: ``p = fl(a b)`` and ``e`` with ``a b == p + e`` exactly.

    Written without a fused multiply-add (NumPy has none) so both modules round identically;
    exact unless a factor exceeds about ``2^996`` or the product underflows.
    """
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


# ---- exact sums ----------------------------------------------------------------------------------
def _reduce(xp: ModuleType, ufunc: Any, v: Any, seg: Any, offsets: Any, nseg: int) -> Any:
    """Per-segment ``ufunc.reduce`` of ``v`` (laid out by ``offsets``), 0 for empty segments.

    NumPy's ``reduceat`` over the non-empty segments' starts runs several times faster than
    ``bincount`` or ``ufunc.at``; CuPy has no ``reduceat``, and its scatter kernels are fast.
    """
    if not ar.is_numpy(xp):
        if ufunc is np.maximum:
            return ar.seg_max(xp, v, seg, nseg, empty=0.0)
        return ar.seg_sum(xp, v, seg, nseg)
    out = np.zeros(nseg)
    full = np.nonzero(offsets[1:] > offsets[:-1])[0]
    if full.size:
        out[full] = ufunc.reduceat(v, offsets[:-1][full])
    return out


def segment_sum_expansion(
    xp: ModuleType, x: Any, seg: Any, offsets: Any, nseg: int, amax: Any, ok: Any
) -> Any:
    """The exact sum of every segment as a short expansion, ``(levels, nseg)`` doubles.

    ``x`` is flat (NaN-free) with segment ids ``seg``, laid out by ``offsets``; ``amax`` the
    per-segment ``max|x|``; ``ok`` marks the segments to sum exactly (finite, below ``2^900``);
    the others get 0 in every level. The column sum of the result, taken exactly, is the
    segment's sum; its levels decrease in magnitude and each is a sum that was exact in floating
    point, so the result does not depend on the order in which ``bincount`` (or a GPU's atomics)
    added.
    """
    n_int = offsets[1:] - offsets[:-1]
    _, e_max = xp.frexp(xp.where(ok, amax, 0.0))  # 2^e_max > max|x| (e_max = 0 for zeros)
    _, e_n = xp.frexp(n_int.astype(np.float64))  # 2^e_n > n
    m_bits = e_n + 1  # 2^M >= 2n: the q of a level add up exactly
    sigma = xp.ldexp(xp.ones(nseg), (e_max + m_bits).astype(np.int32))
    shrink = xp.ldexp(xp.ones(nseg), (m_bits - 53).astype(np.int32))
    p = x if bool(ok.all()) else xp.where(ar.seg_broadcast(xp, ok, seg, n_int), x, 0.0)
    sid = None  # None: every value is still live, laid out by n_int
    levels = []
    for _ in range(_MAX_LEVELS):
        sig = ar.seg_broadcast(xp, sigma, seg, n_int) if sid is None else sigma[sid]
        q = sig + p
        q -= sig  # in place: these arrays are as large as the batch
        p = p - q if p is x else xp.subtract(p, q, out=p)
        if sid is None:
            levels.append(_reduce(xp, np.add, q, seg, offsets, nseg))
        else:
            levels.append(ar.seg_sum(xp, q, sid, nseg))
        live = p != 0
        nlive = int(live.sum())
        if nlive == 0:
            return xp.stack(levels)
        if nlive * 8 < int(p.shape[0]):  # compact once nearly all remainders are gone
            sid = (seg if sid is None else sid)[live]
            p = p[live]
        sigma = sigma * shrink  # exact: powers of two, never below 2^-1074 while p != 0
    raise RuntimeError("segment_sum_expansion did not converge")  # pragma: no cover


def _fraction_sum(cols: np.ndarray) -> list[Fraction]:
    """Exact column sums of a small ``(terms, k)`` host array, as fractions."""
    return [sum((Fraction(float(v)) for v in col), Fraction(0)) for col in cols.T]


def expansion_sign(xp: ModuleType, terms: Any) -> tuple[Any, Any]:
    """The exact sign of each column sum of ``terms`` (``(k, m)`` doubles), and that sum rounded.

    Sweeps of TwoSum (Ogita-Rump-Oishi's VecSum) move the sum into the last row, the rounding
    errors into the others; a column is decided once its last entry exceeds the sum of the
    others' magnitudes (with a margin for that sum's own rounding) or they are all zero. After
    ``k`` sweeps, undecided columns (none seen in practice) are summed with fractions on the
    host. Returns ``(sign, approx)``: int8 in ``{-1, 0, 1}`` and the float64 sum, both ``(m,)``.
    """
    k, m = int(terms.shape[0]), int(terms.shape[1])
    rows = [terms[i] for i in range(k)]
    sign = xp.zeros(m, dtype=np.int8)
    approx = xp.zeros(m)
    done = xp.zeros(m, dtype=bool)
    margin = 1.0 + 4.0 * (k + 1) * EPS
    for _ in range(k):
        for i in range(1, k):
            rows[i], rows[i - 1] = two_sum(rows[i - 1], rows[i])
        top = rows[-1]
        rest = xp.zeros(m)
        signed = xp.zeros(m)
        for r in rows[:-1]:
            rest = rest + xp.abs(r)
            signed = signed + r
        now = ~done & ((xp.abs(top) > rest * margin) | ((rest == 0) & (top == 0)))
        sign = xp.where(now, xp.sign(top).astype(np.int8), sign)
        approx = xp.where(now, top + signed, approx)
        done = done | now
        if bool(done.all()):
            return sign, approx
    left = ar.to_host(xp.nonzero(~done)[0])
    host = ar.to_host(xp.stack(rows)[:, xp.asarray(left)])
    sums = _fraction_sum(host)
    sign_h = np.array([(s > 0) - (s < 0) for s in sums], dtype=np.int8)
    approx_h = np.array([float(s) for s in sums])
    idx = xp.asarray(left)
    sign[idx] = xp.asarray(sign_h)
    approx[idx] = xp.asarray(approx_h)
    return sign, approx


# ---- the mean ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactMean:
    """Per-segment exact-mean data, all ``(nseg,)`` on the batch's module.

    ``mean``: the double nearest the exact mean (always one of the two around it; see the
    module docstring) or NaN for empty segments; ``lo``: the rounded
    remainder ``(sum - n mean) / n`` (0 exactly when ``mean`` is exact); ``tie``: the exact sign
    of ``sum - n mean`` (a value equal to ``mean`` lies above the exact mean iff ``tie < 0``);
    ``levels``: the exact sum as an expansion (``(levels, nseg)``); ``exact``: False for the
    segments computed the plain way (non-finite or huge values).
    """

    mean: Any
    lo: Any
    tie: Any
    levels: Any
    exact: Any


def _residual(xp: ModuleType, levels: Any, n: Any, m: Any) -> tuple[Any, Any]:
    """Exact sign and rounded value of ``sum - n m`` from the sum's expansion.

    Dekker's product is exact unless ``n m`` underflows: a nonzero mean below ``2^-900``
    (never seen in sensor data) is settled with fractions on the host instead.
    """
    ph, pl = two_prod(n, m)
    terms = xp.concatenate([-ph[None, :], levels, -pl[None, :]])
    sign, approx = expansion_sign(xp, terms)
    tiny = ar.to_host(xp.nonzero((m != 0) & (xp.abs(m) < _TINY))[0])
    if tiny.size:
        idx = xp.asarray(tiny)
        lv, nh, mh = ar.to_host(levels[:, idx]), ar.to_host(n[idx]), ar.to_host(m[idx])
        sums = _fraction_sum(lv)
        res = [
            s - Fraction(float(a)) * Fraction(float(b))
            for s, a, b in zip(sums, nh, mh, strict=True)
        ]
        sign[idx] = xp.asarray(np.array([(v > 0) - (v < 0) for v in res], dtype=np.int8))
        approx[idx] = xp.asarray(np.array([float(v) for v in res]))
    return sign, approx


def exact_mean(xp: ModuleType, x: Any, seg: Any, offsets: Any, n_int: Any, nseg: int) -> ExactMean:
    """The exact-mean data of every segment (see :class:`ExactMean`).

    ``x`` is flat (NaN-free) with segment ids ``seg``, laid out by ``offsets``; ``n_int`` the
    segment lengths. Segments with a non-finite value or a value above ``2^900`` get the plain
    ``sum / n`` (NaN or inf, as NumPy's mean would give), and ``tie`` 0.
    """
    n = n_int.astype(np.float64)
    amax = _reduce(xp, np.maximum, xp.abs(x), seg, offsets, nseg)
    exact = (n_int > 0) & xp.isfinite(amax) & (amax < _HUGE)
    levels = segment_sum_expansion(xp, x, seg, offsets, nseg, amax, exact)
    safe_n = xp.where(n > 0, n, 1.0)
    total = levels[-1]
    for i in range(int(levels.shape[0]) - 2, -1, -1):  # smallest first; refined below
        total = levels[i] + total
    m1 = total / safe_n
    _, r1 = _residual(xp, levels, safe_n, m1)
    m = m1 + r1 / safe_n  # one of the two doubles around the exact mean, almost always nearest
    tie, r = _residual(xp, levels, safe_n, m)
    lo = xp.where(tie == 0, 0.0, r / safe_n)
    mean = xp.where(exact, m, np.nan)
    if bool((~exact & (n_int > 0)).any()):
        with np.errstate(all="ignore"):
            plain = ar.seg_sum(xp, x, seg, nseg) / safe_n
        mean = xp.where(exact | (n_int == 0), mean, plain)
    return ExactMean(
        mean=mean,
        lo=xp.where(exact, lo, 0.0),
        tie=xp.where(exact, tie, 0).astype(np.int8),
        levels=levels,
        exact=exact,
    )


def mean_sign(x: Any, mean: Any, tie: Any) -> Any:
    """Per value, the exact sign of ``x - exact mean`` (int8).

    ``mean`` and ``tie`` are :class:`ExactMean`'s, broadcast to the values. A double above
    (below) ``mean`` is above (below) the exact mean, as no double lies strictly between them;
    a value equal to ``mean`` takes the sign of ``n mean - sum``, i.e. ``-tie``.
    """
    above = (x > mean).astype(np.int8)
    below = (x < mean).astype(np.int8)
    return above - below - (x == mean).astype(np.int8) * tie


# ---- exact moments of a few segments (host) ------------------------------------------------------
def exact_moments(values: np.ndarray) -> tuple[int, Fraction, Fraction]:
    """``(n, sum, sum of squares)`` of one segment's values, exactly (host, integers).

    Every double is ``mantissa * 2^e`` with an integer 53-bit mantissa, so both sums are big
    integers times a power of two. About 1 us per value: meant for the few segments whose
    decision lies within rounding of its threshold.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return 0, Fraction(0), Fraction(0)
    frac, e = np.frexp(v)
    mant = (frac * 2.0**53).astype(np.int64).tolist()
    exp = (e.astype(np.int64) - 53).tolist()
    base = min(exp)
    s = 0
    q = 0
    for a, k in zip(mant, exp, strict=True):
        sh = k - base
        s += a << sh
        q += (a * a) << (2 * sh)
    unit = Fraction(2) ** base
    return int(v.size), s * unit, q * unit * unit
