"""Rolling-window features on the regular grid, summarised per era (eraflow's own, not tsfresh).

Semantics (the contract the tests check against pandas): for an era slice of one sensor on the
grid (NaN kept where a value stayed missing), ``s.rolling(window_rows).<stat>()`` with pandas'
defaults (``min_periods = window_rows``, right-aligned, ``std`` with ddof 1), so windows never
cross era boundaries and a window holding a NaN is NaN. The era's feature is an aggregate
(``mean``, ``std`` with ddof 0, ``min``, ``max``) of the non-NaN rolling values; NaN when the era
has no complete window.

Windows are given in time (pandas offsets such as ``"30min"``, ``"2h"``) and converted with the
grid step: ``window_rows = window / step``, which must be a whole number, so a feature means the
same at any resampling interval. A sensor read on its native grid (slower than the grid) uses
its own step: a 2-hour window of an hourly sensor holds two readings, and a window shorter
than its interval (or not a whole number of them) holds none: NaN.

Names follow tsfresh's parameter convention (sorted keys, quoted strings), e.g.
``rolling_mean__agg_"max"__window_"30min"``: the largest 30-minute mean of the era.

Kernels: window sums/max/min by doubling (``log2(window_rows)`` vectorised passes, no
cumulative-sum cancellation); the window variance is two-pass around the window mean (one
vectorised pass per row of the window), and exactly 0 for constant windows as in pandas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from eraflow.common.errors import ConfigError
from eraflow.stages.features import arrays as ar
from eraflow.stages.features.kernels import Params
from eraflow.stages.features.registry import feature
from eraflow.stages.features.segments import SegmentBatch

WINDOWS = ("30min", "2h")
AGGS = ("mean", "std", "min", "max")
_PARAMS = [{"window": w, "agg": a} for w in WINDOWS for a in AGGS]


def window_rows(window: str, step_ns: int | None) -> int:
    """Number of grid rows in ``window`` (a pandas offset string) at a grid step of ``step_ns``.

    Raises
    ------
    ConfigError
        When the step is unknown, the window unreadable, or not a whole multiple of the step.
    """
    if step_ns is None or step_ns <= 0:
        raise ConfigError("rolling features need the grid step; pass step= or a regular index")
    try:
        w_ns = int(pd.Timedelta(window).value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read rolling window {window!r} as a time span") from exc
    if w_ns <= 0 or w_ns % step_ns:
        raise ConfigError(
            f"rolling window {window!r} is not a whole multiple of the grid step "
            f"{pd.Timedelta(step_ns, unit='ns')}; choose a window that is"
        )
    return w_ns // step_ns


def _window_reduce(xp: Any, a: Any, w: int, op: Any) -> Any:
    """``op`` over ``a[i:i+w]`` for every start ``i`` (NaN past the end), by doubling."""
    n = int(a.shape[0])
    pad = xp.concatenate([a, xp.full(w, np.nan)])
    block = pad  # block[i] = op over [i, i + 2**k)
    acc = None
    off = 0
    k = 0
    while (1 << k) <= w:
        size = 1 << k
        if w & size:
            term = block[off : off + n]
            acc = term if acc is None else op(acc, term)
            off += size
        if (1 << (k + 1)) <= w:
            shifted = xp.concatenate([block[size:], xp.full(size, np.nan)])
            block = op(block, shifted)
        k += 1
    return acc


def _native_window_rows(window: str, b: SegmentBatch) -> int | None:
    """Rows of the batch's grid in ``window``; None where no whole number of readings fits.

    On a sensor's native grid (one reading per ``native_stride`` grid steps) a window that is
    a whole number of grid steps but not of the sensor's interval (30 min of an hourly
    sensor) holds no whole number of readings: its features are NaN, not an error.
    """
    if b.native_stride == 1 or b.step_ns is None:
        return window_rows(window, b.step_ns)
    window_rows(window, b.step_ns // b.native_stride)  # a bad window is an error at any rate
    w_ns = int(pd.Timedelta(window).value)
    return w_ns // b.step_ns if w_ns % b.step_ns == 0 else None


def _rolling(b: SegmentBatch, window: str) -> dict[str, tuple[Any, Any]]:
    """Rolling mean/std/min/max of every complete NaN-free window: ``stat -> (values, seg)``."""
    cache = b.__dict__.setdefault("_rolling_cache", {})
    rows = _native_window_rows(window, b)
    xp = b.xp
    if rows is None:  # no whole number of readings in the window: no window at all
        none = (xp.zeros(0), xp.zeros(0, dtype=np.int64))
        return dict.fromkeys(("mean", "std", "min", "max"), none)
    w = rows
    if w in cache:
        return cache[w]
    g = b.grid
    n = int(g.shape[0])
    gpos = xp.arange(n, dtype=np.int64) - b.grid_offsets[b.grid_seg]
    s = _window_reduce(xp, g, w, xp.add)
    mx = _window_reduce(xp, g, w, xp.maximum)
    mn = _window_reduce(xp, g, w, xp.minimum)
    complete = (gpos + w <= b.grid_len[b.grid_seg]) & ~xp.isnan(s)
    idx = xp.nonzero(complete)[0]
    seg = b.grid_seg[idx]
    mean = s[idx] / w
    if w > 1:
        acc = xp.zeros(idx.shape[0])
        for j in range(w):
            acc += (g[idx + j] - mean) ** 2
        var = acc / (w - 1)
        std = xp.where(mx[idx] == mn[idx], 0.0, xp.sqrt(var))
    else:
        std = xp.full(idx.shape[0], np.nan)
    out = {"mean": (mean, seg), "std": (std, seg), "min": (mn[idx], seg), "max": (mx[idx], seg)}
    cache[w] = out
    return out


def _summaries(b: SegmentBatch, window: str, stat: str) -> dict[str, Any]:
    """Every aggregate of one rolling ``stat`` over ``window``: ``agg -> per-era values``.

    All four at once, kept by the batch: the NaN filter, the counts and the mean are shared
    (made per aggregate, they were half of the rolling features' time).
    """
    cache = b.__dict__.setdefault("_rolling_summaries", {})
    if (window, stat) in cache:
        return cache[window, stat]
    xp = b.xp
    vals, seg = _rolling(b, window)[stat]
    ok = ~xp.isnan(vals)
    if not bool(ok.all()):
        vals, seg = vals[ok], seg[ok]
    cnt = ar.seg_count(xp, xp.ones(vals.shape[0], dtype=bool), seg, b.nseg)
    safe = xp.where(cnt > 0, cnt, 1.0)
    mean = ar.seg_sum(xp, vals, seg, b.nseg) / safe
    found = {
        "mean": mean,
        "std": xp.sqrt(ar.seg_sum(xp, (vals - mean[seg]) ** 2, seg, b.nseg) / safe),
        "min": ar.seg_min(xp, vals, seg, b.nseg),
        "max": ar.seg_max(xp, vals, seg, b.nseg),
    }
    cache[window, stat] = out = {agg: xp.where(cnt > 0, v, np.nan) for agg, v in found.items()}
    return out


def _make(stat: str) -> None:
    def calc(b: SegmentBatch, params: Params) -> Any:
        rows = []
        for p in params:
            agg = str(p["agg"])
            if agg not in AGGS:
                raise ConfigError(f"rolling agg must be one of {AGGS}, got {agg!r}")
            rows.append(_summaries(b, str(p["window"]), stat)[agg])
        return b.xp.stack(rows)

    calc.__doc__ = (
        f"Per-era aggregate ``agg`` of the pandas-equivalent rolling {stat} over ``window``."
    )
    calc.__name__ = f"rolling_{stat}"
    feature(f"rolling_{stat}", params=_PARAMS, tsfresh=False, input="grid")(calc)


for _stat in ("mean", "std", "min", "max"):
    _make(_stat)
