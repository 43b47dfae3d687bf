"""Read raw sensor data from a PostgreSQL table into the canonical long rows.

Two table layouts:

- **wide**: (time, entity, one numeric column per sensor), e.g. what
  ``python -m eraflow.runs.load_source --layout wide`` writes;
- **long**: (time, entity, sensor, value).

The time range and entity list are filtered by the server (``WHERE time >= %s AND time < %s
AND entity = ANY(%s)``, index-friendly), and the rows stream out through
``COPY (SELECT ...) TO STDOUT`` parsed block by block, so a year of 5-minute data never sits in
memory as Python objects. Every identifier goes through ``psycopg.sql.Identifier``; table
names are also validated (``schema.table`` of plain identifiers), so a configuration can name
a table but never inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eraflow.common.errors import ConfigError, DataError, IngestError, validation_message
from eraflow.common.pg import (
    Kind,
    check_identifier,
    connect,
    copy_out,
    kind_of_pg,
    select_expression,
)
from eraflow.stages.ingest.readers import (
    IngestResult,
    Progress,
    SourceReport,
    empty_long,
    finish_long,
    resolve_duplicates,
)

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_NUMERIC = {"float", "int", "bool"}


class PostgresSourceConfig(BaseModel):
    """Where and how a sensor table is laid out; validated before any SQL is built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        default="postgres", min_length=1, description="source label written to the 'source' column"
    )
    table: str = Field(
        description="table name, optionally 'schema.table'; plain identifiers "
        "(letters, digits, _ and $), used as written (case-sensitive)"
    )
    layout: Literal["wide", "long"] = Field(default="wide", description="table layout")
    time_column: str = Field(default="time", description="timestamptz (or timestamp) column")
    timezone: str = Field(
        default="UTC",
        description="zone of a timestamp-without-time-zone "
        "time column (PostgreSQL resolves DST repeats/gaps)",
    )
    entity_column: str | None = Field(
        default="entity", description="entity column, or None with 'entity' set"
    )
    entity: str | None = Field(
        default=None, description="constant entity when the table has no entity column"
    )
    columns: dict[str, str] | None = Field(
        default=None,
        description="wide: source column -> sensor name; None = every other "
        "numeric column, named as itself",
    )
    sensor_column: str = Field(default="sensor", description="long: sensor name column")
    value_column: str = Field(default="value", description="long: value column")
    sensors: dict[str, str] | None = Field(
        default=None,
        description="long: source sensor -> sensor name; only these are read "
        "(None = all, named as stored)",
    )
    on_duplicate: Literal["error", "mean", "first", "last"] = Field(
        default="error", description="what to do when rows share (entity, sensor, time)"
    )
    block_bytes: int = Field(
        default=1 << 22, ge=1 << 12, description="streaming block size of the COPY parser"
    )

    @field_validator("table")
    @classmethod
    def _plain_table(cls, value: str) -> str:
        table_identifier(value)
        return value

    @field_validator("time_column", "entity_column", "sensor_column", "value_column")
    @classmethod
    def _usable_column(cls, value: str | None) -> str | None:
        if value is not None:
            check_identifier(value, "column name")
        return value

    @model_validator(mode="after")
    def _entity_source(self) -> PostgresSourceConfig:
        if (self.entity_column is None) == (self.entity is None):
            raise ValueError("set exactly one of entity_column and entity")
        for column in self.columns or {}:
            check_identifier(column, "column name")
        return self

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> PostgresSourceConfig:
        """Validate a dict (a flow parameter), raising ``ConfigError`` with every problem."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"postgres_source: {validation_message(exc)}") from None

    def table_identifier(self) -> sql.Identifier:
        """The table as a quoted (schema-qualified) identifier."""
        return table_identifier(self.table)


def table_identifier(name: str) -> sql.Identifier:
    """``table`` or ``schema.table`` of plain identifiers, as a quoted Identifier.

    Raises ``ConfigError`` (a ValueError) for anything else, e.g. ``x; drop table y``: names
    are checked here *and* quoted, so neither a typo nor an injection reaches the server as SQL.
    """
    parts = name.split(".")
    if len(parts) > 2 or not all(_PLAIN_NAME.match(p) for p in parts):
        raise ConfigError(
            f"table {name!r} is not 'table' or 'schema.table' made of letters, digits, '_' and '$'"
        )
    return sql.Identifier(*parts)


def _table_columns(conn: psycopg.Connection, config: PostgresSourceConfig) -> dict[str, str]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [config.table_identifier().as_string(conn)],
    ).fetchall()
    if not rows:
        raise IngestError(
            f"source {config.name!r}: table {config.table!r} does not exist "
            "(or is not visible to this user); check 'table'"
        )
    return {str(r[0]): str(r[1]) for r in rows}


def _require(columns: dict[str, str], names: Sequence[str], config: PostgresSourceConfig) -> None:
    missing = [n for n in names if n not in columns]
    if missing:
        raise IngestError(
            f"source {config.name!r}: table {config.table!r} has no column(s) "
            f"{missing}; columns are {list(columns)}"
        )


def _value_expression(column: str, kind: Kind) -> sql.Composable:
    if kind == "bool":
        return sql.SQL("{}::int::double precision").format(sql.Identifier(column))
    return sql.SQL("{}::double precision").format(sql.Identifier(column))


def _where(
    config: PostgresSourceConfig,
    time_kind: Kind,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    entities: Sequence[str] | None,
) -> tuple[sql.Composable, list[object]]:
    clauses: list[sql.Composable] = []
    params: list[object] = []
    time = sql.Identifier(config.time_column)
    # naive columns: compare with the bound converted to local wall time (keeps the index);
    # the exact UTC filter is repeated on the client
    bound = (
        sql.SQL("(%s::timestamptz AT TIME ZONE %s)")
        if time_kind == "timestamp"
        else sql.SQL("%s::timestamptz")
    )
    for op, value in ((">=", start), ("<", end)):
        if value is not None:
            clauses.append(sql.SQL("{} {} ").format(time, sql.SQL(op)) + bound)
            params.append(pd.Timestamp(value).to_pydatetime())
            if time_kind == "timestamp":
                params.append(config.timezone)
    if entities is not None and config.entity_column is not None:
        clauses.append(sql.SQL("{}::text = ANY(%s)").format(sql.Identifier(config.entity_column)))
        params.append(list(entities))
    if config.layout == "long" and config.sensors is not None:
        clauses.append(sql.SQL("{}::text = ANY(%s)").format(sql.Identifier(config.sensor_column)))
        params.append(list(config.sensors))
    if not clauses:
        return sql.SQL(""), params
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses), params


def _time_expression(
    config: PostgresSourceConfig, time_kind: Kind
) -> tuple[sql.Composable, list[object]]:
    if time_kind == "timestamp":
        return sql.SQL("(extract(epoch FROM ({} AT TIME ZONE %s)) * 1000000)::bigint").format(
            sql.Identifier(config.time_column)
        ), [config.timezone]
    if time_kind != "timestamptz":
        raise IngestError(
            f"source {config.name!r}: time column {config.time_column!r} is not a "
            "timestamp; store times as timestamptz"
        )
    return select_expression(config.time_column, "timestamptz"), []


def _entity_expression(config: PostgresSourceConfig) -> tuple[sql.Composable, list[object]]:
    if config.entity_column is None:
        return sql.SQL("%s::text"), [config.entity]
    return sql.SQL("{}::text").format(sql.Identifier(config.entity_column)), []


def _wide_plan(
    config: PostgresSourceConfig, columns: dict[str, str], report: SourceReport
) -> tuple[list[sql.Composable], list[str]]:
    keys = {config.time_column, *([config.entity_column] if config.entity_column else [])}
    _require(columns, sorted(keys), config)
    if config.columns is not None:
        _require(columns, list(config.columns), config)
        chosen = dict(config.columns)
    else:
        chosen = {
            c: c
            for c, t in columns.items()
            if c not in keys and kind_of_pg(t) in _NUMERIC - {"bool"}
        }
    report.unmapped_columns = [c for c in columns if c not in keys and c not in chosen]
    for column in chosen:
        if kind_of_pg(columns[column]) not in _NUMERIC:
            raise IngestError(
                f"source {config.name!r}: column {column!r} is "
                f"{columns[column]}, not numeric; map only numeric columns"
            )
    if not chosen:
        raise IngestError(
            f"source {config.name!r}: no numeric sensor columns in {config.table!r}; set 'columns'"
        )
    expressions = [_value_expression(c, kind_of_pg(columns[c])) for c in chosen]
    return expressions, list(chosen.values())


def read_postgres(
    config: PostgresSourceConfig,
    connection: psycopg.Connection | str,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    entities: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Canonical long rows (time UTC, entity, sensor, value, source) of one table in [start, end).

    ``connection`` is an open psycopg connection (left open) or a conninfo string (a
    connection is opened and closed here). Rows come back sorted by (entity, sensor, time),
    missing values as absent rows, like ``eraflow.stages.ingest.read_source``.
    """
    if start is not None and end is not None and start >= end:
        raise DataError(f"empty range: start {start} is not before end {end}")
    own = isinstance(connection, str)
    conn = connect(connection) if isinstance(connection, str) else connection
    try:
        return _read(conn, config, start, end, entities, progress)
    finally:
        if own:
            conn.close()


def _read(
    conn: psycopg.Connection,
    config: PostgresSourceConfig,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    entities: Sequence[str] | None,
    progress: Progress | None,
) -> IngestResult:
    report = SourceReport(source=config.name, files=[config.table])
    if entities is not None and config.entity is not None and config.entity not in entities:
        return _finish(empty_long(), config, report)
    columns = _table_columns(conn, config)
    _require(columns, [config.time_column], config)
    time_kind = kind_of_pg(columns[config.time_column])
    time_sql, params = _time_expression(config, time_kind)
    entity_sql, entity_params = _entity_expression(config)
    params += entity_params
    if config.layout == "wide":
        values, sensors = _wide_plan(config, columns, report)
        floats: list[Kind] = ["float"] * len(values)
        kinds: list[Kind] = ["timestamptz", "text", *floats]
    else:
        _require(columns, [config.sensor_column, config.value_column], config)
        values = [
            sql.SQL("{}::text").format(sql.Identifier(config.sensor_column)),
            _value_expression(config.value_column, kind_of_pg(columns[config.value_column])),
        ]
        sensors = []
        kinds = ["timestamptz", "text", "text", "float"]
    where, where_params = _where(config, time_kind, start, end, entities)
    query = sql.SQL("SELECT {}, {}, {} FROM {}{}").format(
        time_sql, entity_sql, sql.SQL(", ").join(values), config.table_identifier(), where
    )
    pieces: list[pd.DataFrame] = []
    try:
        for batch in copy_out(
            conn, query, params + where_params, kinds, block_size=config.block_bytes
        ):
            report.rows_read += batch.num_rows
            pieces.append(
                _wide_batch(batch, sensors)
                if config.layout == "wide"
                else _long_batch(batch, config)
            )
            if progress is not None:
                progress(report.rows_read, -1, config.name)
    except (psycopg.DataError, psycopg.ProgrammingError) as exc:
        raise IngestError(
            f"source {config.name!r}: reading {config.table!r} failed: {str(exc).strip()}"
        ) from None
    frame = pd.concat(pieces, ignore_index=True) if pieces else empty_long().drop(columns="source")
    frame = frame[frame["time"].notna()]
    if start is not None:
        frame = frame[frame["time"] >= start]
    if end is not None:
        frame = frame[frame["time"] < end]
    frame = resolve_duplicates(frame, source=config.name, policy=config.on_duplicate, report=report)
    return _finish(frame, config, report)


def _times(array: Any) -> np.ndarray:
    micros = array.to_numpy(zero_copy_only=False)
    return pd.to_datetime(micros, unit="us", utc=True).to_numpy()


def _wide_batch(batch: Any, sensors: list[str]) -> pd.DataFrame:
    n, k = batch.num_rows, len(sensors)
    values = (
        np.column_stack([batch.column(2 + i).to_numpy(zero_copy_only=False) for i in range(k)])
        .astype("float64")
        .reshape(-1)
    )
    present = ~np.isnan(values)
    times = np.repeat(_times(batch.column(0)), k)
    entities = np.repeat(batch.column(1).to_numpy(zero_copy_only=False), k)
    names = np.tile(np.array(sensors, dtype=object), n)
    return pd.DataFrame(
        {
            "time": times[present],
            "entity": entities[present],
            "sensor": names[present],
            "value": values[present],
        }
    )


def _long_batch(batch: Any, config: PostgresSourceConfig) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "time": _times(batch.column(0)),
            "entity": batch.column(1).to_numpy(zero_copy_only=False),
            "sensor": batch.column(2).to_numpy(zero_copy_only=False),
            "value": batch.column(3).to_numpy(zero_copy_only=False).astype("float64"),
        }
    )
    if config.sensors is not None:
        frame["sensor"] = frame["sensor"].map(config.sensors)
    return frame[frame["value"].notna() & frame["sensor"].notna()]


def _finish(
    frame: pd.DataFrame, config: PostgresSourceConfig, report: SourceReport
) -> IngestResult:
    return finish_long(frame, source=config.name, report=report)
