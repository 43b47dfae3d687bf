"""Time ranges for scheduled and backfill runs (UTC, half-open)."""

from __future__ import annotations

import itertools
from datetime import datetime

import pandas as pd

from eraflow.common.errors import ConfigError


def _utc(value: datetime | str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def split_range(
    start: datetime | str | pd.Timestamp, end: datetime | str | pd.Timestamp, chunk: str
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive [start, end) chunks of length ``chunk`` (the last one may be shorter).

    Chunks are aligned to ``start``, so re-running a backfill with the same arguments
    replaces exactly the same ranges in the store.
    """
    begin, finish = _utc(start), _utc(end)
    if begin >= finish:
        raise ConfigError(f"empty range: start {begin} is not before end {finish}")
    try:
        step = pd.Timedelta(chunk)
    except ValueError as exc:
        raise ConfigError(f"chunk {chunk!r} is not a duration like '7D'") from exc
    if step <= pd.Timedelta(0):
        raise ConfigError(f"chunk {chunk!r} must be positive")
    bounds = [*pd.date_range(begin, finish, freq=step, inclusive="left"), finish]
    return list(itertools.pairwise(bounds))


def previous_day(scheduled: datetime | str | pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The UTC calendar day before ``scheduled`` (a daily run processes yesterday)."""
    day = _utc(scheduled).floor("D")
    return day - pd.Timedelta("1D"), day
