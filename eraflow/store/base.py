"""The one store protocol: read, replace and delete by key range, describe, lock, close.

Flows and tasks use a store through this protocol only, never knowing whether it is a Parquet
folder or a PostgreSQL schema. A key range names one owner (an entity, or a selection scope)
and conditions on other columns; a replace deletes what the range holds and inserts the new
rows in one atomic step, so a re-run never duplicates rows and never touches rows outside its
range. ``replace_many`` replaces several tables' key ranges in one commit (selection and
its feature matrix: a reader sees both from one run or both from the other), and
``read_many`` reads such tables as of one commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import pyarrow as pa

from eraflow.common.errors import StoreError
from eraflow.store.tables import Table, table


@dataclass(frozen=True)
class Range:
    """``low <= column < high``; either end may be open (None)."""

    low: Any = None
    high: Any = None


Condition = Any
"""A condition on one column: a value (equality), a list/tuple/set (membership) or a Range."""


@dataclass(frozen=True)
class Key:
    """Rows of one owner (entity or scope) that meet every condition in ``where``.

    ``Key("kj_no3", {"level": "C", "era_id": [1, 2]})``;
    ``Key("kj_no3", {"time": Range(start, end)})``.
    """

    owner: str
    where: Mapping[str, Condition] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.owner, str) or not self.owner:
            raise StoreError(f"a key needs an owner (entity or scope), got {self.owner!r}")

    def condition(self, column: str) -> Condition | None:
        """The condition on ``column`` (None when the key does not restrict it)."""
        return self.where.get(column)


def check_key(spec: Table, key: Key) -> None:
    """Refuse conditions on columns the table does not have (before anything is touched)."""
    for column in key.where:
        spec.kind(column)
        if column == spec.owner:
            raise StoreError(f"{spec.name}: the owner {spec.owner!r} is Key.owner, not a condition")


def matching(frame: pd.DataFrame, spec: Table, key: Key) -> pd.Series:
    """Which rows of ``frame`` the key range holds (owner and every condition)."""
    owner = frame[spec.owner]
    if not isinstance(owner.dtype, pd.CategoricalDtype):  # categorical: compared on its codes
        owner = owner.astype(str)
    hit = owner == key.owner
    for column, condition in key.where.items():
        values = frame[column]
        if isinstance(condition, Range):
            if condition.low is not None:
                hit &= values >= condition.low
            if condition.high is not None:
                hit &= values < condition.high
        elif isinstance(condition, list | tuple | set | frozenset):
            hit &= values.isin(list(condition))
        else:
            hit &= values == condition
    return hit.fillna(False).astype(bool)


def check_rows(spec: Table, frame: pd.DataFrame, key: Key) -> pd.DataFrame:
    """The frame with the table's columns in order; refuses rows outside the key range.

    A replace may only insert rows its key range deletes again on a re-run: otherwise a re-run
    would duplicate them (a row outside the range) or a write could reach another owner.
    """
    absent_added = [c for c in spec.added if c not in frame.columns]
    if absent_added:  # written before the column existed: unknown, not an error
        frame = frame.assign(**{c: pd.NA for c in absent_added})
    missing = [c for c in spec.names if c not in frame.columns]
    if missing:
        raise StoreError(f"{spec.name}: the frame lacks columns {missing}; it needs {spec.names}")
    out = frame[spec.names]
    if len(out):
        outside = int((~matching(out, spec, key)).sum())
        if outside:
            raise StoreError(
                f"{spec.name}: {outside} of {len(out)} rows lie outside the key "
                f"range {key} being replaced; nothing was written"
            )
        if out.duplicated(list(spec.key)).any():
            raise StoreError(
                f"{spec.name}: the frame has duplicate keys {list(spec.key)}; nothing was written"
            )
    return out


Write = tuple[str, pd.DataFrame | None, Key]
"""One part of a ``replace_many``: (table, rows inside the key range or None to delete, key)."""


def check_writes(writes: Sequence[Write]) -> list[tuple[Table, Key, pd.DataFrame | None]]:
    """Each write's table, key and checked rows; refuses a table named twice (before any write).

    One table per commit: two key ranges of one table in one commit could overlap, and their
    order would then decide the result.
    """
    if not writes:
        raise StoreError("replace_many needs at least one (table, frame, key)")
    checked = []
    seen: set[str] = set()
    for name, frame, key in writes:
        spec = table(name)
        if spec.name in seen:
            raise StoreError(
                f"replace_many names {spec.name} twice; write one key range per table and commit"
            )
        seen.add(spec.name)
        check_key(spec, key)
        checked.append((spec, key, None if frame is None else check_rows(spec, frame, key)))
    return checked


@runtime_checkable
class ResultStore(Protocol):
    """Where the tables live; see :mod:`eraflow.store.tables` for what each holds."""

    def read(
        self, table: str, key: Key | None = None, *, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The rows of ``key`` (None: the whole table) in key order."""
        ...

    def read_batches(
        self, table: str, key: Key, *, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """The same rows as arrow batches, for readers that must stay small in memory."""
        ...

    def replace(self, table: str, frame: pd.DataFrame, key: Key) -> int:
        """Delete the rows of ``key`` and insert ``frame`` (rows inside ``key``), atomically."""
        ...

    def delete(self, table: str, key: Key) -> int:
        """Delete the rows of ``key``; returns how many."""
        ...

    def replace_many(self, writes: Sequence[Write]) -> list[int]:
        """Replace (or, with None, delete) each table's key range, all in one atomic commit.

        Returns the rows written per table (deleted, for a delete). A reader sees every
        table as before or every table as after, never a mix. The Parquet store commits
        together only tables that are versioned together (``selection`` and
        ``feature_matrix``); PostgreSQL any tables (one transaction).
        """
        ...

    def read_many(self, reads: Sequence[tuple[str, Key]]) -> list[pd.DataFrame]:
        """The rows of each (table, key), all as of one commit (see ``replace_many``)."""
        ...

    def owners(self, table: str) -> list[str]:
        """The owners (entities or scopes) with rows in ``table``, sorted."""
        ...

    def lock(self, owner: str) -> AbstractContextManager[None]:
        """Exclusive, cross-process, per-owner section (segmenting an entity, say)."""
        ...

    def describe(self) -> str:
        """Where the results are, for people (a folder, or a DSN without its password)."""
        ...

    def close(self) -> None:
        """Release connections; the store reopens on next use."""
        ...

    def __enter__(self) -> ResultStore: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
