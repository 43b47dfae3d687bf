"""Stage 1, aggregate: merge canonical long rows from several sources onto one regular grid.

Merging is column-wise per timestamp: every source contributes its own sensors at every
timestamp, so no source row "wins" and drops another's columns (the system eraflow replaces
kept one source row per minute and lost about half of its data that way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eraflow.catalogue import Catalogue, SensorSpec
from eraflow.common.errors import DataError
from eraflow.common.grid import grid_step
from eraflow.stages.ingest.readers import LONG_COLUMNS
from eraflow.stages.spikes import drop_spikes

ABSURD = 1e9
"""The bound of a sensor the catalogue gives none: beyond it a value is a sentinel."""


@dataclass
class AggregateReport:
    """What aggregation did, per (entity, sensor), and what it could not place.

    ``per_sensor`` columns: entity, sensor, values_in, dropped_non_finite (inf, NaN),
    dropped_out_of_range, multi_source_bins, dropped_spike (grid values the catalogue's
    Hampel check dropped, :mod:`eraflow.stages.spikes`), native_interval (how often the
    sensor logs: the catalogue's ``native_interval``, else the median spacing of its valid
    source timestamps), interval_from (``catalogue`` or ``source``), slower_than_grid.
    """

    per_sensor: pd.DataFrame
    unknown_sensors: list[str] = field(default_factory=list)
    freq: str = "5min"


@dataclass
class AggregateResult:
    """The wide grid (time, entity, one float column per sensor) and its report."""

    grid: pd.DataFrame
    report: AggregateReport


def _validate(frame: pd.DataFrame) -> None:
    missing = [c for c in ("time", "entity", "sensor", "value") if c not in frame.columns]
    if missing:
        raise DataError(f"long rows lack column(s) {missing}; expected {LONG_COLUMNS}")
    if not isinstance(frame["time"].dtype, pd.DatetimeTZDtype) or str(frame["time"].dt.tz) != "UTC":
        raise DataError(f"column 'time' must be tz-aware UTC, got {frame['time'].dtype}")
    if not pd.api.types.is_float_dtype(frame["value"]):
        raise DataError(f"column 'value' must be float, got {frame['value'].dtype}")


def native_intervals(rows: pd.DataFrame, specs: Mapping[str, SensorSpec]) -> pd.DataFrame:
    """How often each (entity, sensor) logs: the catalogue's value, else inferred.

    ``rows``: valid long rows sorted by entity, sensor, time. Inferred as the median spacing
    of distinct timestamps (robust to a few gaps and bursts); NaT for a single timestamp.
    """
    times = rows[["entity", "sensor", "time"]].drop_duplicates()
    spacing = times.groupby(["entity", "sensor"], observed=True)["time"].diff()
    inferred = (
        times.assign(spacing=spacing)
        .groupby(["entity", "sensor"], observed=True)["spacing"]
        .median()
    )
    declared = [
        specs[str(sensor)].native_interval for sensor in inferred.index.get_level_values("sensor")
    ]
    use_declared = np.array([d is not None for d in declared], dtype=bool)
    interval = pd.Series(
        [pd.Timedelta(d) if d is not None else i for d, i in zip(declared, inferred, strict=True)],
        index=inferred.index,
        dtype="timedelta64[ns]",
    )
    return pd.DataFrame(
        {
            "native_interval": interval,
            "interval_from": np.where(use_declared, "catalogue", "source"),
        }
    )


def aggregate(
    frames: Sequence[pd.DataFrame],
    catalogue: Catalogue,
    *,
    freq: str = "5min",
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> AggregateResult:
    """Resample canonical long rows to a regular UTC grid, one wide block per entity.

    Each grid row at ``t`` summarises raw values in ``[t, t + step)`` with the sensor's
    catalogue method (mean for continuous, max for binary, ...). Values outside the
    catalogue's valid range are dropped first and counted. The grid spans ``[start, end)``
    when given, else the first to the last bin with data, per entity.
    """
    step = grid_step(freq)
    for frame in frames:
        _validate(frame)
    if start is not None and end is not None and start >= end:
        raise DataError(f"empty range: start {start} is not before end {end}")
    nonempty = [
        f[["time", "entity", "sensor", "value", *(["source"] if "source" in f else [])]]
        for f in frames
        if len(f)
    ]
    if not nonempty:
        raise DataError("no data: the sources hold no rows in the requested range")
    rows = pd.concat(nonempty, ignore_index=True)
    if "source" not in rows:
        rows["source"] = "unknown"
    if start is not None:
        rows = rows[rows["time"] >= start]
    if end is not None:
        rows = rows[rows["time"] < end]
    if rows.empty:
        raise DataError(f"empty range: no data between {start} and {end}")

    rows = rows.astype({"entity": "category", "sensor": "category", "source": "category"})
    sensors = list(rows["sensor"].cat.categories)
    specs = {s: catalogue.get(s) for s in sensors}
    low = rows["sensor"].map({s: sp.valid_min for s, sp in specs.items()}).astype("float64")
    high = rows["sensor"].map({s: sp.valid_max for s, sp in specs.items()}).astype("float64")
    values = rows["value"].to_numpy(dtype="float64")
    non_finite = ~np.isfinite(values)
    # Sensors without a catalogue bound still get a conservative one: no greenhouse reading
    # (prices and meter counters included) is beyond +-1e9; 1e308 sentinels are.
    out_of_range = ~non_finite & (
        (values < low.fillna(-ABSURD).to_numpy()) | (values > high.fillna(ABSURD).to_numpy())
    )
    stats = (
        rows.assign(out_of_range=out_of_range, non_finite=non_finite)
        .groupby(["entity", "sensor"], observed=True)
        .agg(
            values_in=("value", "size"),
            dropped_non_finite=("non_finite", "sum"),
            dropped_out_of_range=("out_of_range", "sum"),
        )
    )
    rows = rows[~(out_of_range | non_finite)]
    if rows.empty:
        raise DataError(
            "every value is non-finite or outside its sensor's valid range (see the catalogue)"
        )

    rows = rows.assign(bin=rows["time"].dt.floor(step))
    rows = rows.sort_values(["entity", "sensor", "time"], kind="stable")
    intervals = native_intervals(rows, specs)
    keys = ["entity", "sensor", "bin"]
    conflicts = (
        rows.groupby(keys, observed=True)["source"]
        .nunique()
        .gt(1)
        .groupby(level=["entity", "sensor"], observed=True)
        .sum()
        .rename("multi_source_bins")
    )
    pieces = []
    by_method: dict[str, list[str]] = {}
    for sensor, spec in specs.items():
        by_method.setdefault(spec.resample_method, []).append(sensor)
    for method, names in by_method.items():
        subset = rows[rows["sensor"].isin(names)]
        if subset.empty:
            continue
        pieces.append(subset.groupby(keys, observed=True)["value"].agg(method))
    binned = pd.concat(pieces).rename("value").reset_index()
    wide = binned.pivot_table(
        index=["entity", "bin"], columns="sensor", values="value", aggfunc="first", observed=True
    )
    wide.columns = [str(c) for c in wide.columns]
    # A sensor whose every value was out of range stays, all-NaN: coverage reports it dead.
    wide = wide.reindex(columns=sorted(map(str, sensors)))

    blocks = []
    spikes: dict[tuple[str, str], int] = {}
    for entity in wide.index.get_level_values("entity").unique():
        block = wide.xs(entity, level="entity")
        first = start.floor(step) if start is not None else block.index.min()
        last = (end - pd.Timedelta(1, "ns")).floor(step) if end is not None else block.index.max()
        index = pd.date_range(first, last, freq=step, name="time")
        block = block.reindex(index)
        for sensor, count in drop_spikes(block, specs, step).items():
            spikes[(str(entity), sensor)] = count
        block.insert(0, "entity", str(entity))
        blocks.append(block.reset_index())
    grid = pd.concat(blocks, ignore_index=True)
    value_columns = sorted(c for c in grid.columns if c not in ("time", "entity"))
    grid = grid[["time", "entity", *value_columns]].astype(
        {c: "float64" for c in value_columns} | {"entity": "string"}
    )
    grid["time"] = grid["time"].astype("datetime64[us, UTC]")

    per_sensor = stats.join(conflicts, how="left").fillna({"multi_source_bins": 0})
    per_sensor["dropped_spike"] = [
        spikes.get((str(e), str(s)), 0) for e, s in per_sensor.index.to_list()
    ]
    per_sensor = per_sensor.astype("int64").join(intervals, how="left").reset_index()
    per_sensor["entity"] = per_sensor["entity"].astype(str)
    per_sensor["sensor"] = per_sensor["sensor"].astype(str)
    per_sensor["slower_than_grid"] = per_sensor["native_interval"] > step
    report = AggregateReport(
        per_sensor=per_sensor, unknown_sensors=catalogue.unknown(sensors), freq=freq
    )
    return AggregateResult(grid=grid, report=report)
