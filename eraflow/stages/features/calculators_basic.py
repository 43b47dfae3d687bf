"""eraflow's own per-era features (not in tsfresh): coverage and the spread of changes.

Names are eraflow's; none collides with a tsfresh calculator, so ``<sensor>__<feature>`` stays
unambiguous when both engines' columns are mixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eraflow.stages.features import arrays as ar
from eraflow.stages.features.kernels import Params
from eraflow.stages.features.registry import feature
from eraflow.stages.features.segments import SegmentBatch


@feature("coverage", tsfresh=False, minimal=True, input="grid", empty_value=0.0)
def coverage(b: SegmentBatch, params: Params) -> Any:
    """Share of the era's grid rows holding a real measurement (not gap-filled, not NaN).

    ``(not NaN and not filled) / grid rows``; 0 for an era whose sensor has no valid value,
    NaN for an era with no grid rows. Without a fill mask every non-NaN value counts as real.
    """
    xp = b.xp
    real = b.grid_valid if b.filled is None else b.grid_valid & ~b.filled
    real_n = ar.seg_count(xp, real, b.grid_seg, b.nseg)
    return b.div(real_n, b.grid_len.astype(np.float64))[None, :]


@feature("measured_values", tsfresh=False, minimal=True, input="grid", empty_value=0.0)
def measured_values(b: SegmentBatch, params: Params) -> Any:
    """How many measured values the era's features rest on: not NaN and not gap-filled.

    On a sensor's native grid (``feature_values = "measured"``) this is the number of its
    readings in the era, whatever the grid's step, so a modeller can weight or drop thin
    (era, sensor) pairs; on the full grid it still counts only the measured rows.
    """
    xp = b.xp
    real = b.grid_valid if b.filled is None else b.grid_valid & ~b.filled
    return ar.seg_count(xp, real, b.grid_seg, b.nseg).astype(np.float64)[None, :]


@feature("diff_std", tsfresh=False)
def diff_std(b: SegmentBatch, params: Params) -> Any:
    """Population standard deviation (ddof 0) of the first differences of the valid values.

    Complements tsfresh's ``mean_change`` (the mean of the same differences); NaN for fewer
    than two values. Differences are taken between consecutive *valid* values, as tsfresh
    would on the ``dropna``-ed series.
    """
    xp = b.xp
    d, sid = b.diff
    m = b.n - 1.0
    safe = xp.where(m > 0, m, 1.0)
    mu = ar.seg_sum(xp, d, sid, b.nseg) / safe
    var = ar.seg_sum(xp, (d - mu[sid]) ** 2, sid, b.nseg) / safe
    return xp.where(m > 0, xp.sqrt(var), np.nan)[None, :]
