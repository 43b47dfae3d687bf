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
  the percentile is computed only for the lines that need it, not for every column.
"""

from __future__ import annotations

import math

import numba
import numpy as np


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

    ``convolve(x, ricker(min(10 w, n), w)[::-1], 'same')``, scipy's call, hence its numbers.
    """
    from scipy.signal import convolve

    out = np.empty((len(widths), len(values)))
    for row, width in enumerate(widths):
        points = min(10 * int(width), len(values))
        out[row] = convolve(values, np.conj(ricker(points, float(width))[::-1]), mode="same")
    return out


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


@numba.njit(cache=True, error_model="numpy")
def _noise(row0: np.ndarray, col: int, window: int) -> float:
    """The noise of scipy's filter: ``scoreatpercentile(row0[window around col], 10)``."""
    half, odd = window // 2, window % 2
    lo = max(col - half, 0)
    hi = min(col + half + odd, row0.shape[0])
    part = np.sort(row0[lo:hi])
    idx = 10.0 / 100.0 * (part.shape[0] - 1)
    i = int(idx)
    if i == idx:
        return part[i]
    j = i + 1
    w0, w1 = j - idx, idx - i
    return (part[i] * w0 + part[i + 1] * w1) / (w0 + w1)


@numba.njit(cache=True, error_model="numpy")
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
    row0 = cwt[0]
    count = 0
    for line in range(n_lines):
        if length[line] < min_length:
            continue
        snr = abs(cwt[low_row[line], low_col[line]] / _noise(row0, low_col[line], window))
        if not snr < 1.0:  # scipy's ``snr < min_snr`` filter: NaN passes
            count += 1
    return count
