"""Writing a run's range into an entity's stored history, as if the history were one run.

A run replaces its [start, end) of the grid. Gap-fill fills only interior gaps no longer than a
sensor's ``max_fill_gap``, so a gap that crosses the range's edge would be left open by the
run and closed by a run over a longer range: chunked backfills would differ from one run. So
the stored rows just outside the range (a margin: the longest ``max_fill_gap`` plus a step)
are read back with their filled values removed, gap-filled together with the new rows, and
written back with them (deciding a margin row needs a second margin of context). A gap's
fill depends only on its length and its two bounding measured values, so the result equals
a single run over the whole history, whatever the chunking. Coverage is then recounted per
whole UTC day touched, from the store.

Both hold the entity's store lock (``store.lock(entity)``) from their first read to their
write: two adjacent chunks written at once would otherwise each read the other's margin
before it was written and leave the gap between them unfilled (or count a day without the
other's rows). The lock is re-entrant per thread and bounded by the store's lock_timeout; the
store's own per-file locks inside a write are other locks, so nothing waits on itself.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pandas as pd

from eraflow.catalogue import Catalogue
from eraflow.common.grid import grid_step, sensor_columns
from eraflow.stages.gapfill import gap_fill
from eraflow.store.base import Key, Range, ResultStore
from eraflow.store.grid import (
    daily_coverage,
    grid_to_long,
    read_entity_grid,
    unfilled,
    whole_days,
)


@dataclass(frozen=True)
class EntityWrite:
    """What one entity's write replaced: the range (margins included) and its rows."""

    entity: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    sensors: tuple[str, ...]


def fill_margin(catalogue: Catalogue, sensors: list[str], step: pd.Timedelta) -> pd.Timedelta:
    """How far outside a range a gap-fill decision can reach: longest max_fill_gap + a step."""
    longest = max(
        (pd.Timedelta(catalogue.get(s).max_fill_gap) for s in sensors), default=pd.Timedelta(0)
    )
    return longest + step


def _own_sensors(part: pd.DataFrame, mapped: Collection[str]) -> list[str]:
    return [s for s in sensor_columns(part) if s in mapped or part[s].notna().any()]


def write_entity_range(
    store: ResultStore,
    raw: pd.DataFrame,
    *,
    entity: str,
    catalogue: Catalogue,
    freq: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    mapped: Collection[str] = (),
) -> EntityWrite:
    """Gap-fill ``entity``'s raw rows of [start, end) with the stored margins; write them.

    ``raw`` is the aggregated wide grid (time, entity, sensors) before gap-fill: every
    entity's columns, so an entity's own are those with a value, plus ``mapped`` (sensors its
    source had input for, even if every value was dropped). Returns the range written, which
    includes the stored margin rows that were refilled. Holds the entity's store lock from
    reading the margins to writing (see the module docstring).
    """
    step = grid_step(freq)
    part = raw[raw["entity"].astype(str) == entity]
    sensors = _own_sensors(part, mapped)
    values = part.set_index(pd.DatetimeIndex(part["time"], name="time").as_unit("ns"))[sensors]
    margin = fill_margin(catalogue, sensors, step)
    with store.lock(entity):
        # Read two margins, write back one: a fillable gap that touches the written margin has
        # both of its bounding values inside the context (a gap is fillable only if shorter than
        # a margin), and a longer one is left open whatever lies beyond.
        before, before_mask = read_entity_grid(
            store, entity, step=step, start=start - 2 * margin, end=start
        )
        after, after_mask = read_entity_grid(
            store, entity, step=step, start=end, end=end + 2 * margin
        )
        pieces = [unfilled(before, before_mask), values, unfilled(after, after_mask)]
        combined = pd.concat([p for p in pieces if len(p)], axis=0, sort=True)
        combined = combined.reindex(
            pd.date_range(
                combined.index.min(), combined.index.max(), freq=step, name="time", unit="ns"
            )
        )
        wide = combined.reset_index().assign(entity=entity)
        filled = gap_fill(wide, catalogue, freq=freq).grid
        times = pd.DatetimeIndex(pd.to_datetime(filled["time"], utc=True))
        inside = (times >= start) & (times < end)
        stored = before.index[before.index >= start - margin].union(
            after.index[after.index < end + margin]
        )
        rows = filled[inside | times.isin(stored)]
        low = min(start, stored.min()) if len(stored) else start
        high = max(end, stored.max() + step) if len(stored) else end
        long = grid_to_long(rows, keep=mapped)
        store.replace("grid", long, Key(entity, {"time": Range(low, high)}))
    return EntityWrite(
        entity=entity,
        start=low,
        end=high,
        rows=int(inside.sum()),
        sensors=tuple(sorted(long["sensor"].unique())),
    )


def recount_coverage(
    store: ResultStore, entity: str, *, freq: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Replace ``entity``'s daily coverage for the whole days around [start, end).

    Under the entity's store lock, so a concurrent grid write never lands between the read
    and the write.
    """
    first, last = whole_days(start, end)
    with store.lock(entity):
        values, mask = read_entity_grid(store, entity, step=grid_step(freq), start=first, end=last)
        coverage = daily_coverage(entity, values, mask)
        store.replace("coverage", coverage, Key(entity, {"day": Range(first, last)}))
    return coverage
