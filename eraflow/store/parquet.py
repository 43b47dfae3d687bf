"""A Parquet directory store: one dataset folder per table, readable whole with pandas.

Layout: ``<root>/grid/<entity>/<YYYY-MM>.parquet`` (one file per entity and month, so a
re-run of a range rewrites only the months it touches) and ``<root>/<table>/<entity>.parquet``
for the small keyed tables. Every file is written to a temporary name and moved into place
with ``os.replace``, so a crash leaves each file either old or new, never half-written, and a
re-run repairs the rest. All files of a table share one schema (new sensor columns are added to
the older files), so ``pandas.read_parquet("<root>/grid")`` reads the table whole.

Writers of one table file (threads, or processes on one host such as Dask workers) take an
exclusive advisory lock (``flock``) around their read-modify-write, so concurrent era batches
of one entity never lose each other's rows. Readers need no lock: files are replaced atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from eraflow.errors import StoreError
from eraflow.grid import MASK_PREFIX
from eraflow.store.base import TABLES


def entity_slug(entity: str) -> str:
    """A file-system-safe, collision-free folder name for an entity."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", entity)
    if slug != entity or slug in {"", ".", ".."}:
        slug = f"{slug}-{hashlib.sha1(entity.encode()).hexdigest()[:8]}"
    return slug


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s lock file for a read-modify-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic_write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _matches(frame: pd.DataFrame, where: dict[str, object] | None, table: str) -> pd.Series:
    """Rows meeting every condition: value (==), [a, b] (membership), (low, high) (range)."""
    hit = pd.Series(True, index=frame.index)
    for column, condition in (where or {}).items():
        if column not in frame:
            raise StoreError(f"{table} has no column {column!r}")
        if isinstance(condition, tuple):
            low, high = condition
            hit &= (frame[column] >= low) & (frame[column] < high)
        elif isinstance(condition, list | set | frozenset):
            hit &= frame[column].isin(list(condition))
        else:
            hit &= frame[column] == condition
    return hit


def _grid_column_order(columns: Iterable[str]) -> list[str]:
    columns = list(columns)
    values = sorted(c for c in columns if c not in ("time", "entity")
                    and not c.startswith(MASK_PREFIX))
    masks = sorted(c for c in columns if c.startswith(MASK_PREFIX))
    return ["time", "entity", *values, *masks]


def _conform(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        if column not in out:
            out[column] = False if column.startswith(MASK_PREFIX) else np.nan
    out = out[columns]
    types = {c: ("bool" if c.startswith(MASK_PREFIX) else "float64")
             for c in columns if c not in ("time", "entity")}
    for column in columns:
        if column.startswith(MASK_PREFIX):
            # NaN (a sensor absent for an entity) means "not filled"; astype(bool) says True.
            out[column] = out[column].astype("boolean").fillna(False)
    out = out.astype(types | {"entity": "string"})
    out["time"] = out["time"].astype("datetime64[us, UTC]")
    return out


class ParquetStore:
    """Results in a local folder (the embedded default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        """The store folder."""
        return str(self.root.resolve())

    def table_path(self, table: str) -> Path:
        """The dataset folder of ``table``."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}; tables are {TABLES}")
        return self.root / table

    # grid -----------------------------------------------------------------------------
    def _grid_files(self) -> list[Path]:
        return sorted(self.table_path("grid").glob("*/*.parquet"))

    def _grid_schema(self) -> list[str]:
        files = self._grid_files()
        return list(pq.read_schema(files[0]).names) if files else []

    def write_grid(self, grid: pd.DataFrame, *, start: pd.Timestamp,
                   end: pd.Timestamp) -> int:
        """Replace each entity's grid rows in [start, end) by the rows of ``grid``."""
        if start >= end:
            raise StoreError(f"empty range: start {start} is not before end {end}")
        outside = grid[(grid["time"] < start) | (grid["time"] >= end)]
        if len(outside):
            raise StoreError(f"{len(outside)} grid rows lie outside [{start}, {end})")
        with _exclusive(self.table_path("grid")):
            return self._write_grid(grid, start=start, end=end)

    def _write_grid(self, grid: pd.DataFrame, *, start: pd.Timestamp,
                    end: pd.Timestamp) -> int:
        old_columns = self._grid_schema()
        columns = _grid_column_order(set(old_columns) | set(grid.columns))
        if old_columns and set(columns) != set(old_columns):
            for path in self._grid_files():
                _atomic_write(_conform(pd.read_parquet(path), columns), path)
        grid = _conform(grid, columns)
        months = pd.period_range(start.tz_convert(None).to_period("M"),
                                 (end - pd.Timedelta(1, "us")).tz_convert(None).to_period("M"),
                                 freq="M")
        written = 0
        for entity, part in grid.groupby("entity", observed=True):
            folder = self.table_path("grid") / entity_slug(str(entity))
            part_months = part["time"].dt.tz_convert(None).dt.to_period("M")
            for month in months:
                path = folder / f"{month}.parquet"
                new_rows = part[part_months == month]
                kept = pd.DataFrame(columns=columns)
                if path.exists():
                    old = _conform(pd.read_parquet(path), columns)
                    kept = old[(old["time"] < start) | (old["time"] >= end)]
                merged = pd.concat([df for df in (kept, new_rows) if len(df)],
                                   ignore_index=True) if len(kept) or len(new_rows) else None
                if merged is None:
                    path.unlink(missing_ok=True)
                    continue
                merged = _conform(merged, columns).sort_values("time", kind="stable")
                _atomic_write(merged.reset_index(drop=True), path)
                written += len(new_rows)
        return written

    def read_grid(self, *, entity: str | None = None, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Grid rows of one or all entities in [start, end), sorted by (entity, time)."""
        folder = self.table_path("grid")
        pattern = f"{entity_slug(entity)}/*.parquet" if entity is not None else "*/*.parquet"
        files = sorted(folder.glob(pattern))
        if not files:
            return pd.DataFrame(columns=["time", "entity"])
        filters = []
        if start is not None:
            filters.append(("time", ">=", start))
        if end is not None:
            filters.append(("time", "<", end))
        frames = [pd.read_parquet(f, filters=filters or None) for f in files]
        frame = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
        if entity is not None:
            frame = frame[frame["entity"] == entity]
        columns = _grid_column_order(frame.columns)
        return _conform(frame, columns).sort_values(["entity", "time"]).reset_index(drop=True)

    # keyed tables ---------------------------------------------------------------------------
    def write_table(self, table: str, frame: pd.DataFrame, *, entity: str,
                    replace_where: dict[str, object] | None = None) -> int:
        """Replace one entity's rows of a keyed table.

        ``replace_where`` selects the old rows to drop: ``{"column": value}`` for equality,
        ``{"column": [a, b]}`` for membership, ``{"column": (low, high)}`` for
        low <= value < high; None drops all of the entity's
        rows. The new rows are then added, all in one atomic file replace.
        """
        if table == "grid":
            raise StoreError("use write_grid for the grid")
        if "entity" in frame and len(frame) and (frame["entity"] != entity).any():
            raise StoreError(f"rows for another entity than {entity!r} in {table}")
        path = self.table_path(table) / f"{entity_slug(entity)}.parquet"
        # One lock per table: the write may add columns that every file of the table must get.
        with _exclusive(self.table_path(table)):
            written = self._replace_rows(path, table, frame, replace_where)
            self._unify_schema(table)
        return written

    def _unify_schema(self, table: str) -> None:
        """Give every file of ``table`` the union of columns (missing ones as nulls).

        pandas.read_parquet on the folder takes one file's schema; without this, columns
        that only some entities have (selected features, say) would silently vanish.
        """
        files = sorted(self.table_path(table).glob("*.parquet"))
        schemas = {f: pq.read_schema(f) for f in files}
        union: list[str] = []
        for schema in schemas.values():
            union += [name for name in schema.names if name not in union]
        for path, schema in schemas.items():
            if schema.names != union:
                frame = pd.read_parquet(path)
                for column in union:
                    if column not in frame:
                        frame[column] = np.nan
                _atomic_write(frame[union], path)

    @staticmethod
    def _replace_rows(path: Path, table: str, frame: pd.DataFrame,
                      replace_where: dict[str, object] | None) -> int:
        kept = None
        if path.exists():
            old = pd.read_parquet(path)
            kept = old[~_matches(old, replace_where, table)]
        merged = pd.concat([f for f in (kept, frame) if f is not None and len(f)],
                           ignore_index=True) if (kept is not None and len(kept)) or len(
            frame) else frame.iloc[:0]
        _atomic_write(merged, path)
        return len(frame)

    def has_rows(self, table: str, *, entity: str, where: dict[str, object] | None = None
                 ) -> bool:
        """Whether any stored row of ``entity`` matches ``where`` (reads only those columns)."""
        path = self.table_path(table) / f"{entity_slug(entity)}.parquet"
        if not path.exists():
            return False
        frame = pd.read_parquet(path, columns=list(where or {}) or None)
        return bool(_matches(frame, where, table).any())

    def read_table(self, table: str, *, entity: str | None = None) -> pd.DataFrame:
        """A keyed table, whole or for one entity (empty frame when absent)."""
        folder = self.table_path(table)
        if entity is not None:
            path = folder / f"{entity_slug(entity)}.parquet"
            return pd.read_parquet(path) if path.exists() else pd.DataFrame()
        files = sorted(folder.glob("*.parquet"))
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

