"""tsfresh's spectral and wavelet calculators, batched over segments.

``spkt_welch_density`` and ``fourier_entropy`` share one Welch density per batch;
``cwt_coefficients`` forms the first coefficients of every segment's Mexican-hat CWT as one
matrix product per width; ``number_cwt_peaks`` counts scipy's ``find_peaks_cwt`` ridge lines
(sequential) with a compiled search on the CPU, per segment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eraflow.stages.features.kernels import (
    Params,
    count_cwt_peaks,
    cwt_head,
    histogram_entropy,
    on_cpu,
    ricker_transform,
    stack_rows,
    welch_density,
)
from eraflow.stages.features.registry import feature
from eraflow.stages.features.segments import SegmentBatch

CWT_WIDTHS = (2, 5, 10, 20)


@feature("spkt_welch_density", params=[{"coeff": c} for c in (2, 5, 8)], tsfresh=True)
def spkt_welch_density(b: SegmentBatch, params: Params) -> Any:
    """Welch's density (``nperseg = min(n, 256)``) at the frequency index ``coeff``."""
    xp = b.xp
    out = xp.full((len(params), b.nseg), np.nan)
    for segs, pxx in welch_density(b):
        rows = pxx[:, 0, :]
        for r, p in enumerate(params):
            c = int(p["coeff"])
            if rows.shape[1] > c:
                out[r, segs] = rows[:, c]
    return out


@feature("fourier_entropy", params=[{"bins": n} for n in (2, 3, 5, 10, 100)], tsfresh=True)
def fourier_entropy(b: SegmentBatch, params: Params) -> Any:
    """``binned_entropy(pxx / max(pxx), bins)`` of Welch's density."""
    xp = b.xp
    out = xp.full((len(params), b.nseg), np.nan)
    for segs, pxx in welch_density(b):
        rows = pxx[:, 0, :]
        top = rows.max(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = rows / top  # 0 / 0 = NaN for a constant segment, as in tsfresh
        finite = xp.isfinite(scaled).all(axis=1)
        count, width = rows.shape
        seg = xp.repeat(xp.arange(count), width)
        flat = xp.where(finite[:, None], scaled, 0.0).reshape(-1)
        for r, p in enumerate(params):
            entropy = histogram_entropy(xp, flat, seg, count, int(p["bins"]))
            out[r, segs] = xp.where(finite, entropy, np.nan)
    return out


@feature(
    "cwt_coefficients",
    params=[{"widths": CWT_WIDTHS, "coeff": c, "w": w} for c in range(15) for w in CWT_WIDTHS],
    tsfresh=True,
)
def cwt_coefficients(b: SegmentBatch, params: Params) -> Any:
    """Coefficient ``coeff`` of ``pywt.cwt(x, widths, "mexh")`` at width ``w``."""
    heads: dict[float, Any] = {}
    count = max(int(p["coeff"]) for p in params) + 1
    rows = []
    for p in params:
        w = float(p["w"])
        if w not in heads:
            heads[w] = cwt_head(b, w, count)
        rows.append(heads[w][int(p["coeff"])])
    return stack_rows(b, rows)


@feature("number_cwt_peaks", params=[{"n": 1}, {"n": 5}], tsfresh=True)
def number_cwt_peaks(b: SegmentBatch, params: Params) -> Any:
    """``len(find_peaks_cwt(x, widths=range(1, n + 1), wavelet=ricker))``, as scipy counts.

    The ridge-line search is sequential: compiled, on the CPU, segment by segment (see
    :mod:`eraflow.stages.features.cwt_peaks`); one transform per segment serves every ``n``.
    """
    x, offsets = on_cpu(b, "number_cwt_peaks")
    top = max(int(p["n"]) for p in params)
    out = np.full((len(params), b.nseg), np.nan)
    for s in range(b.nseg):
        values = x[offsets[s] : offsets[s + 1]]
        if not values.size:
            continue
        transform = ricker_transform(values, np.arange(1, top + 1))
        for r, p in enumerate(params):
            out[r, s] = count_cwt_peaks(values, int(p["n"]), transform)
    return b.xp.asarray(out)
