"""scipy's ``find_peaks_cwt`` peak count, with its ridge-line search compiled (numba).

tsfresh's ``number_cwt_peaks`` is ``len(find_peaks_cwt(x, widths=1..n, wavelet=ricker))``.
scipy builds its ridge lines in Python loops (a list per line, an argmin over every open line
for every local maximum) and computes a noise percentile for every column; on real eras that
was most of the engine's time, no faster than tsfresh. Here the transform is scipy's own
(``scipy.signal.convolve`` per width, so the maxima compare the very same numbers) and the rest
is one compiled pass that follows scipy step for step:

- local maxima per row (strictly greater than both neighbours; the edges never are);
- lines start at the highest row with a maximum and go down one row at a time; a maximum joins
  the open line whose last column is closest (the first such line on ties) when that is within
  ``width / 4``, else it opens a line; a line not extended for more than ``ceil(widths[0])``
  rows is closed. The distance limit is at most 1.25 columns for tsfresh's widths, so the
  closest line is looked up in a column-indexed table instead of scanning every line;
- a line counts when it has at least ``ceil(rows / 4)`` points and its lowest point's
  coefficient is at least the 10th percentile of row 0 around it (window ``ceil(n / 20)``):
  the percentile is computed only for the lines that need it, not for every column, and not
  by sorting each window (``n / 20`` values for each of about ``n / 3`` lines: quadratic, most
  of the time on month-long eras) but by sliding one window over the lines' columns in order,
  with the window's values counted by rank in a Fenwick tree: O(n log n) in all, the same
  order statistics, hence the same numbers.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from eraflow.common.jit import jit


def ricker(points: int, a: float) -> np.ndarray:
    """Tsfresh's Ricker (Mexican hat) wavelet, as scipy.signal.ricker was."""
    amplitude = 2 / (np.sqrt(3 * a) * (np.pi**0.25))
    wsq = a**2
    vec = np.arange(0, points) - (points - 1.0) / 2
    xsq = vec**2
    mod = 1 - xsq / wsq
    gauss = np.exp(-xsq / (2 * wsq))
    return np.asarray(amplitude * mod * gauss)


def ricker_transform(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The transform of scipy's ``_cwt``: per width, x convolved with its reversed wavelet.

    ``convolve(x, ricker(min(10 w, n), w)[::-1], 'same')``, scipy's call, hence its numbers:
    scipy picks the direct or the FFT route from the two lengths alone and its direct route
    for 1-D is ``np.convolve``; that choice and the wavelets are remembered per length, so
    most calls go straight to ``np.convolve`` (scipy's checks were half of each call's time
    on the short segments of fine eras).
    """
    out = np.empty((len(widths), len(values)))
    for row, width in enumerate(widths):
        points = min(10 * int(width), len(values))
        kernel = _reversed_wavelet(points, float(width))
        if _direct(len(values), points):
            out[row] = np.convolve(values, kernel, mode="same")
        else:
            from scipy.signal import convolve

            out[row] = convolve(values, kernel, mode="same", method="fft")
    return out


@functools.lru_cache(maxsize=1024)
def _reversed_wavelet(points: int, width: float) -> np.ndarray:
    kernel = np.conj(ricker(points, width)[::-1])
    kernel.flags.writeable = False
    return kernel


@functools.lru_cache(maxsize=4096)
def _direct(length: int, points: int) -> bool:
    """Whether ``scipy.signal.convolve(method="auto")`` convolves directly (shapes decide)."""
    from scipy.signal import choose_conv_method

    return bool(choose_conv_method(np.zeros(length), np.zeros(points), mode="same") == "direct")


def count_cwt_peaks(values: np.ndarray, n: int, transform: np.ndarray | None = None) -> int:
    """``len(scipy.signal.find_peaks_cwt(values, np.arange(1, n + 1), wavelet=ricker))``.

    ``transform`` may hold the rows of a larger ``ricker_transform`` (widths 1..m, m >= n).
    """
    widths = np.arange(1, n + 1)
    cwt = ricker_transform(values, widths) if transform is None else transform[:n]
    return int(
        _count(
            np.ascontiguousarray(cwt),
            widths / 4.0,
            float(math.ceil(widths[0])),
            math.ceil(n / 4),
            math.ceil(len(values) / 20),
        )
    )


@jit()
def _kth(tree: np.ndarray, k: int, top: int) -> int:
    """The rank of the ``k``-th smallest (0-based) value counted in Fenwick ``tree``."""
    pos, remaining, step = 0, k + 1, top
    while step > 0:
        if pos + step < tree.shape[0] and tree[pos + step] < remaining:
            pos += step
            remaining -= tree[pos]
        step //= 2
    return pos


@jit()
def _bump(tree: np.ndarray, rank: int, by: int) -> None:
    i = rank + 1
    while i < tree.shape[0]:
        tree[i] += by
        i += i & -i


@jit(error_model="numpy")
def _noises(row0: np.ndarray, cols: np.ndarray, window: int) -> np.ndarray:
    """The noise filter's scoreatpercentile(row0[window around col], 10), per column.

    ``cols`` ascending: one window slides over them.
    """
    n = row0.shape[0]
    order = np.argsort(row0, kind="mergesort")
    rank = np.empty(n, dtype=np.int64)
    for r in range(n):
        rank[order[r]] = r
    tree = np.zeros(n + 1, dtype=np.int64)
    top = 1
    while top * 2 <= n:
        top *= 2
    half, odd = window // 2, window % 2
    lo_in, hi_in = 0, 0  # the window now counted: [lo_in, hi_in)
    out = np.empty(cols.shape[0])
    for j in range(cols.shape[0]):
        lo = max(cols[j] - half, 0)
        hi = min(cols[j] + half + odd, n)
        while hi_in < hi:
            _bump(tree, rank[hi_in], 1)
            hi_in += 1
        while lo_in < lo:
            _bump(tree, rank[lo_in], -1)
            lo_in += 1
        idx = 10.0 / 100.0 * (hi - lo - 1)
        i = int(idx)
        low = row0[order[_kth(tree, i, top)]]
        if i == idx:
            out[j] = low
        else:
            high = row0[order[_kth(tree, i + 1, top)]]
            w0, w1 = i + 1 - idx, idx - i
            out[j] = (low * w0 + high * w1) / (w0 + w1)
    return out


@jit(error_model="numpy")
def _count(
    cwt: np.ndarray,
    max_distances: np.ndarray,
    gap_thresh: float,
    min_length: int,
    window: int,
) -> int:
    rows, n = cwt.shape
    is_max = np.zeros((rows, n), dtype=np.bool_)
    start_row = -1
    for r in range(rows):
        for c in range(1, n - 1):
            v = cwt[r, c]
            if v > cwt[r, c + 1] and v > cwt[r, c - 1]:
                is_max[r, c] = True
                start_row = r
    if start_row < 0:
        return 0
    capacity = int(is_max.sum())
    # every line: its length, lowest point (row, col) and gap; ``open_`` lists the open ones
    length = np.zeros(capacity, dtype=np.int64)
    low_row = np.zeros(capacity, dtype=np.int64)
    low_col = np.zeros(capacity, dtype=np.int64)
    gap = np.zeros(capacity, dtype=np.int64)
    open_ = np.empty(capacity, dtype=np.int64)
    n_lines = 0
    n_open = 0
    for c in range(n):
        if is_max[start_row, c]:
            length[n_lines], low_row[n_lines], low_col[n_lines] = 1, start_row, c
            open_[n_open] = n_lines
            n_lines += 1
            n_open += 1
    # owner[c]: position in open_ (at the row's start) of the first open line ending at c
    owner = np.full(n, -1, dtype=np.int64)
    for r in range(start_row - 1, -1, -1):
        n_prev = n_open
        prev_cols = np.empty(n_prev, dtype=np.int64)
        for k in range(n_prev):
            line = open_[k]
            gap[line] += 1
            prev_cols[k] = low_col[line]
            if owner[prev_cols[k]] < 0:
                owner[prev_cols[k]] = k
        reach = int(max_distances[r])  # non-negative: truncation is the floor
        for c in range(n):
            if not is_max[r, c]:
                continue
            best = -1
            for d in range(reach + 1):  # the closest open line within reach; first on ties
                left = owner[c - d] if c - d >= 0 else -1
                right = owner[c + d] if d > 0 and c + d < n else -1
                if left >= 0 and (right < 0 or left < right):
                    best = left
                elif right >= 0:
                    best = right
                if best >= 0:
                    break
            if best >= 0:
                line = open_[best]
                length[line] += 1
                low_row[line], low_col[line] = r, c
                gap[line] = 0
            else:
                length[n_lines], low_row[n_lines], low_col[n_lines] = 1, r, c
                open_[n_open] = n_lines
                n_lines += 1
                n_open += 1
        for k in range(n_prev):
            owner[prev_cols[k]] = -1
        kept = 0
        for k in range(n_open):  # close lines whose gap grew too large, keeping the order
            if gap[open_[k]] <= gap_thresh:
                open_[kept] = open_[k]
                kept += 1
        n_open = kept
    long_enough = np.flatnonzero(length[:n_lines] >= min_length)
    if long_enough.shape[0] == 0:
        return 0
    long_enough = long_enough[np.argsort(low_col[long_enough], kind="mergesort")]
    noise = _noises(cwt[0], low_col[long_enough], window)
    count = 0
    for j in range(long_enough.shape[0]):
        line = long_enough[j]
        snr = abs(cwt[low_row[line], low_col[line]] / noise[j])
        if not snr < 1.0:  # scipy's ``snr < min_snr`` filter: NaN passes
            count += 1
    return count
