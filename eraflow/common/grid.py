"""The regular grid: step parsing and the wide-frame conventions shared by the stages."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.offsets import Tick

from eraflow.common.errors import ConfigError

MASK_PREFIX = "filled__"
"""Fill-mask columns are ``filled__<sensor>``: True where gap-fill wrote the value."""

INDEX_COLUMNS = ("time", "entity")


def grid_step(freq: str | pd.Timedelta) -> pd.Timedelta:
    """A fixed grid step (``"5min"``); calendar steps like months are refused."""
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"grid step {freq!r} is not a duration like '5min' or '1h'") from exc
    if not isinstance(offset, Tick) or pd.Timedelta(offset) <= pd.Timedelta(0):
        raise ConfigError(f"grid step {freq!r} must be a fixed positive duration (e.g. '5min')")
    return pd.Timedelta(offset)


def sensor_columns(grid: pd.DataFrame) -> list[str]:
    """The value columns of a wide grid frame (not time, entity or mask)."""
    return [
        c for c in grid.columns if c not in INDEX_COLUMNS and not str(c).startswith(MASK_PREFIX)
    ]


def mask_column(sensor: str) -> str:
    """The fill-mask column name of ``sensor``."""
    return f"{MASK_PREFIX}{sensor}"


def entity_frames(grid: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Split a stored grid into per-entity (values, fill_mask), indexed by UTC time.

    This is the shape the era and feature stages take: one entity, a DatetimeIndex named
    ``time``, one float column per sensor, and a same-shaped boolean mask.
    """
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    sensors = sensor_columns(grid)
    for entity, part in grid.groupby("entity", sort=True, observed=True):
        part = part.sort_values("time").set_index("time")
        values = part[sensors].astype("float64")
        masks = pd.DataFrame(
            {
                s: part[mask_column(s)].astype(bool) if mask_column(s) in part else False
                for s in sensors
            },
            index=part.index,
        )
        out[str(entity)] = (values, masks)
    return out


def nan_runs(missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) row of every run of True in ``missing``."""
    padded = np.concatenate(([False], missing, [False])).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def interval_text(interval: object) -> str:
    """A duration as people write it: ``1h``, ``5min``, ``90s``; ``-`` when unknown."""
    if interval is None or pd.isna(interval):
        return "-"
    text = str(pd.tseries.frequencies.to_offset(pd.Timedelta(interval)).freqstr)
    return text if text[0].isdigit() else f"1{text}"
