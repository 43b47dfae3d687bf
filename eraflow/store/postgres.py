"""A PostgreSQL result store with the same protocol and semantics as ``ParquetStore``.

Tables live in one schema (default ``eraflow``), created and upgraded by
``eraflow.store.pg_schema.migrate`` when the store is opened; their columns are the ones
declared in :mod:`eraflow.store.tables`. The grid is long (one row per entity, sensor and
time), so a new sensor never needs an ``ALTER TABLE``; the feature matrix is one row per era
with its values as a ``double precision[]`` (PostgreSQL holds at most 1,600 columns, a level
has thousands of features), their names being the scope's selection ``position`` column.

Writes: each ``replace`` or ``delete`` is one transaction, and ``replace_many`` one transaction
for several tables (selection and its feature matrix). A transaction first takes a
transaction-level advisory lock per (table, owner) it writes, in a fixed order, so concurrent
replaces of one entity's range run one after the other instead of failing on a duplicate key
(two deletes of the same range would both insert). The rows are sent with ``COPY ... FROM
STDIN`` into a ``TEMP`` staging table shaped like the target, then the key range is deleted
and the staged rows inserted in key order; any failure rolls everything back, so the previous
rows are intact. Reads stream ``COPY (SELECT ...) TO STDOUT`` through pyarrow in blocks;
``read_many`` reads in one ``REPEATABLE READ`` transaction (one snapshot). ``lock`` is a
session advisory lock per owner (one per schema and owner name), re-entrant per thread, waited
for at most ``lock_timeout`` seconds (then ``LockTimeoutError`` names the holding backend).
The two kinds of advisory lock use different key spaces (one bigint vs two integers), so a
replace inside ``lock`` never waits for its own section.

Errors: ``StoreError`` (not retried) for what the caller must fix; ``PostgresConnectionError``
(a ``ConnectionError``: retried) when the server cannot be reached. Neither ever contains the
password: it is kept apart from the conninfo, which is what ``describe()`` and ``repr`` show.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from eraflow.common.errors import StoreError
from eraflow.common.pg import (
    PostgresConnectionError,
    check_identifier,
    connect,
    copy_in,
    copy_out,
    pg_message,
    plain,
    redact,
    select_expression,
    split_password,
)
from eraflow.store.arrow import empty_frame, sort_by_key, to_frame
from eraflow.store.base import Key, Range, Write, check_key, check_writes
from eraflow.store.crash import crash_point
from eraflow.store.locks import LockTimeoutError
from eraflow.store.pg_schema import migrate
from eraflow.store.tables import Table, table

logger = logging.getLogger(__name__)

__all__ = ["PostgresConnectionError", "PostgresStore", "split_password"]


class _Held(threading.local):
    def __init__(self) -> None:
        self.sections: dict[tuple[str, str, str], int] = {}


_held = _Held()
"""The owner sections each thread holds (``lock`` is re-entrant per thread)."""

_HOLDER = """SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(%s)::bigint"""


def _declared(spec: Table, columns: Sequence[str], batch: pa.RecordBatch) -> pa.RecordBatch:
    """A COPY batch (wire types: epoch microseconds, 0/1, array text) in the declared types."""
    arrays = []
    for i, name in enumerate(columns):
        kind, column = spec.kind(name), batch.column(i)
        target = spec.schema.field(name).type
        if kind == "timestamptz":
            column = pc.cast(column, pa.timestamp("us", tz="UTC"))
        elif kind == "bool":
            column = pc.cast(column, pa.bool_())
        elif kind == "floats":
            column = pa.array(
                [None if text is None else _parse_floats(text) for text in column.to_pylist()],
                type=target,
            )
        arrays.append(column.cast(target) if column.type != target else column)
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def _parse_floats(text: str) -> np.ndarray:
    body = text.strip()[1:-1]
    if not body:
        return np.zeros(0)
    return np.array([("nan" if p == "NULL" else p) for p in body.split(",")], dtype=np.float64)


DEAD_CLIENT_PROBES = {
    "tcp_keepalives_idle": 30,
    "tcp_keepalives_interval": 10,
    "tcp_keepalives_count": 3,
}
"""Server-side TCP keepalives of this store's sessions (seconds, probes). A worker host that died
or was cut off mid-transaction otherwise keeps its session, and the locks it holds, for the
operating system's two hours; with these the server drops it about a minute after it went
silent, and the run that takes over its work is no longer blocked (ignored on Unix sockets)."""


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

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "eraflow",
        password: str | None = None,
        lock_timeout: float = 30.0,
        statement_timeout: float = 600.0,
        **connect_kwargs: Any,
    ) -> None:
        self.lock_timeout, self.statement_timeout = lock_timeout, statement_timeout
        self._conninfo, inline = split_password(dsn)
        self._password = password if password is not None else inline
        self._connect_kwargs = connect_kwargs
        self.schema = check_identifier(schema, "schema name")
        self._conn: psycopg.Connection | None = None
        self._migrated = False
        self.connection()

    # lifecycle ------------------------------------------------------------------------------
    def connection(self) -> psycopg.Connection:
        """The live autocommit connection (reopened when closed), schema migrated."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
            if not self._migrated:
                try:
                    migrate(self._conn, self.schema)
                except psycopg.OperationalError as exc:
                    raise PostgresConnectionError(
                        f"lost {redact(self._conninfo)} while upgrading schema "
                        f"{self.schema!r}: {pg_message(exc)}"
                    ) from None
                except psycopg.Error as exc:
                    raise StoreError(
                        f"cannot create or upgrade schema {self.schema!r} in "
                        f"{redact(self._conninfo)}: {exc}"
                    ) from None
                self._migrated = True
        return self._conn

    def _connect(self) -> psycopg.Connection:
        """A session with this store's lock and statement timeouts (a wait never hangs)."""
        conn = connect(self._conninfo, self._password, **self._connect_kwargs)
        conn.execute(
            sql.SQL("SET lock_timeout = {}").format(
                sql.Literal(f"{int(self.lock_timeout * 1000)}ms")
            )
        )
        conn.execute(
            sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(f"{int(self.statement_timeout * 1000)}ms")
            )
        )
        for setting, value in DEAD_CLIENT_PROBES.items():
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value)))
        return conn

    def _interrupted(self, doing: str, exc: psycopg.OperationalError) -> PostgresConnectionError:
        """The retryable error for a lost connection or a timeout, with what was waited for."""
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            message = (
                f"{doing}: a lock was not granted within lock_timeout "
                f"({self.lock_timeout:g} s): another session holds it"
            )
            logger.warning("%s; the task retries it", message)
        elif isinstance(exc, psycopg.errors.QueryCanceled):
            message = f"{doing}: cancelled after statement_timeout ({self.statement_timeout:g} s)"
            logger.warning("%s; the task retries it", message)
        else:
            message = f"{doing} was interrupted: {pg_message(exc)}"
        return PostgresConnectionError(f"{message} (rolled back; {self.describe()})")

    def close(self) -> None:
        """Close the connection (the store reconnects on next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
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

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def table_columns(self, name: str) -> list[tuple[str, str]]:
        """(column, type) of a table in column order; empty when the table does not exist."""
        conn = self.connection()
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum",
            [self._table(name).as_string(conn)],
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    # key ranges -----------------------------------------------------------------------------
    def _where(self, spec: Table, key: Key | None) -> tuple[sql.Composable, list[object]]:
        if key is None:
            return sql.SQL("TRUE"), []
        check_key(spec, key)
        clauses: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(spec.owner))]
        params: list[object] = [key.owner]
        for column, condition in key.where.items():
            ident = sql.Identifier(column)
            if isinstance(condition, Range):
                if condition.low is not None:
                    clauses.append(sql.SQL("{} >= %s").format(ident))
                    params.append(plain(condition.low))
                if condition.high is not None:
                    clauses.append(sql.SQL("{} < %s").format(ident))
                    params.append(plain(condition.high))
            elif isinstance(condition, list | tuple | set | frozenset):
                clauses.append(sql.SQL("{} = ANY(%s)").format(ident))
                params.append([plain(v) for v in condition])
            else:
                clauses.append(sql.SQL("{} = %s").format(ident))
                params.append(plain(condition))
        return sql.SQL(" AND ").join(clauses), params

    # reads ----------------------------------------------------------------------------------
    def read_batches(
        self, name: str, key: Key | None, *, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``key`` as arrow batches in the declared types (streamed, unsorted)."""
        spec = table(name)
        columns = list(columns)
        kinds = [spec.kind(c) for c in columns]
        where, params = self._where(spec, key)
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(
                select_expression(c, k) for c, k in zip(columns, kinds, strict=True)
            ),
            self._table(spec.name),
            where,
        )
        try:
            for batch in copy_out(self.connection(), query, params, kinds):
                yield _declared(spec, columns, batch)
        except psycopg.OperationalError as exc:
            raise self._interrupted(f"reading {name}", exc) from None

    def read(
        self, name: str, key: Key | None = None, *, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The rows of ``key`` (None: every owner), in primary-key order."""
        spec = table(name)
        wanted = list(columns) if columns is not None else spec.names
        fetch = wanted + [c for c in spec.key if c not in wanted]
        batches = list(self.read_batches(name, key, columns=fetch))
        if not batches:
            return empty_frame(spec, wanted)
        data = sort_by_key(spec, pa.Table.from_batches(batches))
        return to_frame(spec, data, wanted)

    def owners(self, name: str) -> list[str]:
        """Owners with rows in the table: a loose index scan over the key's first column."""
        spec = table(name)
        owner = sql.Identifier(spec.owner)
        query = sql.SQL(
            "WITH RECURSIVE t AS (SELECT min({o}) AS o FROM {t} UNION ALL "
            "SELECT (SELECT min({o}) FROM {t} WHERE {o} > t.o) FROM t WHERE t.o IS NOT NULL) "
            "SELECT o FROM t WHERE o IS NOT NULL"
        ).format(o=owner, t=self._table(spec.name))
        return [str(r[0]) for r in self.connection().execute(query).fetchall()]

    # writes ---------------------------------------------------------------------------------
    def replace(self, name: str, frame: pd.DataFrame, key: Key) -> int:
        """Delete the rows of ``key`` and insert ``frame``, in one transaction."""
        return self.replace_many([(name, frame, key)])[0]

    def delete(self, name: str, key: Key) -> int:
        """Delete the rows of ``key`` in one transaction; returns how many."""
        return self.replace_many([(name, None, key)])[0]

    def replace_many(self, writes: Sequence[Write]) -> list[int]:
        """Replace (None: delete) each table's key range, all in one transaction.

        Returns the rows written per table (deleted, for a delete).
        """
        checked = check_writes(writes)
        wheres = [self._where(spec, key) for spec, key, _ in checked]
        names = ", ".join(spec.name for spec, _, _ in checked)
        conn = self.connection()
        counts: list[int] = []
        try:
            with conn.transaction(), conn.cursor() as cur:
                # the sections first (a fixed order: no deadlock), then the staging tables:
                # one round trip
                sections = sorted({(spec.name, key.owner) for spec, key, _ in checked})
                opening: list[sql.Composable] = [
                    sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}), hashtext({}))").format(
                        sql.Literal(f"eraflow:{self.schema}:{name}"), sql.Literal(owner)
                    )
                    for name, owner in sections
                ]
                opening += [
                    sql.SQL(
                        "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
                    ).format(self._stage(spec), self._table(spec.name))
                    for spec, _, rows in checked
                    if rows is not None
                ]
                cur.execute(sql.SQL("; ").join(opening))
                for i, ((spec, _, rows), (where, params)) in enumerate(
                    zip(checked, wheres, strict=True)
                ):
                    counts.append(self._replace_in(cur, spec, rows, where, params))
                    if i == 0:
                        crash_point("replace_many:after-first")
        except psycopg.OperationalError as exc:
            raise self._interrupted(f"writing {names}", exc) from None
        except psycopg.Error as exc:
            keys = "; ".join(f"{spec.name} {key}" for spec, key, _ in checked)
            raise StoreError(
                f"writing {keys} failed and was rolled back (nothing changed): {pg_message(exc)}"
            ) from None
        for (spec, key, rows), count in zip(checked, counts, strict=True):
            logger.debug(
                "%s %s %s: %d rows",
                "replaced" if rows is not None else "deleted from",
                spec.name,
                key,
                count,
            )
        return counts

    def _stage(self, spec: Table) -> sql.Identifier:
        return sql.Identifier(f"eraflow_stage_{spec.name}")

    def _replace_in(
        self,
        cur: psycopg.Cursor,
        spec: Table,
        rows: pd.DataFrame | None,
        where: sql.Composable,
        params: list[object],
    ) -> int:
        """Inside the open transaction: delete the range, insert the rows (staged by COPY)."""
        target = self._table(spec.name)
        if rows is not None:
            copy_in(cur, self._stage(spec), spec.names, rows, [spec.kind(c) for c in spec.names])
        cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(target, where), params)
        if rows is None:
            return int(cur.rowcount)
        names = sql.SQL(", ").join(sql.Identifier(c) for c in spec.names)
        # rows in key order: B-tree inserts then touch each index page once
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY {}").format(
                target,
                names,
                names,
                self._stage(spec),
                sql.SQL(", ").join(sql.Identifier(c) for c in spec.key),
            )
        )
        return len(rows)

    def read_many(self, reads: Sequence[tuple[str, Key]]) -> list[pd.DataFrame]:
        """The rows of each (table, key), all from one snapshot (a REPEATABLE READ transaction)."""
        conn = self.connection()
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return [self.read(name, key) for name, key in reads]

    @contextmanager
    def lock(self, owner: str) -> Iterator[None]:
        """A session advisory lock per (schema, owner), on a connection of its own.

        Re-entrant per thread; waited for at most ``lock_timeout`` seconds, then a (retried)
        ``LockTimeoutError`` names the backend that holds it.
        """
        name = f"eraflow:{self.schema}:{owner}"
        section = (self._conninfo, self.schema, owner)
        if _held.sections.get(section):
            _held.sections[section] += 1
            try:
                yield
            finally:
                _held.sections[section] -= 1
            return
        conn = self._connect()
        try:
            try:
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [name])
            except psycopg.errors.LockNotAvailable:
                holder = self._advisory_holder(conn, name)
                raise LockTimeoutError(
                    f"store lock of {owner!r} (advisory lock {name!r} in "
                    f"{redact(self._conninfo)}) not granted: held by {holder}; stop that "
                    f"process or wait; lock_timeout {self.lock_timeout:g} s",
                    lock=name,
                    holder=holder,
                ) from None
            except psycopg.OperationalError as exc:
                raise self._interrupted(f"taking the lock of {owner!r}", exc) from None
            _held.sections[section] = 1
            try:
                yield
            finally:
                del _held.sections[section]
        finally:
            conn.close()  # closing the session releases the lock

    def _advisory_holder(self, conn: psycopg.Connection, name: str) -> str:
        """The backend holding advisory lock ``name``, in words (best effort)."""
        try:
            row = conn.execute(_HOLDER, [name]).fetchone()
        except psycopg.Error:
            row = None
        if row is None:
            return "another session"
        pid, application, client, since, state = row
        return (
            f"backend pid {pid} (application {application or '?'}, client "
            f"{client or 'local socket'}, {state}) since "
            f"{pd.Timestamp(since).tz_convert('UTC'):%Y-%m-%d %H:%M:%S} UTC"
        )
