"""Stage 2, gap-fill: bounded, conservative filling with a mask of what was filled.

Only interior gaps (a measured value on both sides) no longer than the sensor's
``max_fill_gap`` are filled; a longer gap stays missing in full, never partly filled, so
no long stretch is invented. pandas' ``interpolate(limit=...)`` would fill the first rows
of a long gap, which is why the run logic is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eraflow.catalogue import Catalogue
from eraflow.common.errors import DataError
from eraflow.common.grid import grid_step, mask_column, nan_runs, sensor_columns


@dataclass
class GapFillResult:
    """Grid with filled values and ``filled__<sensor>`` masks, plus a coverage table."""

    grid: pd.DataFrame
    coverage: pd.DataFrame


def fillable(missing: np.ndarray, max_rows: int) -> np.ndarray:
    """Rows inside interior gaps of at most ``max_rows`` missing rows."""
    n = missing.size
    starts, ends = nan_runs(missing)
    keep = (starts > 0) & (ends < n) & ((ends - starts) <= max_rows)
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, starts[keep], 1)
    np.add.at(marks, ends[keep], -1)
    return np.cumsum(marks[:n]) > 0


def fill_series(values: np.ndarray, *, max_rows: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Fill one regular series; returns (filled values, fill mask)."""
    missing = np.isnan(values)
    if method == "none" or max_rows <= 0 or missing.all() or not missing.any():
        return values.copy(), np.zeros(values.size, dtype=bool)
    mask = fillable(missing, max_rows)
    out = values.copy()
    if not mask.any():
        return out, mask
    rows = np.arange(values.size)
    valid = ~missing
    if method == "linear":
        out[mask] = np.interp(rows[mask], rows[valid], values[valid])
    elif method == "ffill":
        last_valid = np.maximum.accumulate(np.where(valid, rows, 0))
        out[mask] = values[last_valid[mask]]
    else:
        raise DataError(f"unknown fill method {method!r}")
    return out, mask


def _coverage_row(
    entity: str,
    sensor: str,
    before: np.ndarray,
    mask: np.ndarray,
    after: np.ndarray,
    step: pd.Timedelta,
    max_rows: int,
) -> dict[str, object]:
    n = before.size
    measured = int((~np.isnan(before)).sum())
    filled = int(mask.sum())
    starts, ends = nan_runs(np.isnan(before))
    left_starts, _ = nan_runs(np.isnan(after))
    longest = int((ends - starts).max()) if starts.size else 0
    return {
        "entity": entity,
        "sensor": sensor,
        "rows": n,
        "measured": measured,
        "filled": filled,
        "missing": n - measured - filled,
        "measured_share": measured / n if n else 0.0,
        "filled_share": filled / n if n else 0.0,
        "missing_share": (n - measured - filled) / n if n else 0.0,
        "gaps": int(starts.size),
        "gaps_left": int(left_starts.size),
        "longest_gap": step * longest,
        "max_fill_gap": step * max_rows,
        "all_missing": measured == 0,
    }


def gap_fill(grid: pd.DataFrame, catalogue: Catalogue, *, freq: str = "5min") -> GapFillResult:
    """Fill short interior gaps per entity and sensor, by the catalogue's rules.

    A gap of ``k`` missing rows is filled when ``k * step <= max_fill_gap``. Continuous
    sensors are interpolated linearly in time; binary, categorical and price sensors carry
    the last value forward. The result holds one ``filled__<sensor>`` boolean column per
    sensor, True exactly where a value was written by this stage.
    """
    step = grid_step(freq)
    if grid.empty:
        raise DataError("empty range: the grid has no rows to fill")
    for column in ("time", "entity"):
        if column not in grid.columns:
            raise DataError(f"grid lacks column {column!r}")
    if grid.duplicated(["entity", "time"]).any():
        raise DataError("grid has duplicate (entity, time) rows; aggregate first")
    sensors = sensor_columns(grid)
    ordered = grid.sort_values(["entity", "time"], kind="stable").reset_index(drop=True)
    spacing = ordered.groupby("entity", observed=True)["time"].diff().dropna()
    if len(spacing) and not (spacing == step).all():
        raise DataError(f"grid is not regular at step {freq}: aggregate onto the grid first")

    filled_values = {s: ordered[s].to_numpy(dtype="float64", copy=True) for s in sensors}
    masks = {s: np.zeros(len(ordered), dtype=bool) for s in sensors}
    coverage = []
    for entity, rows in ordered.groupby("entity", sort=True, observed=True).indices.items():
        for sensor in sensors:
            spec = catalogue.get(sensor)
            max_rows = int(pd.Timedelta(spec.max_fill_gap) // step)
            before = filled_values[sensor][rows]
            after, mask = fill_series(before, max_rows=max_rows, method=spec.fill_method)
            filled_values[sensor][rows] = after
            masks[sensor][rows] = mask
            coverage.append(_coverage_row(str(entity), sensor, before, mask, after, step, max_rows))
    out = ordered[["time", "entity"]].copy()
    columns = {s: filled_values[s] for s in sensors} | {mask_column(s): masks[s] for s in sensors}
    out = pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)  # one block, no warning
    return GapFillResult(grid=out, coverage=pd.DataFrame(coverage))
