"""The stored tables, declared once: columns and kinds, owner, primary key and partitioning.

Both stores derive everything from these declarations: the Parquet store its arrow schemas and
file layout, the PostgreSQL store its column lists and types (the DDL in ``pg_schema`` creates
the same columns; a test holds the two together). Every table has an *owner* column, the
entity (or, for selection and the feature matrix, the selection scope): every write and
delete names one owner, so a run can never touch rows of an owner it does not name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from eraflow.common.errors import StoreError
from eraflow.common.pg import Kind

Partition = Literal["month", "level", "era", "entity-level"]

_ARROW: dict[Kind, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "text": pa.string(),
    "floats": pa.list_(pa.float64()),
    "label": pa.dictionary(pa.int32(), pa.string()),
}


@dataclass(frozen=True)
class Table:
    """One stored table.

    Attributes
    ----------
    name
        Table (and Parquet dataset folder) name.
    columns
        ``(column, kind)`` in stored order; kinds are ``eraflow.common.pg.Kind`` names.
    owner
        The column every write and delete is scoped to (``entity`` or ``scope``).
    key
        Primary key: a replace never leaves two rows with one key.
    partition
        Parquet files per owner: ``month`` (of column ``time_column``), ``level``, ``era``
        (one file per era and stage) or ``entity-level``.
    time_column
        The column a time range filters and months partition (tables partitioned by month).
    """

    name: str
    columns: tuple[tuple[str, Kind], ...]
    owner: str
    key: tuple[str, ...]
    partition: Partition
    time_column: str | None = None
    added: tuple[str, ...] = ()
    """Columns added after stores were written: a frame or file without them reads as null."""

    @property
    def names(self) -> list[str]:
        """Column names in stored order."""
        return [name for name, _ in self.columns]

    def kind(self, column: str) -> Kind:
        """The kind of ``column``; a StoreError names the table's columns when unknown."""
        for name, kind in self.columns:
            if name == column:
                return kind
        raise StoreError(f"{self.name} has no column {column!r}; columns are {self.names}")

    @property
    def schema(self) -> pa.Schema:
        """The arrow schema every Parquet file of the table is written with."""
        return pa.schema([(name, _ARROW[kind]) for name, kind in self.columns])


GRID = Table(
    "grid",
    (
        ("entity", "label"),
        ("sensor", "label"),
        ("time", "timestamptz"),
        ("value", "float"),
        ("filled", "bool"),
    ),
    owner="entity",
    key=("entity", "sensor", "time"),
    partition="month",
    time_column="time",
)
"""Gap-filled values, long: one row per (entity, sensor, time); an entity has its own sensors."""

COVERAGE = Table(
    "coverage",
    (
        ("entity", "label"),
        ("sensor", "label"),
        ("day", "timestamptz"),
        ("rows", "int"),
        ("measured", "int"),
        ("filled", "int"),
        ("missing", "int"),
        ("longest_gap_rows", "int"),
    ),
    owner="entity",
    key=("entity", "sensor", "day"),
    partition="month",
    time_column="day",
)
"""Grid rows per (entity, sensor, UTC day): measured, filled by gap-fill, still missing."""

ERAS = Table(
    "eras",
    (
        ("entity", "text"),
        ("level", "text"),
        ("era_id", "int"),
        ("start", "timestamptz"),
        ("end", "timestamptz"),
        ("rows", "int"),
        ("method", "text"),
        ("signals", "text"),
        ("score", "float"),
        ("fingerprint", "text"),
        ("coverage", "float"),
        ("kind", "text"),
        ("regime", "int"),
    ),
    owner="entity",
    key=("entity", "level", "era_id"),
    partition="level",
    time_column="start",
)
"""Eras of an entity's history; ``fingerprint`` hashes the era's grid slice."""

ERA_PENALTIES = Table(
    "era_penalties",
    (
        ("entity", "text"),
        ("level", "text"),
        ("rule", "text"),
        ("factor", "float"),
        ("penalty_scale", "float"),
        ("pen", "float"),
        ("eras", "int"),
        ("elbow_factor", "float"),
    ),
    owner="entity",
    key=("entity", "level"),
    partition="level",
)
"""The penalty each level of an entity was last segmented with, and the rule that chose it.

``factor`` multiplies the configured ``penalty_scale`` (1 under rule ``set``); ``pen`` is the
absolute penalty when one was configured; ``eras`` counts the level's data eras; NaN factors
mean the level has no penalty path (an absolute ``pen``, or level C under BOCPD).
"""

FEATURES = Table(
    "features",
    (
        ("entity", "label"),
        ("level", "label"),
        ("era_id", "int"),
        ("sensor", "label"),
        ("feature", "label"),
        ("value", "float"),
        ("engine", "label"),
        ("run_id", "label"),
        ("config_hash", "label"),
    ),
    owner="entity",
    key=("entity", "level", "era_id", "sensor", "feature"),
    partition="era",
)
"""Feature values, long; ``feature`` is tsfresh's name without the sensor."""

FEATURE_LEDGER = Table(
    "feature_ledger",
    (
        ("entity", "text"),
        ("level", "text"),
        ("era_id", "int"),
        ("stage", "text"),
        ("fingerprint", "text"),
        ("config_hash", "text"),
        ("values", "int"),
        ("run_id", "text"),
        ("written_at", "timestamptz"),
    ),
    owner="entity",
    key=("entity", "level", "era_id", "stage"),
    partition="level",
)
"""What the store holds per era and stage: the data fingerprint and settings it was made from.

The store, not a cache, decides whether an era's features are up to date: they are when the
ledger row's fingerprint equals the era's and its config hash equals the current settings'.
"""

SELECTION = Table(
    "selection",
    (
        ("scope", "text"),
        ("level", "text"),
        ("feature", "text"),
        ("kept", "bool"),
        ("reason", "text"),
        ("position", "int"),
        ("run_id", "text"),
        ("eras", "int"),  # added by migration 5: PostgreSQL appends it
    ),
    owner="scope",
    key=("scope", "level", "feature"),
    partition="level",
    added=("eras",),
)
"""Selection per scope and level; ``eras``: how many eras the decision rests on; ``position``
is the kept feature's matrix column (else -1)."""

FEATURE_MATRIX = Table(
    "feature_matrix",
    (
        ("scope", "label"),
        ("entity", "label"),
        ("level", "label"),
        ("era_id", "int"),
        ("start", "timestamptz"),
        ("end", "timestamptz"),
        ("values", "floats"),
    ),
    owner="scope",
    key=("scope", "entity", "level", "era_id"),
    partition="entity-level",
    time_column="start",
)
"""One row per era; ``values[i]`` is the feature whose selection ``position`` is ``i``."""

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        GRID,
        COVERAGE,
        ERAS,
        ERA_PENALTIES,
        FEATURES,
        FEATURE_LEDGER,
        SELECTION,
        FEATURE_MATRIX,
    )
}

ENGINE_STAGES: dict[str, str] = {
    "numpy": "engine",
    "cupy": "engine",
    "greenhouse": "engine",
    "tsfresh": "tsfresh",
}
"""Feature rows by ``engine`` column to the stage that wrote them (one ledger row each).

The greenhouse family is written by the engine stage, in the same write as its rows.
"""


def stage_engines(stage: str) -> list[str]:
    """The ``engine`` values of the feature rows one stage writes (and its file holds)."""
    return sorted(e for e, s in ENGINE_STAGES.items() if s == stage) or [stage]


def table(name: str) -> Table:
    """The declaration of table ``name``; a StoreError lists the tables when unknown."""
    try:
        return TABLES[name]
    except KeyError:
        raise StoreError(f"unknown table {name!r}; tables are {sorted(TABLES)}") from None
