"""PostgreSQL helpers shared by the source reader, the loader and the result store.

Connections (password kept apart from the conninfo, scrubbed from errors), column kinds, and
bulk transfer: ``COPY ... FROM STDIN`` CSV-encoded by pyarrow in blocks, and ``COPY (query) TO
STDOUT`` parsed block by block by pyarrow. Why here and not in the store: ingest reads
PostgreSQL tables too, and must not depend on the result sink.
"""

from __future__ import annotations

import io
import json
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

from eraflow.common.errors import ConfigError, StoreError

Kind = Literal[
    "float",
    "int",
    "bool",
    "timestamptz",
    "timestamp",
    "interval",
    "json",
    "text",
    "floats",
    "label",
]
"""Column kinds; ``label`` is text with few distinct values (stored dictionary-encoded)."""
COPY_BLOCK_ROWS = 100_000
MAX_IDENTIFIER_BYTES = 63

_PG_TYPES: dict[Kind, str] = {
    "label": "text",
    "float": "double precision",
    "int": "bigint",
    "bool": "boolean",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "interval": "interval",
    "json": "jsonb",
    "text": "text",
    "floats": "double precision[]",
}
_KIND_OF_PG: dict[str, Kind] = {
    "double precision": "float",
    "real": "float",
    "numeric": "float",
    "bigint": "int",
    "integer": "int",
    "smallint": "int",
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "interval": "interval",
    "jsonb": "json",
    "json": "json",
    "double precision[]": "floats",
}
_ARROW_WIRE: dict[Kind, pa.DataType] = {
    "label": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.int8(),
    "timestamptz": pa.int64(),
    "timestamp": pa.int64(),
    "interval": pa.int64(),
    "json": pa.string(),
    "text": pa.string(),
    "floats": pa.string(),
}


def check_identifier(name: str, what: str) -> str:
    """A name PostgreSQL will keep as written (quoted): non-empty, no NUL, <= 63 bytes."""
    if not name or "\x00" in name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigError(
            f"{what} {name!r} is not a usable PostgreSQL name: it must be 1..63 bytes "
            "without NUL characters"
        )
    return name


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
        None if password is None else str(password)
    )


def redact(conninfo: str) -> str:
    """``postgresql://user@host:port/db``: enough for people to tell stores apart."""
    params = conninfo_to_dict(conninfo)
    user = params.get("user", "")
    host = params.get("host", "localhost")
    port = params.get("port", 5432)
    db = params.get("dbname", user)
    return f"postgresql://{user}@{host}:{port}/{db}"


CONNECT_TIMEOUT = 10
"""Seconds to wait for a PostgreSQL server that does not answer."""


def connect(conninfo: str, password: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """An autocommit connection in UTC; failures raise a scrubbed ``PostgresConnectionError``.

    Autocommit, so reads never leave a transaction open and every write opens its own
    with ``conn.transaction()``. Waits at most ``CONNECT_TIMEOUT`` seconds for the server
    unless the DSN or the caller says otherwise (libpq's default is to wait forever).
    """
    if password is not None:
        kwargs["password"] = password
    if "connect_timeout" not in kwargs and "connect_timeout" not in conninfo:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
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
            text = (
                pd.Series(deltas.to_numpy().view("int64"), index=series.index).astype("string")
                + " microseconds"
            )
            return text.mask(deltas.isna())
        if kind == "json":
            return series.map(
                lambda v: None if _is_missing(v) else json.dumps(v, default=str)
            ).astype("string")
        if kind == "floats":
            return series.map(_array_literal).astype("string")
        if kind == "int":
            return series.astype("Int64")
        if kind == "bool":
            return series.astype("boolean")
        if kind == "float":
            return pd.to_numeric(series).astype("float64")
        return series.astype("string")
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"column {name!r} cannot be stored as {_PG_TYPES[kind]}: {exc}; "
            "fix its dtype in the frame"
        ) from None


def _array_literal(values: object) -> str | None:
    """A float sequence as a PostgreSQL array literal (``{1.5,NaN,Infinity}``)."""
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64)
    text = np.char.mod("%.17g", array).astype(object)
    text[np.isnan(array)] = "NaN"
    text[np.isposinf(array)] = "Infinity"
    text[np.isneginf(array)] = "-Infinity"
    return "{" + ",".join(text) + "}"


def _parse_array(text: str | None) -> np.ndarray | None:
    """A PostgreSQL float array literal back to float64 (NULL elements become NaN)."""
    if text is None:
        return None
    body = text.strip()[1:-1]
    if not body:
        return np.zeros(0)
    parts = [("nan" if p == "NULL" else p) for p in body.split(",")]
    return np.array(parts, dtype=np.float64)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def from_wire(array: pa.ChunkedArray | pa.Array, kind: Kind) -> pd.Series:
    """A column of ``copy_out``'s wire batches as a pandas series of ``kind``."""
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
    if kind == "floats":
        return pd.Series([_parse_array(v) for v in array.to_pylist()], dtype=object)
    if kind == "json":
        return array.to_pandas().map(
            lambda v: (
                None
                if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                else json.loads(v)
            )
        )
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


def copy_out(
    conn: psycopg.Connection,
    query: sql.Composable,
    params: Sequence[Any] | None,
    kinds: Sequence[Kind],
    *,
    block_size: int = 1 << 22,
) -> Iterator[pa.RecordBatch]:
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
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=block_size, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict(zip(names, (_ARROW_WIRE[k] for k in kinds), strict=True)),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
            ),
        )
        yield from stream
        # drain whatever pyarrow did not ask for, so the connection is usable again
        while reader.read(1 << 20):
            pass


def read_frame(
    conn: psycopg.Connection,
    query: sql.Composable,
    params: Sequence[Any] | None,
    columns: Sequence[tuple[str, Kind]],
) -> pd.DataFrame:
    """A whole query result as a typed DataFrame (see ``copy_out``)."""
    kinds = [k for _, k in columns]
    batches = list(copy_out(conn, query, params, kinds))
    names = [f"c{i}" for i in range(len(kinds))]
    schema = pa.schema([(n, _ARROW_WIRE[k]) for n, k in zip(names, kinds, strict=True)])
    table = pa.Table.from_batches(batches, schema=schema)
    return pd.DataFrame(
        {name: from_wire(table.column(i), kind) for i, (name, kind) in enumerate(columns)}
    )


def copy_in(
    cur: psycopg.Cursor,
    table: sql.Composable,
    columns: Sequence[str],
    frame: pd.DataFrame,
    kinds: Sequence[Kind],
) -> int:
    """``COPY table (columns) FROM STDIN`` the frame, CSV-encoded by pyarrow in blocks."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    options = pacsv.WriteOptions(include_header=False)
    with cur.copy(statement) as copy:
        for begin in range(0, len(frame), COPY_BLOCK_ROWS):
            part = frame.iloc[begin : begin + COPY_BLOCK_ROWS]
            wire = pd.DataFrame(
                {
                    str(i): _as_wire(part[c], k, c)
                    for i, (c, k) in enumerate(zip(part.columns, kinds, strict=True))
                }
            )
            buffer = io.BytesIO()
            pacsv.write_csv(pa.Table.from_pandas(wire, preserve_index=False), buffer, options)
            copy.write(buffer.getbuffer())
    return len(frame)


def plain(value: object) -> object:
    """A parameter psycopg adapts: numpy scalars → Python, pandas Timestamp → datetime."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, pd.Timedelta):
        return value.to_pytimedelta()
    if isinstance(value, np.generic):
        return value.item()
    return value


def pg_message(exc: psycopg.Error) -> str:
    """PostgreSQL's own message, detail and context line (never the connection string)."""
    diag = exc.diag
    parts = [diag.message_primary or str(exc).strip()]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.context:
        parts.append(diag.context.strip().splitlines()[0])
    return "; ".join(parts)
