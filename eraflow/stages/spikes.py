"""Suspicious values: a Hampel check per sensor on the grid, thresholds from the catalogue.

A value is a spike when it lies further from the median of its centred window than
``spike_sigmas`` robust standard deviations (1.4826 x the window's median absolute deviation)
and further than ``spike_min_delta`` in the sensor's unit (the floor keeps flat, quantised
stretches, whose MAD is 0, from flagging every small step). A clean step change is not a
spike: past its middle the window's median follows it. The check runs over runs of equal
readings (:func:`run_spikes`), so a probe stuck at 0.0 for an hour is one spike, not a
plateau. Spikes are dropped before gap-fill, which then fills them like any short gap, and
counted per sensor in the aggregation report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from eraflow.catalogue import SensorSpec

__all__ = ["MAD_TO_SIGMA", "drop_spikes", "excursions", "hampel_spikes", "run_spikes"]

#: The MAD of a normal law times this is its standard deviation.
MAD_TO_SIGMA = 1.4826
_MIN_VALUES = 3


def hampel_spikes(
    x: NDArray[np.float64], *, window: int, sigmas: float, min_delta: float
) -> NDArray:
    """True where ``x[i]`` is a spike of its centred window of ``window`` rows (made odd).

    Exact Hampel: the median and MAD of each window's own values (NaN left out); windows
    with fewer than 3 values flag nothing. Written with NumPy's sliding windows, not
    pandas' rolling median of deviations, whose MAD is about another centre.
    """
    n = len(x)
    half = max(1, window // 2)
    flagged = np.zeros(n, dtype=bool)
    if n == 0:
        return flagged
    padded = np.concatenate([np.full(half, np.nan), x, np.full(half, np.nan)])
    windows = sliding_window_view(padded, 2 * half + 1)
    enough = np.isfinite(windows).sum(axis=1) >= _MIN_VALUES
    enough &= np.isfinite(x)
    if not enough.any():
        return flagged
    rows = np.flatnonzero(enough)
    part = windows[rows]
    median = np.nanmedian(part, axis=1)
    mad = np.nanmedian(np.abs(part - median[:, None]), axis=1)
    distance = np.abs(x[rows] - median)
    flagged[rows] = (distance > sigmas * MAD_TO_SIGMA * mad) & (distance > min_delta)
    return flagged


def run_spikes(x: NDArray[np.float64], *, window: int, sigmas: float, min_delta: float) -> NDArray:
    """:func:`hampel_spikes` over runs of equal readings, each run one value.

    A logger that loses its probe writes the same value (often 0.0) for minutes to hours; as
    rows such a run fills the window and looks like the data, as one value among the readings
    around it it is the spike it is. Missing rows are skipped, not a run's end.
    """
    flagged = np.zeros(len(x), dtype=bool)
    present = np.flatnonzero(np.isfinite(x))
    if len(present) == 0:
        return flagged
    values = x[present]
    # the window is a time span: in readings, at the column's usual spacing (hourly data get
    # 3 readings for 3 h, not 36 hours of them)
    spacing = float(np.median(np.diff(present))) if len(present) > 1 else 1.0
    window = max(3, round(window / max(spacing, 1.0)))
    starts = np.concatenate([[True], values[1:] != values[:-1]])
    run_of = np.cumsum(starts) - 1
    run_values = values[starts]
    lengths = np.diff(np.append(np.flatnonzero(starts), len(values)))
    runs = hampel_spikes(run_values, window=window, sigmas=sigmas, min_delta=min_delta)
    runs = excursions(run_values, runs, stuck=lengths >= 2, min_delta=min_delta)
    flagged[present] = runs[run_of]
    return flagged


def excursions(
    values: NDArray[np.float64],
    flagged: NDArray[np.bool_],
    *,
    stuck: NDArray[np.bool_],
    min_delta: float,
    passes: int = 5,
) -> NDArray:
    """``flagged``, plus stuck runs outside the range of their two neighbours by > ``min_delta``.

    What the Hampel check misses where the signal around moves fast (a morning warm-up): a
    probe stuck at 0.0 between 22.8 and 35.4. Only runs of two or more equal readings (a
    stuck probe), and values next to a flagged one (a bin that averaged a reading and the
    dropout, 7.5 between 22.8 and the 0.0), on later passes: a single sunny-hour peak of
    hourly data is not one. Never the first or last value (one neighbour says nothing).
    """
    out = flagged.copy()
    if min_delta <= 0:
        return out
    for _ in range(passes):
        kept = np.flatnonzero(~out)
        if len(kept) < 3:
            break
        beside = np.zeros(len(out), dtype=bool)
        beside[:-1] |= out[1:]
        beside[1:] |= out[:-1]
        v = values[kept]
        low = np.minimum(v[:-2], v[2:]) - min_delta
        high = np.maximum(v[:-2], v[2:]) + min_delta
        middle = kept[1:-1]
        new = ((v[1:-1] < low) | (v[1:-1] > high)) & (stuck[middle] | beside[middle])
        if not new.any():
            break
        out[middle[new]] = True
    return out


def drop_spikes(
    block: pd.DataFrame, specs: dict[str, SensorSpec], step: pd.Timedelta
) -> dict[str, int]:
    """Set the spikes of every sensor with a spike check to NaN, in place; counts per sensor."""
    counts: dict[str, int] = {}
    for name, spec in specs.items():
        if spec.spike_window is None or name not in block.columns:
            continue
        window = max(3, round(pd.Timedelta(spec.spike_window) / step))
        column = block[name].to_numpy(dtype=np.float64)
        spikes = run_spikes(
            column, window=window, sigmas=spec.spike_sigmas, min_delta=spec.spike_min_delta
        )
        if spikes.any():
            block.loc[spikes, name] = np.nan
        counts[name] = int(spikes.sum())
    return counts
