"""tsfresh's complexity and entropy calculators, batched over segments.

``benford_correlation`` is array code (NumPy or CuPy). ``permutation_entropy`` (a pattern
count per window), ``lempel_ziv_complexity`` (a left-to-right parse), ``approximate_entropy`` and
``sample_entropy`` (all pairs of templates) are sequential: numba kernels on the CPU, one
segment after another, also inside GPU batches (see
:func:`~eraflow.stages.features.kernels.on_cpu`).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from eraflow.common.jit import jit
from eraflow.stages.features.kernels import Params, on_cpu, single_row, stack_rows
from eraflow.stages.features.registry import feature
from eraflow.stages.features.segments import SegmentBatch

_BENFORD = np.log10(1.0 + 1.0 / np.arange(1, 10))


@feature("benford_correlation", tsfresh=True)
def benford_correlation(b: SegmentBatch, params: Params) -> Any:
    """Pearson correlation of the first digits' distribution with Benford's law."""
    xp = b.xp
    a = xp.abs(xp.nan_to_num(b.x))
    positive = a > 0
    safe = xp.where(positive, a, 1.0)
    exponent = xp.floor(xp.log10(safe))
    # Scale by exact powers of ten, dividing for large values and multiplying for small ones
    # (0.6 / 0.1 is 5.999..., 0.6 * 10 is 6.0): the digit of tsfresh's shortest repr.
    up = xp.maximum(-exponent, 0)
    scaled = xp.where(
        exponent >= 0,
        safe / 10.0 ** xp.maximum(exponent, 0),
        safe * 10.0 ** xp.minimum(up, 300) * 10.0 ** xp.maximum(up - 300, 0),
    )
    digit = xp.floor(scaled)
    digit = xp.where(digit >= 10, xp.floor(digit / 10), digit)  # log10 rounded up
    digit = xp.where(digit < 1, xp.floor(scaled * 10), digit)  # log10 rounded down
    digit = xp.where(positive, digit, 0).astype(np.int64)
    counts = xp.bincount(b.seg * 10 + digit, minlength=b.nseg * 10)[: b.nseg * 10]
    shares = counts.reshape(b.nseg, 10)[:, 1:] / xp.where(b.n > 0, b.n, 1.0)[:, None]
    benford = xp.asarray(_BENFORD)
    dx = shares - shares.mean(axis=1, keepdims=True)
    dy = benford - benford.mean()
    num = (dx * dy[None, :]).sum(axis=1)
    den = xp.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum())
    return single_row(b, b.div(num, den))


@feature("query_similarity_count", params=[{"query": None, "threshold": 0.0}], tsfresh=True)
def query_similarity_count(b: SegmentBatch, params: Params) -> Any:
    """NaN: tsfresh counts matches of a query subsequence, and its default has none."""
    for p in params:
        if p.get("query") is not None:
            from eraflow.common.errors import ConfigError

            raise ConfigError(
                "query_similarity_count with a query is computed by the tsfresh "
                "stage, not the engine: add it to the tsfresh settings"
            )
    return b.xp.full((len(params), b.nseg), np.nan)


@feature(
    "permutation_entropy",
    params=[{"tau": 1, "dimension": d} for d in (3, 4, 5, 6, 7)],
    tsfresh=True,
)
def permutation_entropy(b: SegmentBatch, params: Params) -> Any:
    """Entropy (natural log) of the ordinal patterns of ``dimension`` values, every ``tau``.

    A pattern is the rank of each value in its window, ties ranked by position (what NumPy's
    double argsort gives on windows this short). A numba kernel, one window after another:
    the array code it replaced built a (windows x dimension) matrix, d^2 comparisons of it and
    a sort of every pattern code (``unique``), 0.072 s for 8 month-long segments against
    0.004 s here (``benchmarks/bench_long_segments.py``).
    """
    x, offsets = on_cpu(b, "permutation_entropy")
    rows = []
    for p in params:
        out = np.empty(b.nseg)
        _permutation_entropies(x, offsets, int(p["dimension"]), int(p["tau"]), out)
        rows.append(b.xp.asarray(out))
    return stack_rows(b, rows)


@jit()
def _permutation_entropies(
    x: np.ndarray, offsets: np.ndarray, d: int, tau: int, out: np.ndarray
) -> None:  # pragma: no cover - numba
    """Per segment, the entropy of its windows' ordinal patterns, counted by Lehmer code."""
    factorial = np.ones(d + 1, dtype=np.int64)
    for i in range(1, d + 1):
        factorial[i] = factorial[i - 1] * i
    counts = np.zeros(factorial[d], dtype=np.int64)
    seen = np.empty(factorial[d], dtype=np.int64)  # the codes counted in this segment
    rank = np.empty(d, dtype=np.int64)
    for s in range(offsets.shape[0] - 1):
        start, n = offsets[s], offsets[s + 1] - offsets[s]
        windows = max((n - d) // tau + 1, 0)
        if windows == 0:
            out[s] = np.nan
            continue
        n_seen = 0
        for w in range(windows):
            first = start + w * tau
            for j in range(d):
                v = x[first + j]
                r = 0
                for k in range(d):
                    u = x[first + k]
                    if u < v or (u == v and k < j):
                        r += 1
                rank[j] = r
            code = 0
            for i in range(d):
                smaller = 0
                for j in range(i + 1, d):
                    if rank[j] < rank[i]:
                        smaller += 1
                code += smaller * factorial[d - 1 - i]
            if counts[code] == 0:
                seen[n_seen] = code
                n_seen += 1
            counts[code] += 1
        entropy = 0.0
        for t in range(n_seen):
            share = counts[seen[t]] / windows
            entropy -= share * math.log(share)
            counts[seen[t]] = 0
        out[s] = entropy


@jit()
def _lempel_ziv(symbols: np.ndarray, bins: int) -> float:
    """Tsfresh's parse: the next word is the shortest prefix not yet seen (a prefix trie)."""
    n = symbols.size
    children = numba.typed.Dict.empty(numba.types.int64, numba.types.int64)
    nodes = 1
    words = 0
    ind = 0
    while ind < n:
        node = 0
        inc = 0
        found_new = False
        while ind + inc < n:
            key = node * (bins + 1) + symbols[ind + inc]
            inc += 1
            child = children.get(key, -1)
            if child < 0:
                children[key] = nodes
                nodes += 1
                words += 1
                found_new = True
                break
            node = child
        if not found_new:
            break
        ind += inc
    return words / n


@jit()
def _lempel_ziv_all(x: np.ndarray, offsets: np.ndarray, bins: int) -> np.ndarray:
    out = np.full(offsets.size - 1, np.nan)
    for s in range(offsets.size - 1):
        v = x[offsets[s] : offsets[s + 1]]
        if v.size == 0:
            continue
        edges = np.linspace(v.min(), v.max(), bins + 1)[1:]
        symbols = np.searchsorted(edges, v, side="left")
        out[s] = _lempel_ziv(symbols, bins)
    return out


@feature("lempel_ziv_complexity", params=[{"bins": n} for n in (2, 3, 5, 10, 100)], tsfresh=True)
def lempel_ziv_complexity(b: SegmentBatch, params: Params) -> Any:
    """Words of the Lempel-Ziv parse of the binned series, per value (numba, CPU)."""
    x, offsets = on_cpu(b, "lempel_ziv_complexity")
    return stack_rows(
        b, [b.xp.asarray(_lempel_ziv_all(x, offsets, int(p["bins"]))) for p in params]
    )


@jit()
def _matches(x: np.ndarray, m: int, r: float, i: int, count_from: int) -> int:
    """Templates ``j >= count_from`` within Chebyshev distance ``r`` of template ``i``."""
    total = 0
    for j in range(count_from, x.size - m + 1):
        close = True
        for k in range(m):
            if abs(x[i + k] - x[j + k]) > r:
                close = False
                break
        if close:
            total += 1
    return total


@jit()
def _phi(x: np.ndarray, m: int, r: float) -> float:
    count = x.size - m + 1
    acc = 0.0
    for i in range(count):
        acc += math.log(_matches(x, m, r, i, 0) / count)
    return acc / count


@jit()
def _approximate_entropy_all(x: np.ndarray, offsets: np.ndarray, m: int, r: float) -> np.ndarray:
    out = np.full(offsets.size - 1, np.nan)
    for s in range(offsets.size - 1):
        v = x[offsets[s] : offsets[s + 1]]
        if v.size == 0:
            continue
        if v.size <= m + 1:
            out[s] = 0.0
            continue
        tol = r * np.std(v)
        out[s] = abs(_phi(v, m, tol) - _phi(v, m + 1, tol))
    return out


@feature(
    "approximate_entropy",
    params=[{"m": 2, "r": r} for r in (0.1, 0.3, 0.5, 0.7, 0.9)],
    tsfresh=True,
    high_cost=True,
)
def approximate_entropy(b: SegmentBatch, params: Params) -> Any:
    """``|phi(m) - phi(m + 1)|``, tolerance ``r * std``; O(n²) per segment (numba, CPU)."""
    x, offsets = on_cpu(b, "approximate_entropy")
    return stack_rows(
        b,
        [
            b.xp.asarray(_approximate_entropy_all(x, offsets, int(p["m"]), float(p["r"])))
            for p in params
        ],
    )


@jit()
def _pairs_within(x: np.ndarray, m: int, r: float) -> float:
    """Tsfresh's count: ordered pairs of distinct templates of length m within r."""
    count = x.size - m + 1
    total = 0.0
    for i in range(count):
        total += _matches(x, m, r, i, 0) - 1
    return total


@jit()
def _sample_entropy_all(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = np.full(offsets.size - 1, np.nan)
    for s in range(offsets.size - 1):
        v = x[offsets[s] : offsets[s + 1]]
        if v.size == 0:
            continue
        tol = 0.2 * np.std(v)
        b_count = _pairs_within(v, 2, tol) if v.size >= 2 else 0.0
        a_count = _pairs_within(v, 3, tol) if v.size >= 3 else 0.0
        if b_count == 0.0:
            out[s] = np.nan
        elif a_count == 0.0:
            out[s] = np.inf
        else:
            out[s] = -math.log(a_count / b_count)
    return out


@feature("sample_entropy", tsfresh=True, high_cost=True)
def sample_entropy(b: SegmentBatch, params: Params) -> Any:
    """``-log(A / B)``: template pairs of length 3 over length 2 within ``0.2 std`` (numba)."""
    x, offsets = on_cpu(b, "sample_entropy")
    return single_row(b, b.xp.asarray(_sample_entropy_all(x, offsets)))
