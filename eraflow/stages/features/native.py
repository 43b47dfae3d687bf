"""Each sensor at its own rate: which grid rows hold a sensor's readings.

Gap-fill gives era detection and plots a continuous grid, but a sensor that logs every hour on
a 10-minute grid has five interpolated rows for each measured one: its features would describe
the interpolation (lower variance and entropy, higher autocorrelation, counts of invented
rows). So the engine reads each sensor on its *native grid*: every ``stride``-th grid row, in
the phase its readings sit in, with the gap-filled values taken out. Rolling windows and
time-wise features then use the native step, so they mean the same whatever the sensor's rate;
a sensor as fast as the grid (or faster, averaged into it) has stride 1 and is read as before.

The stride is the catalogue's ``native_interval`` in grid steps when declared, else inferred
from the measured rows: the median spacing between consecutive measured rows. Row numbers
count grid steps since the Unix epoch, so the phase is the same in every batch of a history.
A native grid must hold every reading: a sensor whose readings do not all sit on one phase
(a logger without a fixed schedule) is read at the grid's rate, so no measured value is ever
left out; only its rolling windows then see the gaps between readings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class NativeRate:
    """A native grid: every ``stride``-th grid row, those with ``row % stride == phase``."""

    stride: int = 1
    phase: int = 0

    def rows(self, row_numbers: np.ndarray) -> np.ndarray:
        """Which of these grid rows (numbered since the epoch) lie on the native grid."""
        if self.stride == 1:
            return np.ones(len(row_numbers), dtype=bool)
        return row_numbers % self.stride == self.phase


GRID_RATE = NativeRate()


def row_numbers(index: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """Grid steps since the Unix epoch of each row of a regular UTC index."""
    return index.as_unit("ns").asi8 // int(step.value)


def infer_rate(measured_rows: np.ndarray, declared_stride: int | None = None) -> NativeRate:
    """The native grid of one sensor from the row numbers of its measured values.

    ``declared_stride`` (the catalogue's interval in grid steps) fixes the stride; the phase
    is always the most common ``row % stride`` of the readings.
    """
    if len(measured_rows) < 3 and declared_stride is None:
        return GRID_RATE
    stride = declared_stride
    if stride is None:
        stride = int(np.median(np.diff(measured_rows)))
    if stride <= 1:
        return GRID_RATE
    on = np.bincount(measured_rows % stride, minlength=stride)
    phase = int(on.argmax())
    if on[phase] < len(measured_rows):  # drifting timestamps: no native grid holds them all
        return GRID_RATE
    return NativeRate(stride=stride, phase=phase)


def native_rates(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    step: pd.Timedelta,
    declared: Mapping[str, timedelta | None] | None = None,
) -> dict[str, NativeRate]:
    """Each column's native grid on this regular grid (measured = not NaN, not gap-filled)."""
    numbers = row_numbers(pd.DatetimeIndex(values.index), step)
    measured = values.notna().to_numpy().copy()
    if fill_mask is not None:
        measured &= ~fill_mask[list(values.columns)].to_numpy(dtype=bool)
    rates = {}
    for j, sensor in enumerate(values.columns):
        interval = (declared or {}).get(str(sensor))
        stride = None if interval is None else max(1, round(pd.Timedelta(interval) / step))
        rates[str(sensor)] = infer_rate(numbers[measured[:, j]], stride)
    return rates
