"""The stored grid: wide frames to long rows and back, ranged writes, and daily coverage.

The grid is stored long, one row per (entity, sensor, time), and only for the sensors an
entity has: a column that is all missing (and never filled) for an entity in a written range
is another entity's sensor, or dead there, and is not stored for it. So reading an entity
never yields another source's columns, and what a source stores does not depend on what else
the store holds. Reading an entity back gives the regular wide frame the era and feature
stages take (times the store never held in between are rows of NaN).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from eraflow.common.errors import StoreError
from eraflow.common.grid import mask_column, nan_runs, sensor_columns
from eraflow.store.base import Key, Range, ResultStore


def grid_to_long(grid: pd.DataFrame, keep: Collection[str] = ()) -> pd.DataFrame:
    """Wide grid (time, entity, sensors, masks) → long rows of each entity's own sensors.

    A column all missing and never filled for an entity is left out, unless named in
    ``keep`` (a sensor the entity's source mapped, dead in this range: coverage reports it).
    """
    sensors = sensor_columns(grid)
    parts = []
    for entity, part in grid.groupby("entity", sort=True, observed=True):
        times = pd.to_datetime(part["time"], utc=True).to_numpy()
        for sensor in sensors:
            values = part[sensor].to_numpy(dtype="float64", na_value=np.nan)
            mask_name = mask_column(sensor)
            filled = (
                part[mask_name].fillna(False).to_numpy(dtype=bool)
                if mask_name in part
                else np.zeros(len(part), dtype=bool)
            )
            if np.isnan(values).all() and not filled.any() and sensor not in keep:
                continue  # not this entity's sensor (or dead in this range)
            parts.append(
                pd.DataFrame(
                    {
                        "entity": str(entity),
                        "sensor": sensor,
                        "time": times,
                        "value": values,
                        "filled": filled,
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            {
                "entity": pd.Series([], dtype=str),
                "sensor": pd.Series([], dtype=str),
                "time": pd.Series([], dtype="datetime64[us, UTC]"),
                "value": pd.Series([], dtype="float64"),
                "filled": pd.Series([], dtype=bool),
            }
        )
    out = pd.concat(parts, ignore_index=True)
    out["time"] = out["time"].astype("datetime64[us, UTC]")
    return out


def _sensor_codes(sensor: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's position among the sorted sensor names, and the names.

    Factorised as the column comes (a categorical's codes, Arrow's dictionary): converting
    millions of rows to Python strings first was 1.5 s of the year's feature batches.
    """
    codes, uniques = pd.factorize(sensor)
    if (codes < 0).any():  # a missing name: read as the text it prints as, like any other
        codes, uniques = pd.factorize(sensor.astype(str))
    names = np.array([str(u) for u in uniques], dtype=object)
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return rank[codes], [str(n) for n in names[order]]


def long_to_frames(
    long: pd.DataFrame, step: pd.Timedelta | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One entity's long rows → (values, fill mask), indexed by UTC time, sensors sorted.

    With ``step``, the index is made regular from the first to the last time (holes become
    NaN rows, not filled); without, it holds the times present.
    """
    if not len(long):
        empty = pd.DatetimeIndex([], tz="UTC", name="time")
        return pd.DataFrame(index=empty), pd.DataFrame(index=empty)
    times = pd.DatetimeIndex(pd.to_datetime(long["time"], utc=True)).as_unit("ns")
    col, names = _sensor_codes(long["sensor"])
    if step is not None:
        first, last = times.min(), times.max()
        index = pd.date_range(first, last, freq=step, name="time", unit="ns")
        row = ((times - first) // step).to_numpy()
        if not (index[row] == times).all():
            raise StoreError(
                f"stored grid times are not on a regular {step} grid: re-run "
                "with the freq the store was written with"
            )
    else:
        uniq, row = np.unique(times.asi8, return_inverse=True)
        index = pd.DatetimeIndex(uniq, tz="UTC", name="time")
    values = np.full((len(index), len(names)), np.nan)
    filled = np.zeros((len(index), len(names)), dtype=bool)
    values[row, col] = long["value"].to_numpy(dtype="float64", na_value=np.nan)
    filled[row, col] = long["filled"].to_numpy(dtype=bool)
    return (
        pd.DataFrame(values, index=index, columns=names),
        pd.DataFrame(filled, index=index, columns=names),
    )


def write_grid(
    store: ResultStore, grid: pd.DataFrame, *, start: pd.Timestamp, end: pd.Timestamp
) -> int:
    """Replace each entity's stored grid in [start, end) by the rows of ``grid``.

    Returns the wide rows written. Rows outside [start, end) are refused before any write.
    """
    if start >= end:
        raise StoreError(f"empty range: start {start} is not before end {end}")
    times = pd.to_datetime(grid["time"], utc=True)
    outside = int(((times < start) | (times >= end)).sum())
    if outside:
        raise StoreError(f"{outside} grid rows lie outside [{start}, {end})")
    long = grid_to_long(grid)
    for entity in sorted(grid["entity"].astype(str).unique()):
        rows = long[long["entity"] == entity]
        store.replace("grid", rows, Key(entity, {"time": Range(start, end)}))
    return len(grid)


def read_entity_grid(
    store: ResultStore,
    entity: str,
    *,
    step: pd.Timedelta,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    sensors: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An entity's stored (values, fill mask) in [start, end), regular at ``step``."""
    where: dict[str, object] = {}
    if start is not None or end is not None:
        where["time"] = Range(start, end)
    if sensors is not None:
        where["sensor"] = list(sensors)
    long = store.read("grid", Key(entity, where))
    return long_to_frames(long, step)


def unfilled(values: pd.DataFrame, mask: pd.DataFrame) -> pd.DataFrame:
    """The measured values only: what gap-fill wrote becomes missing again (to refill)."""
    return values.mask(mask.reindex(columns=values.columns, fill_value=False))


def daily_coverage(entity: str, values: pd.DataFrame, mask: pd.DataFrame) -> pd.DataFrame:
    """Rows, measured, filled and missing values per (sensor, UTC day) of one entity.

    ``longest_gap_rows`` is the longest run of missing (not filled) rows inside the day.
    """
    columns = [
        "entity",
        "sensor",
        "day",
        "rows",
        "measured",
        "filled",
        "missing",
        "longest_gap_rows",
    ]
    if values.empty:
        return pd.DataFrame(columns=columns)
    days = values.index.floor("D")
    day_values, starts = np.unique(days.asi8, return_index=True)
    bounds = [*starts.tolist(), len(values)]
    rows = []
    for sensor in values.columns:
        present = values[sensor].notna().to_numpy()
        filled = mask[sensor].to_numpy(dtype=bool) & present
        for i, day in enumerate(day_values):
            a, b = bounds[i], bounds[i + 1]
            missing = ~present[a:b]
            run_starts, run_ends = nan_runs(missing)
            rows.append(
                (
                    entity,
                    sensor,
                    pd.Timestamp(day, tz="UTC"),
                    b - a,
                    int(present[a:b].sum() - filled[a:b].sum()),
                    int(filled[a:b].sum()),
                    int(missing.sum()),
                    int((run_ends - run_starts).max()) if run_starts.size else 0,
                )
            )
    out = pd.DataFrame(rows, columns=columns)
    out["day"] = out["day"].astype("datetime64[us, UTC]")
    return out


def whole_days(start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) widened to whole UTC days."""
    return start.floor("D"), end.ceil("D")
