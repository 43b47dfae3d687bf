"""Nested era levels A ⊃ B ⊃ C over one entity's gap-filled sensor grid.

Level C (finest) is found by PELT (or BOCPD) on block means of the standardised signals over
``detect_step``; its breakpoints are mapped back to grid rows. Level B is the exact penalised
optimum whose boundaries are a subset of C's, with a larger penalty and minimum length, scored on
every grid row (cumulative sums); level A likewise over B's boundaries. So every A boundary is a
B boundary and every B boundary a C boundary, by construction. All boundaries therefore fall on
``detect_step`` block edges (hourly by default, counted from the first row); PELT on the grid
itself is available through :func:`eraflow.stages.eras.pelt` (about 20 s for a 5-minute year).

Missing values: each signal is interpolated linearly in time (and extended flat at both ends)
for detection only; ``rows`` counts every grid row, filled or not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from eraflow.common.errors import DataError
from eraflow.stages.eras.bocpd import bocpd
from eraflow.stages.eras.config import LEVELS, EraConfig, Scaling
from eraflow.stages.eras.costs import BaseCost, cost_factory
from eraflow.stages.eras.exceptions import SignalDataError, UnknownSignalError
from eraflow.stages.eras.pelt import bic_penalty, partition_candidates, pelt_fitted

__all__ = [
    "ERA_COLUMNS",
    "EraWarning",
    "boundary_gains",
    "default_signals",
    "detect_eras",
    "grid_step",
    "select_signals",
    "standardise",
]

#: Columns of the eras table, in order.
ERA_COLUMNS: tuple[str, ...] = (
    "entity",
    "level",
    "era_id",
    "start",
    "end",
    "rows",
    "method",
    "signals",
    "score",
)

#: Default signal groups, in order: the first column matching a group's tokens is used.
_SIGNAL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("air_temp",),
    ("co2",),
    ("humidity_deficit", "vpd", "rh", "humidity"),
    ("radiation", "par", "light", "global_rad"),
    ("pipe_temp", "pipe"),
)


class EraWarning(UserWarning):
    """A signal was left out of era detection (all missing or constant)."""


def _matches(column: str, token: str) -> bool:
    name = column.lower()
    if "_" in token or len(token) > 4:
        return token in name
    return token in name.replace("-", "_").split("_")


def default_signals(columns: Sequence[str]) -> list[str]:
    """Pick detection signals among ``columns``: air temp, CO2, humidity, light, pipe temp.

    One column per group, the first that matches (by substring, or by whole ``_``-separated
    word for short tokens such as ``rh``); groups with no match are skipped. Outside weather
    and actuator states (curtains, lamps, vents) are not climate regimes and are left out.
    """
    chosen: list[str] = []
    for tokens in _SIGNAL_GROUPS:
        for token in tokens:
            hit = next((c for c in columns if c not in chosen and _matches(str(c), token)), None)
            if hit is not None:
                chosen.append(str(hit))
                break
    return chosen


def grid_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """Return the regular step of a sorted, unique grid index (or its ``freq`` if one row).

    Raises
    ------
    eraflow.common.errors.DataError
        When the steps differ or cannot be inferred.
    """
    if len(index) < 2:
        if index.freq is None:
            raise DataError("cannot infer the grid step from one row: give the index a freq")
        return pd.Timedelta(index.freq)
    diffs = np.diff(index.as_unit("ns").asi8)
    if diffs.min() <= 0:
        raise DataError("values.index must be sorted and unique (strictly increasing)")
    if diffs.min() != diffs.max():
        raise DataError(
            "values.index is not a regular grid (steps from "
            f"{pd.Timedelta(int(diffs.min()), 'ns')} to {pd.Timedelta(int(diffs.max()), 'ns')}): "
            "aggregate to a regular grid first"
        )
    return pd.Timedelta(int(diffs[0]), "ns")


def standardise(x: NDArray[np.float64], *, scaling: Scaling) -> NDArray[np.float64]:
    """Centre and scale each column of an ``(n, d)`` array; NaN are left out and kept.

    ``robust``: ``(x - median) / (IQR / 1.349)`` (the IQR of a normal law is 1.349 sigma);
    columns with IQR 0 (binary or mostly flat) fall back to the standard deviation. ``zscore``:
    ``(x - mean) / std``. A constant column (scale 0) becomes all zeros, never NaN; an all-NaN
    column stays NaN.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        if scaling == "robust":
            centre = np.nanmedian(x, axis=0)
            q75, q25 = np.nanpercentile(x, [75.0, 25.0], axis=0)
            scale = (q75 - q25) / 1.349
            scale = np.where(scale > 0, scale, np.nanstd(x, axis=0))
        else:
            centre = np.nanmean(x, axis=0)
            scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    out: NDArray[np.float64] = (x - centre) / scale
    return out


def _note(message: str, notes: list[str] | None) -> None:
    """Into ``notes`` when given (thread-safe, per call), else an EraWarning."""
    if notes is not None:
        notes.append(message)
    else:
        warnings.warn(message, EraWarning, stacklevel=4)


def select_signals(
    values: pd.DataFrame, config: EraConfig, notes: list[str] | None = None
) -> list[str]:
    """The columns detection uses: the named signals, or the defaults present with data."""
    explicit = config.signals is not None
    if explicit:
        assert config.signals is not None
        missing = [s for s in config.signals if s not in values.columns]
        if missing:
            raise UnknownSignalError(
                f"signals {missing} are not columns of the values frame; "
                f"available: {sorted(map(str, values.columns))}"
            )
        names = list(config.signals)
    else:
        names = default_signals([str(c) for c in values.columns])
        if not names:
            raise UnknownSignalError(
                "no default era signal (air temp, CO2, humidity, light, pipe temp) among "
                f"{sorted(map(str, values.columns))}: name them in EraConfig(signals=...)"
            )
    frame = values[names]
    non_numeric = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise SignalDataError(f"signals {non_numeric} are not numeric columns")
    empty = [c for c in names if frame[c].notna().sum() == 0]
    if empty and (explicit or len(empty) == len(names)):
        raise SignalDataError(
            f"signals {empty} have no values in this range (all NaN): "
            "leave them out of EraConfig(signals=...)"
        )
    if empty:
        _note(f"era detection skips all-NaN signals {empty}", notes)
        names = [c for c in names if c not in empty]
    if not explicit:
        flat = [c for c in names if frame[c].max() == frame[c].min()]
        if flat and len(flat) < len(names):
            _note(f"era detection skips constant signals {flat}", notes)
            names = [c for c in names if c not in flat]
    return names


def _detection_matrix(values: pd.DataFrame, names: list[str], scaling: Scaling) -> NDArray:
    frame = values[names].astype("float64")
    if frame.isna().to_numpy().any():
        frame = frame.interpolate(method="time", limit_direction="both")
    return standardise(frame.to_numpy(dtype=np.float64, copy=True), scaling=scaling)


def _block_means(x: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    n, d = x.shape
    full = n // k
    out = np.empty((math.ceil(n / k), d))
    out[:full] = x[: full * k].reshape(full, k, d).mean(axis=1)
    if full * k < n:
        out[full] = x[full * k :].mean(axis=0)
    return out


def boundary_gains(cost: BaseCost, bkps: Sequence[int]) -> NDArray[np.float64]:
    """Cost reduction bought by each boundary: ``C(prev ∪ this) - C(prev) - C(this)``.

    Returns one value per segment of ``bkps`` (ruptures-style breakpoints ending with ``n``),
    NaN for the first segment, which has no start boundary.
    """
    starts = [0, *bkps[:-1]]
    gains = np.full(len(bkps), np.nan)
    for i in range(1, len(bkps)):
        s0, b, e = starts[i - 1], starts[i], bkps[i]
        gains[i] = cost.error(s0, e) - cost.error(s0, b) - cost.error(b, e)
    return gains


def _level_c(
    x: NDArray[np.float64], config: EraConfig, step: pd.Timedelta, cost_kwargs: dict[str, float]
) -> tuple[list[int], str]:
    n = x.shape[0]
    k = 1
    if config.detect_step is not None:
        k = max(1, round(pd.Timedelta(config.detect_step) / step))
    xd = _block_means(x, k) if k > 1 else x
    cost = cost_factory(config.model, **cost_kwargs).fit(xd)
    nd = xd.shape[0]
    min_d = max(cost.min_size, math.ceil(config.level_c.min_rows(step) / k))
    if nd < 2 * min_d:
        return [n], "pelt-" + config.model if config.method == "pelt" else "bocpd"
    if config.method == "pelt":
        lc = config.level_c
        pen = lc.pen if lc.pen is not None else bic_penalty(cost, n_rows=nd, scale=lc.penalty_scale)
        bkps_d = pelt_fitted(cost, pen=pen, min_size=min_d)
        method = f"pelt-{config.model}"
    else:
        bs = config.bocpd
        dstep = step * k
        r_max = max(2, math.ceil(pd.Timedelta(bs.max_run) / dstep))
        lag = min(r_max - 1, round(pd.Timedelta(bs.lag) / dstep))
        hazard = min(0.5, float(dstep / pd.Timedelta(bs.expected_run)))
        res = bocpd(xd, hazard=hazard, r_max=r_max, lag=lag, threshold=bs.threshold, min_size=min_d)
        bkps_d = res.bkps
        method = "bocpd"
    min_rows = config.level_c.min_rows(step)
    # a partial last block can leave the last era up to k - 1 rows short: drop that boundary
    bkps = [b * k for b in bkps_d[:-1] if n - b * k >= min_rows]
    return [*bkps, n], method


def _table(
    entity: str,
    level: str,
    index: pd.DatetimeIndex,
    step: pd.Timedelta,
    bkps: list[int],
    method: str,
    signals: str,
    score: NDArray[np.float64],
) -> pd.DataFrame:
    starts = np.array([0, *bkps[:-1]], dtype=np.int64)
    ends = np.array(bkps, dtype=np.int64)
    end_times = index.append(pd.DatetimeIndex([index[-1] + step])).as_unit(index.unit)
    return pd.DataFrame(
        {
            "entity": pd.Series([entity] * len(bkps), dtype=object),
            "level": pd.Series([level] * len(bkps), dtype=object),
            "era_id": np.arange(len(bkps), dtype=np.int64),
            "start": index[starts].as_unit(index.unit),
            "end": end_times[ends],
            "rows": ends - starts,
            "method": pd.Series([method] * len(bkps), dtype=object),
            "signals": pd.Series([signals] * len(bkps), dtype=object),
            "score": score.astype(np.float64),
        }
    )


def detect_eras(
    values: pd.DataFrame,
    *,
    entity: str,
    config: EraConfig | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Segment one entity's sensor grid into nested eras A ⊃ B ⊃ C.

    Parameters
    ----------
    values : DataFrame
        One entity's gap-filled grid: a tz-aware ``DatetimeIndex`` (converted to UTC) with a
        regular step, sorted and unique; one float column per sensor. NaN allowed (interpolated
        for detection only).
    entity : str
        Entity key written to every row (e.g. ``"knudjepsen/NO3"``).
    config : EraConfig, optional
        Signals, cost, penalties and minimum lengths; defaults to ``EraConfig()``.
    notes : list of str, optional
        Where skipped signals are noted; without it they are :class:`EraWarning` s (the
        warnings machinery is process-wide: threads segmenting other entities would catch
        each other's warnings).

    Returns
    -------
    DataFrame
        The eras table, columns :data:`ERA_COLUMNS`: ``entity``, ``level`` (``"A"``, ``"B"``,
        ``"C"``), ``era_id`` (int64, from 0 in time order within entity and level), ``start``
        and ``end`` (UTC; the era is ``[start, end)``, the last ``end`` = last row + step),
        ``rows`` (int64 grid rows), ``method`` (``"pelt-<model>"`` or ``"bocpd"`` for level C,
        ``"op-<model>"`` for A and B: optimal partitioning over the finer level's boundaries),
        ``signals`` (comma-joined detection columns) and ``score``: the cost reduction bought by
        the era's start boundary, ``C(previous ∪ era) - C(previous) - C(era)`` on the grid
        rows of the standardised signals (the level's cost), NaN for each level's first era.
        A series too short for two eras of a level (``< 2 * min_size`` rows), or whose signals
        are all constant, is one era at that level.

    Raises
    ------
    UnknownSignalError
        A named signal is not a column, or no default signal is present.
    SignalDataError
        A named signal is all NaN (unnamed all-NaN defaults are skipped with an
        :class:`EraWarning`), or a signal is not numeric.
    eraflow.common.errors.DataError
        The frame is empty, not on a tz-aware regular time grid.
    """
    config = config if config is not None else EraConfig()
    if not isinstance(values, pd.DataFrame) or not isinstance(values.index, pd.DatetimeIndex):
        raise DataError("values must be a DataFrame with a DatetimeIndex named 'time'")
    if len(values) == 0:
        raise DataError(f"values for entity {entity!r} has no rows: nothing to segment")
    if values.index.tz is None:
        raise DataError("values.index must be tz-aware (UTC); localise it first")
    index = values.index.tz_convert("UTC")
    step = grid_step(index)
    names = select_signals(values, config, notes)
    x = _detection_matrix(values, names, config.scaling)
    n = x.shape[0]
    cost_kwargs: dict[str, float] = (
        {"eps": config.variance_floor} if config.model == "normal" else {}
    )
    signals = ",".join(names)
    if np.all(x == 0.0):  # every signal constant: nothing can change
        bkps_c, method_c = [n], f"pelt-{config.model}" if config.method == "pelt" else "bocpd"
        full = None
    else:
        bkps_c, method_c = _level_c(x, config, step, cost_kwargs)
        full = cost_factory(config.model, **cost_kwargs).fit(x)
    levels: dict[str, list[int]] = {"C": bkps_c}
    for name, finer in (("B", "C"), ("A", "B")):
        lc = config.level(name)
        if full is None:
            levels[name] = [n]
            continue
        pen = lc.pen if lc.pen is not None else bic_penalty(full, n_rows=n, scale=lc.penalty_scale)
        levels[name] = partition_candidates(
            full, levels[finer], pen=pen, min_size=lc.min_rows(step)
        )
    tables = []
    for name in LEVELS:
        bkps = levels[name]
        method = method_c if name == "C" else f"op-{config.model}"
        score = boundary_gains(full, bkps) if full is not None else np.full(len(bkps), np.nan)
        tables.append(_table(entity, name, index, step, bkps, method, signals, score))
    out = pd.concat(tables, ignore_index=True)
    return out.loc[:, list(ERA_COLUMNS)]
