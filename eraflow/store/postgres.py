"""A PostgreSQL result store with the same interface and semantics as ``ParquetStore``.

Design
------
- Tables live in one schema (default ``eraflow``), created and upgraded by
  ``eraflow.store.pg_schema.migrate`` when the store is opened (see that module for the DDL).
- The **grid is stored long**: ``grid(entity, sensor, time, value, filled)`` with primary key
  (entity, sensor, time). A new sensor is a new value of ``sensor``, never an ``ALTER TABLE`` on
  the biggest table; ``read_grid`` pivots back to the frame ``ParquetStore.read_grid`` returns
  (time, entity, sensors sorted, masks sorted; float64/bool; ``datetime64[us, UTC]``; sorted by
  entity and time; columns of every sensor ever written, NaN/False where an entity lacks one).
  A grid row whose sensors are all missing is still stored (value NULL), so no time is lost.
- ``eras`` and ``features`` have fixed columns and primary keys (DESIGN.md); ``coverage``,
  ``selection`` and ``feature_matrix`` are created on first write from the frame's dtypes
  (float → double precision, int → bigint, bool → boolean, tz-aware datetime → timestamptz,
  naive datetime → timestamp (read as UTC wall time), timedelta → interval, lists/dicts →
  jsonb, anything else → text). New frame columns are added with ``ALTER TABLE ... ADD COLUMN``.
  Every table has an ``entity`` column (filled from the ``entity`` argument when the frame has
  none), so one entity's rows can be replaced and read alone.
- Frame column names longer than PostgreSQL's 63-byte limit (common for tsfresh names) are
  stored under a shortened, hashed name recorded in ``eraflow_columns`` and restored on read.
  A table cannot exceed PostgreSQL's 1600 columns: a wider ``feature_matrix`` is refused with a
  clear error (the long ``features`` table holds the same data).

Writes
------
Each call is one transaction: the rows are sent with ``COPY ... FROM STDIN`` (CSV encoded by
pyarrow, in blocks) into a ``TEMP`` staging table that copies the target's types and NOT NULL
constraints; then the replaced rows are deleted (the grid range of the frame's entities, or the
entity's rows matching ``replace_where``, and for ``eras``/``features`` also any stored row with
a staged row's primary key: replace-by-key, an upsert) and the staged rows inserted in key
order. Any failure rolls everything back: the previous rows are
intact. Writing the same range twice gives the same rows.

Errors
------
``StoreError`` (an ``EraflowError``: not retried by the tasks) for what the caller must fix:
bad frames, type mismatches, constraint violations. ``PostgresConnectionError`` (a
``ConnectionError``: retried) when the server cannot be reached. Neither ever contains the
password: it is kept apart from the conninfo, which is what ``describe()`` and ``repr`` show.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from eraflow.errors import ConfigError, StoreError
from eraflow.grid import MASK_PREFIX, sensor_columns
from eraflow.store.base import TABLES
from eraflow.store.pg_schema import MAX_IDENTIFIER_BYTES, check_identifier, migrate

logger = logging.getLogger(__name__)

Kind = Literal["float", "int", "bool", "timestamptz", "timestamp", "interval", "json", "text"]
MAX_COLUMNS = 1600
COPY_BLOCK_ROWS = 100_000
KEYED_TABLES = {"eras", "features"}

_PG_TYPES: dict[Kind, str] = {
    "float": "double precision", "int": "bigint", "bool": "boolean",
    "timestamptz": "timestamptz", "timestamp": "timestamp", "interval": "interval",
    "json": "jsonb", "text": "text",
}
_KIND_OF_PG: dict[str, Kind] = {
    "double precision": "float", "real": "float", "numeric": "float", "bigint": "int",
    "integer": "int", "smallint": "int", "boolean": "bool",
    "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
    "interval": "interval", "jsonb": "json", "json": "json",
}
_ARROW_WIRE: dict[Kind, pa.DataType] = {
    "float": pa.float64(), "int": pa.int64(), "bool": pa.int8(), "timestamptz": pa.int64(),
    "timestamp": pa.int64(), "interval": pa.int64(), "json": pa.string(), "text": pa.string(),
}


class PostgresConnectionError(ConnectionError):
    """The server could not be reached or refused the login (retryable; no secrets inside)."""


# connection info -----------------------------------------------------------------------------
def split_password(dsn: str) -> tuple[str, str | None]:
    """Split a DSN (URI or ``key=value``) into a password-free conninfo and the password.

    Why: the conninfo may then be shown, logged and pickled freely; only the password is secret.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq echoes the malformed string in its message: never show it.
        raise ConfigError(
            "the PostgreSQL DSN is malformed; write it as postgresql://user@host:5432/db or "
            "'host=... port=... dbname=... user=...'"
        ) from None
    password = params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), (
        None if password is None else str(password))


def redact(conninfo: str) -> str:
    """``postgresql://user@host:port/db``: enough for people to tell stores apart."""
    params = conninfo_to_dict(conninfo)
    user = params.get("user", "")
    host = params.get("host", "localhost")
    port = params.get("port", 5432)
    db = params.get("dbname", user)
    return f"postgresql://{user}@{host}:{port}/{db}"


def connect(conninfo: str, password: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """An autocommit connection in UTC; failures raise a scrubbed ``PostgresConnectionError``.

    Autocommit, so reads never leave a transaction open and every write opens its own
    with ``conn.transaction()``.
    """
    if password is not None:
        kwargs["password"] = password
    try:
        conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
    except psycopg.Error as exc:
        message = str(exc)
        if password:
            message = message.replace(password, "********")
        raise PostgresConnectionError(
            f"cannot connect to {redact(conninfo)}: {message.strip()}; check host, port, "
            "database, user and password (the password is not shown)"
        ) from None
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


# types ---------------------------------------------------------------------------------------
def kind_of_series(series: pd.Series) -> Kind:
    """The column kind a new table column gets for this frame column."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "interval"
    if pd.api.types.is_object_dtype(dtype):
        values = series.dropna()
        if len(values) and values.map(lambda v: isinstance(v, list | tuple | dict)).all():
            return "json"
        if len(values) and values.map(lambda v: isinstance(v, pd.Timestamp)).all():
            return "timestamptz"
    return "text"


def kind_of_pg(type_name: str) -> Kind:
    """The kind of an existing column (``format_type`` text); unknown types read as text."""
    base = type_name.split("(")[0].strip()
    return _KIND_OF_PG.get(base, "text")


def _as_wire(series: pd.Series, kind: Kind, name: str) -> pd.Series:
    """The frame column as values PostgreSQL parses from CSV into a ``kind`` column."""
    try:
        if kind == "timestamptz":
            return pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")
        if kind == "timestamp":
            times = pd.to_datetime(series)
            if isinstance(times.dtype, pd.DatetimeTZDtype):
                times = times.dt.tz_convert("UTC").dt.tz_localize(None)
            return times.astype("datetime64[us]")
        if kind == "interval":
            deltas = pd.to_timedelta(series).astype("timedelta64[us]")
            text = pd.Series(deltas.to_numpy().view("int64"), index=series.index).astype(
                "string") + " microseconds"
            return text.mask(deltas.isna())
        if kind == "json":
            return series.map(lambda v: None if _is_missing(v) else json.dumps(
                v, default=str)).astype("string")
        if kind == "int":
            return series.astype("Int64")
        if kind == "bool":
            return series.astype("boolean")
        if kind == "float":
            return pd.to_numeric(series).astype("float64")
        return series.astype("string")
    except (TypeError, ValueError) as exc:
        raise StoreError(f"column {name!r} cannot be stored as {_PG_TYPES[kind]}: {exc}; "
                         "fix its dtype in the frame") from None


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _from_wire(array: pa.ChunkedArray | pa.Array, kind: Kind) -> pd.Series:
    if kind == "timestamptz":
        return pc.cast(array, pa.timestamp("us", tz="UTC")).to_pandas()
    if kind == "timestamp":
        return pc.cast(array, pa.timestamp("us")).to_pandas()
    if kind == "interval":
        return pc.cast(array, pa.duration("us")).to_pandas()
    if kind == "bool":
        values = pc.cast(array, pa.bool_())
        return values.to_pandas().astype("boolean" if values.null_count else "bool")
    if kind == "int":
        out = array.to_pandas()
        return out.astype("Int64") if array.null_count else out.astype("int64")
    if kind == "json":
        return array.to_pandas().map(lambda v: None if v is None or v is pd.NA
                                     or (isinstance(v, float) and np.isnan(v)) else json.loads(v))
    return array.to_pandas()


def select_expression(column: str, kind: Kind) -> sql.Composable:
    """A SELECT expression whose CSV text parses exactly into the kind's wire arrow type."""
    ident = sql.Identifier(column)
    if kind in ("timestamptz", "timestamp", "interval"):
        return sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(ident)
    if kind == "bool":
        return sql.SQL("{}::int").format(ident)
    if kind == "float":
        return sql.SQL("{}::double precision").format(ident)
    if kind == "int":
        return sql.SQL("{}::bigint").format(ident)
    return sql.SQL("{}::text").format(ident)


# COPY in and out -----------------------------------------------------------------------------
class _CopyReader:
    """A file-like view of a ``COPY ... TO STDOUT`` stream, for pyarrow's streaming CSV reader."""

    def __init__(self, copy: psycopg.Copy) -> None:
        self._copy = copy
        self._chunks: list[bytes] = []
        self._size = 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or self._size < size:
            chunk = self._copy.read()
            if not chunk:
                break
            self._chunks.append(bytes(chunk))
            self._size += len(chunk)
        data = b"".join(self._chunks)
        out, rest = (data, b"") if size < 0 else (data[:size], data[size:])
        self._chunks = [rest] if rest else []
        self._size = len(rest)
        return out

    def close(self) -> None:
        self.closed = True


def copy_out(conn: psycopg.Connection, query: sql.Composable, params: Sequence[Any] | None,
             kinds: Sequence[Kind], *, block_size: int = 1 << 22) -> Iterator[pa.RecordBatch]:
    """Stream a query's rows as arrow batches (columns ``c0, c1, ...`` in wire types).

    ``COPY (query) TO STDOUT`` in CSV, parsed block by block by pyarrow: memory stays bounded
    by the block size however large the range, and no Python object is made per value.
    The query must select the wire expressions of ``select_expression``.
    """
    names = [f"c{i}" for i in range(len(kinds))]
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        reader = _CopyReader(copy)
        first = reader.read(1)
        if not first:
            return
        reader._chunks.insert(0, first)
        reader._size += len(first)
        stream = pacsv.open_csv(
            pa.PythonFile(reader, mode="r"),
            read_options=pacsv.ReadOptions(column_names=names, block_size=block_size,
                                           use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict(zip(names, (_ARROW_WIRE[k] for k in kinds), strict=True)),
                strings_can_be_null=True, quoted_strings_can_be_null=False,
                null_values=[""]),
        )
        yield from stream
        # drain whatever pyarrow did not ask for, so the connection is usable again
        while reader.read(1 << 20):
            pass


def read_frame(conn: psycopg.Connection, query: sql.Composable, params: Sequence[Any] | None,
               columns: Sequence[tuple[str, Kind]]) -> pd.DataFrame:
    """A whole query result as a typed DataFrame (see ``copy_out``)."""
    kinds = [k for _, k in columns]
    batches = list(copy_out(conn, query, params, kinds))
    names = [f"c{i}" for i in range(len(kinds))]
    schema = pa.schema([(n, _ARROW_WIRE[k]) for n, k in zip(names, kinds, strict=True)])
    table = pa.Table.from_batches(batches, schema=schema)
    return pd.DataFrame({name: _from_wire(table.column(i), kind)
                         for i, (name, kind) in enumerate(columns)})


def copy_in(cur: psycopg.Cursor, table: sql.Composable, columns: Sequence[str],
            frame: pd.DataFrame, kinds: Sequence[Kind]) -> int:
    """``COPY table (columns) FROM STDIN`` the frame, CSV-encoded by pyarrow in blocks."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    options = pacsv.WriteOptions(include_header=False)
    with cur.copy(statement) as copy:
        for begin in range(0, len(frame), COPY_BLOCK_ROWS):
            part = frame.iloc[begin:begin + COPY_BLOCK_ROWS]
            wire = pd.DataFrame({str(i): _as_wire(part[c], k, c)
                                 for i, (c, k) in enumerate(zip(part.columns, kinds,
                                                                strict=True))})
            buffer = io.BytesIO()
            pacsv.write_csv(pa.Table.from_pandas(wire, preserve_index=False), buffer, options)
            copy.write(buffer.getbuffer())
    return len(frame)


def stored_name(column: str) -> str:
    """The PostgreSQL column name for a frame column (hashed when over 63 bytes)."""
    raw = column.encode()
    if len(raw) <= MAX_IDENTIFIER_BYTES:
        return column
    digest = hashlib.sha1(raw).hexdigest()[:12]
    head = raw[:MAX_IDENTIFIER_BYTES - 14].decode(errors="ignore")
    return f"{head}__{digest}"


def _plain(value: object) -> object:
    """A parameter psycopg adapts: numpy scalars → Python, pandas Timestamp → datetime."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, pd.Timedelta):
        return value.to_pytimedelta()
    if isinstance(value, np.generic):
        return value.item()
    return value


# the store -----------------------------------------------------------------------------------
class PostgresStore:
    """Results in PostgreSQL: the ``ResultStore`` protocol, one transaction per write.

    Parameters
    ----------
    dsn
        libpq connection string or URI. A password inside it is split off and kept apart.
    schema
        PostgreSQL schema holding eraflow's tables (created when absent).
    password
        The password, when not in ``dsn`` (what the Prefect block passes).
    connect_kwargs
        More ``psycopg.connect`` keyword arguments (``connect_timeout``, ``sslmode``, ...).

    The connection opens (and the schema migrates) in the constructor, so a wrong DSN fails
    early; it reopens lazily after unpickling (Dask workers) or when the server dropped it.
    """

    def __init__(self, dsn: str, *, schema: str = "eraflow", password: str | None = None,
                 **connect_kwargs: Any) -> None:
        self._conninfo, inline = split_password(dsn)
        self._password = password if password is not None else inline
        self._connect_kwargs = connect_kwargs
        self.schema = check_identifier(schema, "schema name")
        self._conn: psycopg.Connection | None = None
        self._migrated = False
        self.connection()

    # lifecycle
    def connection(self) -> psycopg.Connection:
        """The live autocommit connection (reopened when closed), schema migrated."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._conninfo, self._password, **self._connect_kwargs)
            if not self._migrated:
                try:
                    migrate(self._conn, self.schema)
                except psycopg.Error as exc:
                    raise StoreError(f"cannot create or upgrade schema {self.schema!r} in "
                                     f"{redact(self._conninfo)}: {exc}") from None
                self._migrated = True
        return self._conn

    def close(self) -> None:
        """Close the connection (the store reconnects on next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"] = None  # live connections do not pickle; reopened on first use
        return state

    def __repr__(self) -> str:
        return f"PostgresStore({self.describe()!r})"

    def describe(self) -> str:
        """Where the results are, without the password."""
        return f"{redact(self._conninfo)} schema={self.schema}"

    def _table(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.schema, table)

    # catalogue
    def table_columns(self, table: str) -> list[tuple[str, str]]:
        """(column, type) of a table in column order; empty when the table does not exist."""
        conn = self.connection()
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", [self._table(table).as_string(conn)]).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def _primary_key(self, table: str) -> list[str]:
        conn = self.connection()
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            [self._table(table).as_string(conn)]).fetchall()
        return [str(r[0]) for r in rows]

    def _frame_names(self, table: str) -> dict[str, str]:
        """Stored column name → frame column name, for the shortened long names."""
        rows = self.connection().execute(
            sql.SQL("SELECT column_name, frame_column FROM {} WHERE table_name = %s").format(
                self._table("eraflow_columns")), [table]).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # grid
    def write_grid(self, grid: pd.DataFrame, *, start: pd.Timestamp,
                   end: pd.Timestamp) -> int:
        """Replace each entity's grid rows in [start, end) by the rows of ``grid``."""
        if start >= end:
            raise StoreError(f"empty range: start {start} is not before end {end}")
        times = pd.to_datetime(grid["time"], utc=True)
        outside = int(((times < start) | (times >= end)).sum())
        if outside:
            raise StoreError(f"{outside} grid rows lie outside [{start}, {end})")
        long = grid_to_long(grid)
        entities = sorted(grid["entity"].astype(str).unique().tolist())
        sensors = sorted(long["sensor"].unique().tolist())
        conn = self.connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                stage = self._stage(cur, "grid")
                copy_in(cur, stage, list(long.columns), long,
                        ["text", "text", "timestamptz", "float", "bool"])
                cur.execute(sql.SQL(
                    "DELETE FROM {} WHERE entity = ANY(%s) AND time >= %s AND time < %s"
                ).format(self._table("grid")), [entities, _plain(start), _plain(end)])
                cur.execute(sql.SQL("INSERT INTO {} (entity, sensor, time, value, filled) "
                                    "SELECT entity, sensor, time, value, filled FROM {}").format(
                    self._table("grid"), stage))
                cur.execute(sql.SQL("INSERT INTO {} (sensor) SELECT unnest(%s::text[]) "
                                    "ON CONFLICT DO NOTHING").format(
                    self._table("grid_sensors")), [sensors])
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            raise StoreError(f"writing the grid of {entities} for [{start}, {end}) failed and "
                             f"was rolled back (nothing changed): {_pg_message(exc)}") from None
        logger.debug("wrote grid rows=%d cells=%d entities=%s", len(grid), len(long), entities)
        return len(grid)

    def _stage(self, cur: psycopg.Cursor, table: str) -> sql.Identifier:
        stage = sql.Identifier(f"eraflow_stage_{table}")
        cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) "
                            "ON COMMIT DROP").format(stage, self._table(table)))
        return stage

    def grid_sensors(self) -> list[str]:
        """Every sensor ever written to the grid, sorted."""
        rows = self.connection().execute(sql.SQL("SELECT sensor FROM {} ORDER BY sensor").format(
            self._table("grid_sensors"))).fetchall()
        return [str(r[0]) for r in rows]

    def read_grid(self, *, entity: str | None = None, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Grid rows of one or all entities in [start, end), sorted by (entity, time)."""
        where, params = [], []
        for clause, value in (("entity = %s", entity), ("time >= %s", start),
                              ("time < %s", end)):
            if value is not None:
                where.append(sql.SQL(clause))
                params.append(_plain(value))
        query = sql.SQL("SELECT entity, sensor, {}, value, filled::int FROM {}{}").format(
            select_expression("time", "timestamptz"), self._table("grid"),
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""))
        long = read_frame(self.connection(), query, params,
                          [("entity", "text"), ("sensor", "text"), ("time", "timestamptz"),
                           ("value", "float"), ("filled", "bool")])
        return long_to_grid(long, self.grid_sensors())

    # keyed tables
    def write_table(self, table: str, frame: pd.DataFrame, *, entity: str,
                    replace_where: dict[str, object] | None = None) -> int:
        """Replace one entity's rows of a table, in one transaction.

        ``replace_where`` selects the old rows to drop: ``{"column": value}`` for equality,
        ``{"column": [a, b]}`` for membership,
        ``{"column": (low, high)}`` for low <= value < high; None drops all of the entity's
        rows. The new rows are then inserted, replacing rows with the same key (``eras``,
        ``features``).
        """
        self._check_table(table)
        if table == "grid":
            raise StoreError("use write_grid for the grid")
        frame = frame.reset_index(drop=True)
        if "entity" in frame and len(frame) and (frame["entity"].astype(str) != entity).any():
            raise StoreError(f"rows for another entity than {entity!r} in {table}")
        if "entity" not in frame:
            frame.insert(0, "entity", entity)
        frame.columns = [str(c) for c in frame.columns]
        conn = self.connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                columns = self._ensure_columns(cur, table, frame)
                stage = self._stage(cur, table)
                stored = [name for name, _ in columns]
                copy_in(cur, stage, stored, frame, [kind for _, kind in columns])
                self._delete(cur, table, entity, replace_where, columns, frame)
                self._insert_from_stage(cur, table, stage, stored)
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            raise StoreError(f"writing {table} for entity {entity!r} failed and was rolled "
                             f"back (nothing changed): {_pg_message(exc)}") from None
        logger.debug("wrote table=%s entity=%s rows=%d", table, entity, len(frame))
        return len(frame)

    def _check_table(self, table: str) -> None:
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}; tables are {TABLES}")

    def _ensure_columns(self, cur: psycopg.Cursor, table: str,
                        frame: pd.DataFrame) -> list[tuple[str, Kind]]:
        """Create the table / add missing columns; (stored name, kind) per frame column."""
        wanted = {c: stored_name(c) for c in frame.columns}
        existing = dict(self.table_columns(table))
        if all(s in existing for s in wanted.values()):
            return [(wanted[c], kind_of_pg(existing[wanted[c]])) for c in frame.columns]
        # DDL: serialise writers of this table, then look again (another may have added it)
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                    [f"eraflow:{self.schema}.{table}"])
        existing = dict(self.table_columns(table))
        missing = [c for c in frame.columns if wanted[c] not in existing]
        if len(existing) + len(missing) > MAX_COLUMNS:
            raise StoreError(
                f"{table} would need {len(existing) + len(missing)} columns; PostgreSQL allows "
                f"{MAX_COLUMNS}. Keep the features long (the features table) and pivot with "
                "eraflow.features.engine.to_wide when reading, or select fewer features")
        if not existing:
            cur.execute(sql.SQL("CREATE TABLE {} (entity text NOT NULL)").format(
                self._table(table)))
            cur.execute(sql.SQL("CREATE INDEX ON {} (entity)").format(self._table(table)))
            existing = {"entity": "text"}
            missing = [c for c in missing if wanted[c] != "entity"]
        for column in missing:
            kind = kind_of_series(frame[column])
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                self._table(table), sql.Identifier(wanted[column]), sql.SQL(_PG_TYPES[kind])))
            existing[wanted[column]] = _PG_TYPES[kind]
            if wanted[column] != column:
                cur.execute(sql.SQL(
                    "INSERT INTO {} (table_name, column_name, frame_column) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING").format(self._table("eraflow_columns")),
                    [table, wanted[column], column])
        return [(wanted[c], kind_of_pg(existing[wanted[c]])) for c in frame.columns]

    def _where(self, table: str, entity: str, where: dict[str, object] | None,
               ) -> tuple[sql.Composable, list[object]]:
        """``entity = %s AND ...`` for the store's condition forms, with its parameters."""
        known = {c for c, _ in self.table_columns(table)}
        clauses: list[sql.Composable] = [sql.SQL("entity = %s")]
        params: list[object] = [entity]
        for column, condition in (where or {}).items():
            stored = stored_name(column)
            if stored not in known:
                raise StoreError(f"{table} has no column {column!r} (replace_where)")
            ident = sql.Identifier(stored)
            if isinstance(condition, tuple):
                low, high = condition
                clauses.append(sql.SQL("{} >= %s AND {} < %s").format(ident, ident))
                params += [_plain(low), _plain(high)]
            elif isinstance(condition, list | set | frozenset):
                clauses.append(sql.SQL("{} = ANY(%s)").format(ident))
                params.append([_plain(v) for v in condition])
            elif condition is None:
                clauses.append(sql.SQL("{} IS NULL").format(ident))
            else:
                clauses.append(sql.SQL("{} = %s").format(ident))
                params.append(_plain(condition))
        return sql.SQL(" AND ").join(clauses), params

    def _delete(self, cur: psycopg.Cursor, table: str, entity: str,
                replace_where: dict[str, object] | None,
                columns: list[tuple[str, Kind]], frame: pd.DataFrame) -> None:
        condition, params = self._where(table, entity, replace_where)
        cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self._table(table), condition),
                    params)

    def has_rows(self, table: str, *, entity: str, where: dict[str, object] | None = None
                 ) -> bool:
        """Whether any stored row of ``entity`` matches ``where`` (same forms as replace_where)."""
        self._check_table(table)
        if not self.table_columns(table):
            return False
        condition, params = self._where(table, entity, where)
        with self.connection().cursor() as cur:
            cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                self._table(table), condition), params)
            row = cur.fetchone()
        self.connection().commit()
        return bool(row and row[0])

    def _insert_from_stage(self, cur: psycopg.Cursor, table: str, stage: sql.Identifier,
                           stored: list[str]) -> None:
        """Insert the staged rows, first deleting stored rows with the same primary key.

        Delete-then-insert gives the upsert's replace-by-key result at about a third of the
        cost of ``INSERT ... ON CONFLICT DO UPDATE`` on a fresh range (measured, see
        benchmarks/bench_sink.py); duplicate keys inside one frame still fail (and roll back).
        """
        key = self._primary_key(table)
        names = sql.SQL(", ").join(sql.Identifier(c) for c in stored)
        order: sql.Composable = sql.SQL("")
        if key and set(key) <= set(stored):
            keys = sql.SQL(", ").join(sql.Identifier(c) for c in key)
            cur.execute(sql.SQL("ANALYZE {}").format(stage))
            cur.execute(sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE ({}) = ({})").format(
                self._table(table), stage,
                sql.SQL(", ").join(sql.Identifier("t", c) for c in key),
                sql.SQL(", ").join(sql.Identifier("s", c) for c in key)))
            # rows in key order: B-tree inserts then touch each index page once
            order = sql.SQL(" ORDER BY {}").format(keys)
        cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}{}").format(
            self._table(table), names, names, stage, order))

    def read_table(self, table: str, *, entity: str | None = None) -> pd.DataFrame:
        """A table, whole or for one entity (an empty frame when the table does not exist)."""
        self._check_table(table)
        if table == "grid":
            return self.read_grid(entity=entity)
        columns = self.table_columns(table)
        if not columns:
            return pd.DataFrame()
        frame_names = self._frame_names(table)
        kinds: list[tuple[str, Kind]] = [(frame_names.get(c, c), kind_of_pg(t))
                                         for c, t in columns]
        order = self._primary_key(table) or ["entity"]
        query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}").format(
            sql.SQL(", ").join(select_expression(c, kind_of_pg(t)) for c, t in columns),
            self._table(table), sql.SQL(" WHERE entity = %s") if entity is not None
            else sql.SQL(""), sql.SQL(", ").join(sql.Identifier(c) for c in order))
        return read_frame(self.connection(), query, [entity] if entity is not None else None,
                          kinds)


def _pg_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    parts = [diag.message_primary or str(exc).strip()]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.context:
        parts.append(diag.context.strip().splitlines()[0])
    return "; ".join(parts)


# grid shape ----------------------------------------------------------------------------------
def grid_to_long(grid: pd.DataFrame) -> pd.DataFrame:
    """Wide grid → (entity, sensor, time, value, filled), one row per cell, NaN kept."""
    sensors = sensor_columns(grid)
    if not sensors:
        raise StoreError("the grid has no sensor columns (only time/entity/masks)")
    n, k = len(grid), len(sensors)
    values = grid[sensors].to_numpy(dtype="float64", na_value=np.nan)
    masks = np.column_stack([
        grid[f"{MASK_PREFIX}{s}"].fillna(False).to_numpy(dtype=bool)
        if f"{MASK_PREFIX}{s}" in grid else np.zeros(n, dtype=bool) for s in sensors])
    return pd.DataFrame({
        "entity": np.repeat(grid["entity"].astype(str).to_numpy(dtype=object), k),
        "sensor": np.tile(np.array(sensors, dtype=object), n),
        "time": np.repeat(pd.to_datetime(grid["time"], utc=True).to_numpy(), k),
        "value": values.reshape(-1),
        "filled": masks.reshape(-1) if n else np.zeros(0, dtype=bool),
    }).astype({"time": "datetime64[us, UTC]"})


def long_to_grid(long: pd.DataFrame, sensors: list[str]) -> pd.DataFrame:
    """(entity, sensor, time, value, filled) → the wide frame ``ParquetStore.read_grid`` gives."""
    if not len(long):
        return pd.DataFrame(columns=["time", "entity"])
    sensors = sorted(set(sensors) | set(long["sensor"].unique()))
    wide = long.pivot(index=["entity", "time"], columns="sensor", values=["value", "filled"])
    values = wide["value"].reindex(columns=sensors).astype("float64")
    masks = wide["filled"].reindex(columns=sensors).fillna(False).astype(bool)
    masks.columns = [f"{MASK_PREFIX}{s}" for s in sensors]
    out = pd.concat([values, masks], axis=1).reset_index()
    out = out[["time", "entity", *sensors, *masks.columns]]
    out.columns.name = None
    out["entity"] = out["entity"].astype("string")
    out["time"] = out["time"].astype("datetime64[us, UTC]")
    return out.sort_values(["entity", "time"]).reset_index(drop=True)
