"""Spectral intermediates shared by calculators: Welch's density and the Mexican-hat CWT.

Both are computed once per batch, for all segments together, on the batch's array module, and
reproduce what tsfresh calls: ``scipy.signal.welch(x, nperseg=min(len(x), 256))`` (Hann
window, half overlap, constant detrend, density scaling, mean over windows) and
``pywt.cwt(x, scales, "mexh")`` (the integrated wavelet sampled on [-8, 8] with 2^12 points,
pywt's default precision).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eraflow.stages.features import arrays as ar
from eraflow.stages.features.segments import SegmentBatch

WELCH_MAX = 256
MEXH_PRECISION = 12
MEXH_BOUNDS = (-8.0, 8.0)


def _hann(xp: Any, n: int) -> Any:
    """Scipy's periodic Hann window of length n (``get_window("hann", n)``)."""
    if n == 1:
        return xp.ones(1)
    k = xp.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * xp.cos(2.0 * math.pi * k / n)


def welch_density(b: SegmentBatch) -> list[tuple[Any, Any]]:
    """Welch's power spectral density of every segment: ``[(segment ids, pxx rows)]``.

    Segments of 256 values or more share one window length (their windows form one 2-D FFT);
    shorter ones are one window of their own length, grouped by length. Cached on the batch.
    """
    cached = getattr(b, "_welch_cache", None)
    if cached is not None:
        return cached
    xp = b.xp
    lengths = ar.to_host(b.n_int)
    groups: list[tuple[Any, Any]] = []
    for length in np.unique(lengths[(lengths > 0) & (lengths < WELCH_MAX)]):
        segs = xp.asarray(np.nonzero(lengths == length)[0])
        idx = b.start[segs][:, None] + xp.arange(int(length))[None, :]
        groups.append((segs, _periodogram(xp, b.x[idx], int(length))[:, None, :]))
    long = np.nonzero(lengths >= WELCH_MAX)[0]
    if long.size:
        step = WELCH_MAX - WELCH_MAX // 2
        windows = (lengths[long] - WELCH_MAX // 2) // step
        owner = np.repeat(np.arange(long.size), windows)
        first = np.concatenate([[0], np.cumsum(windows)[:-1]])
        k = np.arange(int(windows.sum())) - first[owner]
        starts = ar.to_host(b.start)[long][owner] + k * step
        idx = xp.asarray(starts)[:, None] + xp.arange(WELCH_MAX)[None, :]
        psd = _periodogram(xp, b.x[idx], WELCH_MAX)
        sums = xp.zeros((long.size, psd.shape[1]))
        if ar.is_numpy(xp):
            np.add.at(sums, owner, psd)
        else:
            import cupyx

            cupyx.scatter_add(sums, xp.asarray(owner), psd)
        means = sums / xp.asarray(windows, dtype=np.float64)[:, None]
        groups.append((xp.asarray(long), means[:, None, :]))
    b._welch_cache = groups  # type: ignore[attr-defined]
    return groups


def _periodogram(xp: Any, windows: Any, n: int) -> Any:
    """One-sided density of each row (one window each): detrend, Hann, |FFT|², scale."""
    win = _hann(xp, n)
    data = (windows - windows.mean(axis=1, keepdims=True)) * win[None, :]
    spec = xp.fft.rfft(data, axis=1)
    psd = (spec.real**2 + spec.imag**2) / float((win * win).sum())
    if n % 2:
        psd[:, 1:] *= 2.0
    else:
        psd[:, 1:-1] *= 2.0
    return psd


def mexh_integral(xp: Any) -> tuple[Any, float, float]:
    """The integrated Mexican hat as pywt samples it: ``(int_psi, x_first, step)``."""
    lo, hi = MEXH_BOUNDS
    points = 2**MEXH_PRECISION
    x = np.linspace(lo, hi, points)
    psi = (2.0 / (math.sqrt(3.0) * math.pi**0.25)) * (1.0 - x**2) * np.exp(-(x**2) / 2.0)
    step = x[1] - x[0]
    return xp.asarray(np.cumsum(psi) * step), float(x[0]), float(step)


def cwt_head(b: SegmentBatch, scale: float, count: int) -> Any:
    """The first ``count`` coefficients of ``pywt.cwt(x, [scale], "mexh")`` per segment.

    pywt convolves the data with the reversed, resampled integral of the wavelet, takes
    ``-sqrt(scale) * diff``, and trims the result to the data's length from the middle. The
    first ``count`` outputs only need the first ``W`` values of a segment, so they are one
    matrix product of the zero-padded heads with the differenced kernel (zero padding changes
    no term of a full convolution). Differencing the kernel instead of the convolution also
    avoids pywt's cancellation: for data with a large offset the two differ beyond 1e-6
    relative only where pywt's own value is that cancellation's rounding noise.
    """
    xp = b.xp
    int_psi, _, step = mexh_integral(np)
    span = MEXH_BOUNDS[1] - MEXH_BOUNDS[0]
    j = (np.arange(scale * span + 1) / (scale * step)).astype(int)
    kernel = int_psi[j[j < int_psi.size]][::-1]  # what pywt convolves with
    klen = kernel.size
    first = (klen - 2) // 2  # pywt keeps diff(conv)[floor((klen - 2) / 2):]
    width = count + first + 1
    i = np.arange(width)[:, None]
    t = first + np.arange(count)[None, :]

    def tap(index: np.ndarray) -> np.ndarray:
        return np.where((index >= 0) & (index < klen), kernel[np.clip(index, 0, klen - 1)], 0.0)

    matrix = xp.asarray(tap(t + 1 - i) - tap(t - i))  # (width, count)
    coef = -math.sqrt(scale) * (b.head(width) @ matrix)  # (nseg, count)
    ok = xp.arange(count)[None, :] < b.n_int[:, None]
    return xp.where(ok, coef, np.nan).T
