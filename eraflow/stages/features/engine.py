"""Feature engine: per-entity frames in, the long feature table out; one batched pass.

NaN rule (tsfresh does not accept NaN): per (era, sensor), features with ``input="values"`` are
computed on the era's valid values with NaN dropped, i.e. exactly what tsfresh computes on the
``dropna``-ed series (differences then span gaps). Rolling features are computed on the grid
(windows touching a NaN are NaN and left out of the era summary). An (era, sensor) without any
valid value gets NaN for every feature except ``coverage`` (0).

All (era, sensor) segments of a call are gathered into one flat array with offsets and every
calculator runs once over all of them (NumPy or CuPy); only features and parameters are looped
over in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.features import arrays as ar
from eraflow.stages.features.native import NativeRate, native_rates, row_numbers
from eraflow.stages.features.registry import FeatureSpec, get_calculator, resolve_features
from eraflow.stages.features.segments import SegmentBatch

FEATURE_COLUMNS = ("entity", "level", "era_id", "sensor", "feature", "value", "engine")
FeatureValues = Literal["measured", "grid"]
"""What the engine reads per (era, sensor): each sensor's measured values at its own rate, or
every row of the gap-filled grid."""
_ERA_COLUMNS = ("level", "era_id", "start", "end")


def compute_segment_matrix(
    grid: Any,
    offsets: Any,
    features: str | Sequence[str | FeatureSpec] = "efficient",
    *,
    filled: Any | None = None,
    step: str | pd.Timedelta | None = None,
    device: ar.Device = "auto",
) -> tuple[np.ndarray, list[FeatureSpec], ar.Engine]:
    """Low-level batched kernel: flat segments in, a (segment x feature) matrix out.

    Parameters
    ----------
    grid
        1-D float array: all segments concatenated (NaN where missing). NumPy or CuPy.
    offsets
        int array of length ``nseg + 1``: segment ``i`` is ``grid[offsets[i]:offsets[i+1]]``.
    features
        A profile name (``"minimal"``, ``"efficient"``, ``"seeds"``) or a list of feature names.
    filled
        Optional bool array like ``grid``: True where gap-fill produced the value (coverage).
    step
        Grid step (e.g. ``"5min"``); needed only by rolling features.
    device
        ``"auto"``, ``"gpu"`` or ``"cpu"``.

    Returns
    -------
    tuple
        ``(matrix, specs, engine)``: a host float64 array of shape ``(nseg, len(specs))``.
    """
    xp, engine = ar.select_array_module(device)
    specs = resolve_features(features)
    step_ns = None if step is None else int(pd.Timedelta(step).value)
    g = xp.asarray(grid, dtype=np.float64)
    off = xp.asarray(offsets, dtype=np.int64)
    fm = None if filled is None else xp.asarray(filled, dtype=bool)
    if g.ndim != 1 or off.ndim != 1 or off.shape[0] < 1:
        raise DataError("grid must be 1-D and offsets 1-D with at least one element")
    if fm is not None and fm.shape != g.shape:
        raise DataError(f"filled has shape {fm.shape}, grid has shape {g.shape}")
    batch = SegmentBatch(xp, g, off, filled=fm, step_ns=step_ns)
    return _run(batch, specs), specs, engine


def _run(batch: SegmentBatch, specs: list[FeatureSpec]) -> np.ndarray:
    xp = batch.xp
    out = xp.full((batch.nseg, len(specs)), np.nan)
    by_calc: dict[str, list[int]] = {}
    for j, s in enumerate(specs):
        by_calc.setdefault(s.calculator, []).append(j)
    with np.errstate(all="ignore"):
        for name, cols in by_calc.items():
            calc = get_calculator(name)
            res = calc.func(batch, [dict(specs[j].params) for j in cols])
            res = xp.asarray(res, dtype=np.float64).reshape(len(cols), batch.nseg)
            # the NaN rule: no valid value -> the calculator's empty value (NaN but coverage);
            # an era without any grid row -> NaN for everything
            res = xp.where(batch.nonempty[None, :], res, calc.empty_value)
            res = xp.where(batch.grid_len[None, :] > 0, res, np.nan)
            out[:, xp.asarray(cols)] = res.T
    return ar.to_host(out)


def infer_step(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The regular step of ``index`` or None when it has fewer than two rows.

    Raises
    ------
    DataError
        When the index is not regular.
    """
    if len(index) < 2:
        return None
    d = np.diff(index.as_unit("ns").asi8)
    if not (d == d[0]).all():
        raise DataError("the time index is not a regular grid (steps differ); aggregate it first")
    return pd.Timedelta(int(d[0]), unit="ns")


def validate_inputs(
    values: pd.DataFrame, fill_mask: pd.DataFrame | None, eras: pd.DataFrame
) -> None:
    """Check the grid/mask/eras contract shared by the engine and the tsfresh stage."""
    idx = values.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise DataError("values must have a DatetimeIndex named 'time'")
    if idx.tz is None or str(idx.tz) not in ("UTC", "utc"):
        raise DataError(f"the time index must be timezone-aware UTC, got tz={idx.tz!r}")
    if not idx.is_monotonic_increasing or not idx.is_unique:
        raise DataError("the time index must be sorted and unique")
    if fill_mask is not None:
        if fill_mask.shape != values.shape:
            raise DataError(
                f"fill_mask has shape {fill_mask.shape}, values has shape {values.shape}; "
                "pass the mask produced with these values"
            )
        if not fill_mask.index.equals(idx) or list(fill_mask.columns) != list(values.columns):
            raise DataError("fill_mask must have the same index and columns as values")
    missing = [c for c in _ERA_COLUMNS if c not in eras.columns]
    if missing:
        raise DataError(f"eras lacks columns {missing}; expected at least {list(_ERA_COLUMNS)}")


def compute_features(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    eras: pd.DataFrame,
    *,
    entity: str,
    profile: str | Sequence[str | FeatureSpec] = "efficient",
    device: ar.Device = "auto",
    sensors: Sequence[str] | None = None,
    step: str | pd.Timedelta | None = None,
    feature_values: FeatureValues = "measured",
    native_intervals: Mapping[str, timedelta | None] | None = None,
) -> pd.DataFrame:
    """Compute features for every era of ``eras`` and every sensor, in one batched pass.

    Parameters
    ----------
    values
        Grid of one entity: DatetimeIndex "time" (UTC, regular, sorted, unique), one float
        column per sensor, NaN where a value stayed missing.
    fill_mask
        Bool frame like ``values``: True where gap-fill produced the value (for coverage).
        None means "nothing was filled".
    eras
        Columns ``level``, ``era_id``, ``start``, ``end`` (UTC, half-open ``[start, end)``);
        an ``entity`` column, when present, is filtered to ``entity``.
    entity
        Entity key written to the output.
    profile
        ``"efficient"`` (default), ``"minimal"``, ``"seeds"``, or a list of feature names
        (``"quantile__q_0.25"``).
    device
        ``"auto"`` (GPU when CuPy sees a device), ``"gpu"`` or ``"cpu"``.
    sensors
        Subset of columns (default: all).
    step
        Grid step; inferred from the index when omitted.
    feature_values
        ``"measured"`` (default): each sensor on its native grid
        (:mod:`eraflow.stages.features.native`), gap-filled values left out, so a sensor
        slower than the grid is read at its own interval and rolling and time-wise features
        use its own step; one batched pass per distinct native grid. ``"grid"``: every grid
        row, gap-filled values included.
    native_intervals
        Declared logging intervals per sensor (the catalogue's); others are inferred.

    Returns
    -------
    pandas.DataFrame
        Long table with columns exactly :data:`FEATURE_COLUMNS`, on the host.
    """
    if feature_values not in ("measured", "grid"):
        raise ConfigError(f"feature_values must be 'measured' or 'grid', got {feature_values!r}")
    validate_inputs(values, fill_mask, eras)
    if feature_values == "grid":
        return _compute_on_grid(values, fill_mask, eras, entity, profile, device, sensors, step)
    cols = list(values.columns) if sensors is None else list(sensors)
    step_td = pd.Timedelta(step) if step is not None else infer_step(values.index)
    if step_td is None:  # one row: nothing to infer a rate from
        return _compute_on_grid(values, fill_mask, eras, entity, profile, device, cols, step)
    unknown = [c for c in cols if c not in values.columns]
    if unknown:
        raise ConfigError(f"unknown sensors {unknown}; values has {list(values.columns)}")
    measured = values[cols]
    mask = None if fill_mask is None else fill_mask[cols]
    filled = None if mask is None else mask.to_numpy(dtype=bool)
    if filled is not None and filled.any():  # most batches of a 5-minute logger: none
        measured = measured.mask(filled)
    rates = native_rates(measured, mask, step_td, native_intervals)
    groups: dict[NativeRate, list[str]] = {}
    for sensor in cols:
        groups.setdefault(rates[sensor], []).append(sensor)
    numbers = row_numbers(pd.DatetimeIndex(values.index), step_td)
    parts = []
    for rate, group in groups.items():
        on = rate.rows(numbers)
        parts.append(
            _compute_on_grid(
                measured.loc[on, group],
                None if mask is None else mask.loc[on, group],
                eras,
                entity,
                profile,
                device,
                group,
                step_td * rate.stride,
                native_stride=rate.stride,
            )
        )
    return parts[0] if len(parts) == 1 else concat_feature_rows(parts)


def concat_feature_rows(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Long feature tables one after the other, label columns kept categorical.

    ``pd.concat`` turns categoricals with different categories into objects (a string per
    row); the engine's batches hold millions of rows, so the labels are re-encoded.
    """
    parts = [f for f in frames if len(f.columns)]
    labels = ("entity", "level", "sensor", "feature", "engine")
    if len(parts) > 1:
        for column in [c for c in labels if all(c in p.columns for p in parts)]:
            # one set of categories: concat then keeps the codes (no string per row)
            as_categories = [p[column].astype("category") for p in parts]
            union = pd.Index(
                pd.unique(np.concatenate([c.cat.categories.to_numpy() for c in as_categories]))
            )
            parts = [
                p.assign(**{column: c.cat.set_categories(union)})
                for p, c in zip(parts, as_categories, strict=True)
            ]
    out = pd.concat(parts, ignore_index=True)
    for column in labels:
        if column in out.columns and not isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype("category")
    return out


def _compute_on_grid(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    eras: pd.DataFrame,
    entity: str,
    profile: str | Sequence[str | FeatureSpec],
    device: ar.Device,
    sensors: Sequence[str] | None,
    step: str | pd.Timedelta | None,
    native_stride: int = 1,
) -> pd.DataFrame:
    """The batched pass over every row of ``values`` (one regular grid, native or not)."""
    specs = resolve_features(profile)
    cols = list(values.columns) if sensors is None else list(sensors)
    unknown = [c for c in cols if c not in values.columns]
    if unknown:
        raise ConfigError(f"unknown sensors {unknown}; values has {list(values.columns)}")
    inferred = infer_step(values.index)
    step_td = pd.Timedelta(step) if step is not None else inferred
    if step is not None and inferred is not None and step_td != inferred:
        raise DataError(f"step={step!r} does not match the index step {inferred}")
    eras_e = eras
    if "entity" in eras.columns:
        eras_e = eras[eras["entity"].astype(str) == str(entity)]
    eras_e = eras_e.reset_index(drop=True)

    x = values[cols].to_numpy(dtype=np.float64)
    fm = None if fill_mask is None else fill_mask[cols].to_numpy(dtype=bool)
    t = values.index.as_unit("ns").asi8
    starts = to_utc_ns(eras_e["start"])
    ends = to_utc_ns(eras_e["end"])
    r0 = np.searchsorted(t, starts, side="left")
    r1 = np.searchsorted(t, ends, side="left")
    r1 = np.maximum(r1, r0)
    nera, nsens = len(eras_e), len(cols)

    # segment i = era (i // nsens), sensor (i % nsens); gathered in one vectorised index
    seg_len = np.repeat(r1 - r0, nsens)
    offsets = np.concatenate([[0], np.cumsum(seg_len)]).astype(np.int64)
    total = int(offsets[-1])
    seg_of = np.repeat(np.arange(nera * nsens), seg_len)
    pos = np.arange(total) - offsets[:-1][seg_of]
    rows = np.repeat(r0, nsens)[seg_of] + pos
    colidx = np.tile(np.arange(nsens), nera)[seg_of]
    flat = rows * nsens + colidx

    xp, engine = ar.select_array_module(device)
    xd = xp.asarray(x.reshape(-1))
    flat_d = xp.asarray(flat)
    grid = xd[flat_d] if total else xp.zeros(0)
    filled = None
    if fm is not None:
        filled = xp.asarray(fm.reshape(-1))[flat_d] if total else xp.zeros(0, dtype=bool)
    batch = SegmentBatch(
        xp,
        grid,
        xp.asarray(offsets),
        filled=filled,
        step_ns=None if step_td is None else int(step_td.value),
        native_stride=native_stride,
    )
    matrix = _run(batch, specs)

    return long_frame(
        entity=str(entity),
        levels=eras_e["level"].astype(str).to_numpy(),
        era_ids=eras_e["era_id"].to_numpy(dtype=np.int64),
        sensors=cols,
        features=[s.name for s in specs],
        values=matrix,
        engine=engine,
    )


def long_frame(
    *,
    entity: str,
    levels: np.ndarray,
    era_ids: np.ndarray,
    sensors: Sequence[str],
    features: Sequence[str],
    values: np.ndarray,
    engine: str,
) -> pd.DataFrame:
    """The long feature table of an (era x sensor) x feature matrix, names as categoricals.

    Categorical codes instead of a string per row: a batch of a few hundred eras has millions
    of rows, and per-row strings multiplied its memory by about five.
    """
    nera, nsens, nfeat = len(era_ids), len(sensors), len(features)
    n = nera * nsens * nfeat

    def constant(value: str) -> pd.Categorical:
        return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])

    level_names, level_codes = np.unique(np.asarray(levels, dtype=str), return_inverse=True)
    return pd.DataFrame(
        {
            "entity": constant(entity),
            "level": pd.Categorical.from_codes(
                np.repeat(level_codes.astype(np.int8), nsens * nfeat), categories=level_names
            ),
            "era_id": np.repeat(np.asarray(era_ids, dtype=np.int64), nsens * nfeat),
            "sensor": pd.Categorical.from_codes(
                np.tile(np.repeat(np.arange(nsens, dtype=np.int32), nfeat), nera),
                categories=list(sensors),
            ),
            "feature": pd.Categorical.from_codes(
                np.tile(np.arange(nfeat, dtype=np.int32), nera * nsens), categories=list(features)
            ),
            "value": np.asarray(values, dtype=np.float64).reshape(-1),
            "engine": constant(engine),
        }
    )


def to_utc_ns(col: pd.Series) -> np.ndarray:
    """UTC nanoseconds of a tz-aware time column (era bounds), as int64."""
    ts = pd.DatetimeIndex(pd.to_datetime(col))
    if ts.tz is None:
        raise DataError("era start/end must be timezone-aware UTC timestamps")
    return ts.tz_convert("UTC").as_unit("ns").asi8


def to_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Pivot to one row per (entity, level, era_id) and columns ``<sensor>__<feature>``."""
    w = long.assign(column=long["sensor"].astype(str) + "__" + long["feature"].astype(str))
    return w.pivot(index=["entity", "level", "era_id"], columns="column", values="value")
