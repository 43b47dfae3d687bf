"""The store interface every backend (Parquet directory, PostgreSQL) implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

TABLES = ("grid", "coverage", "eras", "features", "selection", "feature_matrix")


@runtime_checkable
class ResultStore(Protocol):
    """Idempotent storage of pipeline results, keyed as in DESIGN.md.

    Writing a range replaces what was stored for that range and entity; it never
    duplicates rows and never touches rows outside the range.
    """

    def write_grid(self, grid: pd.DataFrame, *, start: pd.Timestamp,
                   end: pd.Timestamp) -> int:
        """Replace the grid rows of every entity in ``grid`` within [start, end)."""
        ...

    def read_grid(self, *, entity: str | None = None, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Grid rows (time, entity, sensors, masks) in [start, end)."""
        ...

    def write_table(self, table: str, frame: pd.DataFrame, *, entity: str,
                    replace_where: dict[str, object] | None = None) -> int:
        """Replace one entity's rows matching ``replace_where`` by ``frame``.

        Conditions: ``value`` (equality), ``[a, b]`` (membership), ``(low, high)``
        (low <= column < high); all must hold; None replaces all of the entity's rows.
        """
        ...

    def has_rows(self, table: str, *, entity: str, where: dict[str, object] | None = None
                 ) -> bool:
        """Whether any stored row of ``entity`` matches ``where`` (cache checks)."""
        ...

    def read_table(self, table: str, *, entity: str | None = None) -> pd.DataFrame:
        """A whole table, or one entity's rows."""
        ...

    def describe(self) -> str:
        """Where the results are, for people (a path or a redacted DSN)."""
        ...
