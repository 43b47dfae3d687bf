"""How much grid a run will build, and rows that lie far from the rest: known before any work.

A run's grid spans, per entity, from its start (or the entity's first row in range) to its end
(or the last row): one stray row dated 1900 beside two days of 2024 makes a 124-year grid of
13 M rows per sensor, which ran for minutes and several GiB before it failed. Here the span
is stated and bounded from the source's scanned times, and stray rows are named, so such a run
stops at once. Prefect-free and pure: times in, a plan or an error out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eraflow.common.errors import ConfigError

STRAY_MIN_GAP = pd.Timedelta(days=90)
"""A row is stray only across a gap at least this long (real outages are days or weeks)."""
STRAY_MAX_ROWS = 10
"""At most this many rows (or 0.1 % of the rows, if more) on the far side of the gap."""


@dataclass(frozen=True)
class EntityGrid:
    """The grid one entity will get: [first, last] at ``rows`` steps."""

    entity: str
    first: pd.Timestamp
    last: pd.Timestamp
    rows: int

    @property
    def days(self) -> float:
        """Length in days (in Python integers: a span may exceed pandas' 292-year range)."""
        return (self.last.value - self.first.value) / 86_400e9


@dataclass(frozen=True)
class GridPlan:
    """The grid a run will build, per entity."""

    step: pd.Timedelta
    entities: tuple[EntityGrid, ...]

    @property
    def rows(self) -> int:
        """Grid rows over every entity."""
        return sum(e.rows for e in self.entities)

    def describe(self) -> str:
        """``2 entities, 2015-10-01 00:00 .. 2015-10-07 23:55 UTC at 5min: 4,032 grid rows``."""
        if not self.entities:
            return "no grid (no data in range)"
        first = min(e.first for e in self.entities)
        last = max(e.last for e in self.entities)
        return (
            f"{len(self.entities)} entit{'y' if len(self.entities) == 1 else 'ies'}, "
            f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC at "
            f"{_span_text(self.step)}: {self.rows:,} grid rows"
        )


def plan_grid(
    bounds: Mapping[str, tuple[pd.Timestamp, pd.Timestamp]],
    *,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    step: pd.Timedelta,
) -> GridPlan:
    """The grid of each entity whose data in range lies within ``bounds`` (first, last row).

    As the aggregation builds it: from ``start`` (floored to the step) or the entity's first
    row, to the step before ``end`` or the entity's last row.
    """
    grids = []
    for entity, (first_row, last_row) in sorted(bounds.items()):
        first = (start if start is not None else first_row).floor(step)
        last = ((end - pd.Timedelta(1, "ns")) if end is not None else last_row).floor(step)
        rows = (last.value - first.value) // step.value + 1 if last >= first else 0
        grids.append(EntityGrid(entity, first, last, rows))
    return GridPlan(step=step, entities=tuple(grids))


def check_grid_span(plan: GridPlan, *, max_span: pd.Timedelta) -> None:
    """Refuse a grid longer than ``max_span`` for any entity, naming it and the fix."""
    for grid in plan.entities:
        if grid.days > max_span / pd.Timedelta(days=1):
            raise ConfigError(
                f"entity {grid.entity!r}: the run would build a grid of {_days_text(grid.days)} "
                f"({grid.first:%Y-%m-%d} .. {grid.last:%Y-%m-%d} UTC, {grid.rows:,} rows at "
                f"{_span_text(plan.step)}), over max_grid_span {_span_text(max_span)}: narrow "
                "--start/--end, or raise --max-grid-span"
            )


@dataclass(frozen=True)
class StrayRows:
    """Rows of one entity separated from all the others by a long gap."""

    entity: str
    times: tuple[pd.Timestamp, ...]
    before: bool
    gap: pd.Timedelta
    rest: tuple[pd.Timestamp, pd.Timestamp]

    def describe(self, source: str) -> str:
        """One line: which rows, how far from the rest, and the fix."""
        shown = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in self.times[:3])
        more = f" and {len(self.times) - 3} more" if len(self.times) > 3 else ""
        side = "before" if self.before else "after"
        return (
            f"source {source!r}, entity {self.entity!r}: {len(self.times)} stray row(s) at "
            f"{shown}{more} UTC lie {_span_text(self.gap)} {side} the rest "
            f"({self.rest[0]:%Y-%m-%d %H:%M} .. {self.rest[1]:%Y-%m-%d %H:%M} UTC): fix or remove "
            "them in the source, or give --start/--end around the data"
        )


def stray_rows(entity: str, times: np.ndarray) -> StrayRows | None:
    """Rows at either end of ``times`` (sorted UTC microseconds) that lie far from the rest.

    Stray: across the largest gap, at most ``STRAY_MAX_ROWS`` rows (or 0.1 % of them) on one
    side, and the gap longer than both ``STRAY_MIN_GAP`` and the rest's own span. A long
    outage in real data (days, weeks) or two seasons of data are not stray.
    """
    if len(times) < 2:
        return None
    gaps = np.diff(times)
    i = int(np.argmax(gaps))
    gap = pd.Timedelta(int(gaps[i]), "us")
    left, right = times[: i + 1], times[i + 1 :]
    far, rest, before = (left, right, True) if len(left) <= len(right) else (right, left, False)
    rest_span = pd.Timedelta(int(rest[-1] - rest[0]), "us")
    if len(far) > max(STRAY_MAX_ROWS, len(times) // 1000):
        return None
    if gap < STRAY_MIN_GAP or gap <= rest_span:
        return None
    return StrayRows(
        entity=entity,
        times=tuple(_stamp(t) for t in far),
        before=before,
        gap=gap,
        rest=(_stamp(rest[0]), _stamp(rest[-1])),
    )


def _stamp(micros: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(micros), unit="us", tz="UTC")


def _span_text(span: pd.Timedelta) -> str:
    """A duration as people say it: '124 years', '42 days', '5min'."""
    return _days_text(span / pd.Timedelta(days=1))


def _days_text(days: float) -> str:
    if days >= 730:
        return f"{days / 365.25:.0f} years"
    if days >= 2:
        return f"{days:.0f} days"
    minutes = days * 1440
    return f"{minutes / 60:g} h" if minutes >= 120 else f"{minutes:g}min"
