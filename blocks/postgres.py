"""Prefect Blocks for PostgreSQL: a connection (password as a secret) and a result store.

Shaped like prefect-sqlalchemy's ``SqlAlchemyConnector``: described fields, ``SecretStr`` for
everything secret, a lazily opened connection, a context manager, and pickle-safe state (the
live connection is dropped), so a block can travel to Dask workers. Register with
``prefect block register -f blocks/postgres.py``; saving a block also registers its type.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from prefect.blocks.core import Block
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, HttpUrl, PrivateAttr, SecretStr

from eraflow.common.pg import connect, redact, split_password
from eraflow.store.postgres import PostgresStore

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresConnection(Block):
    """Connection settings for a PostgreSQL server, with the password kept secret.

    Give either the parts (host, port, database, user, password) or a whole ``dsn``; a
    password inside the DSN is treated as secret too, and ``password`` wins over it.
    """

    _block_type_name = "eraflow PostgreSQL connection"
    _block_type_slug = "eraflow-postgres-connection"
    _description = "PostgreSQL connection for eraflow sources and stores (psycopg 3)."
    _documentation_url = HttpUrl("https://www.postgresql.org/docs/current/libpq-connect.html")
    _code_example = """```python
from blocks.postgres import PostgresConnection

connection = PostgresConnection.load("BLOCK_NAME")
with connection.connect() as conn:
    conn.execute("SELECT 1")
```"""

    host: str = Field(default="localhost", description="Server host name or address.")
    port: int = Field(default=5432, ge=1, le=65535, description="Server port.")
    database: str = Field(default="postgres", description="Database name.")
    user: str = Field(default="postgres", description="Role to log in as.")
    password: SecretStr | None = Field(
        default=None, description="Password (stored encrypted; None for trust/peer/.pgpass)."
    )
    dsn: SecretStr | None = Field(
        default=None,
        description="Whole libpq DSN or URI; when set, host/port/database/user are ignored.",
    )
    sslmode: SslMode = Field(default="prefer", description="libpq sslmode.")
    connect_timeout: int = Field(default=10, ge=1, description="Seconds to wait for a connection.")
    application_name: str = Field(default="eraflow", description="Name shown in pg_stat_activity.")

    _connection: psycopg.Connection | None = PrivateAttr(default=None)

    def conninfo(self) -> str:
        """The libpq conninfo **without** the password (safe to log or show)."""
        if self.dsn is not None:
            base, _ = split_password(self.dsn.get_secret_value())
            params = conninfo_to_dict(base)
            params.setdefault("sslmode", self.sslmode)
            params.setdefault("connect_timeout", str(self.connect_timeout))
            params.setdefault("application_name", self.application_name)
            return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
        return make_conninfo(
            host=self.host,
            port=str(self.port),
            dbname=self.database,
            user=self.user,
            sslmode=self.sslmode,
            connect_timeout=str(self.connect_timeout),
            application_name=self.application_name,
        )

    def _secret(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.dsn is not None:
            return split_password(self.dsn.get_secret_value())[1]
        return None

    def describe(self) -> str:
        """``postgresql://user@host:port/db``: where this points, without the password."""
        return redact(self.conninfo())

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection in UTC (the caller closes it)."""
        return connect(self.conninfo(), self._secret())

    def get_connection(self) -> psycopg.Connection:
        """The block's shared connection, opened on first use and reopened when closed."""
        if self._connection is None or self._connection.closed or self._connection.broken:
            self._connection = self.connect()
        return self._connection

    def open_store(self, schema: str = "eraflow", **timeouts: float) -> PostgresStore:
        """A result store in ``schema`` on this server (``lock_timeout``/``statement_timeout``)."""
        return PostgresStore(self.conninfo(), schema=schema, password=self._secret(), **timeouts)

    def close(self) -> None:
        """Close the shared connection, if open."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle without the live connection (it is reopened on first use)."""
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_connection"] = None
        state["__pydantic_private__"] = private
        return state


class PostgresStoreBlock(Block):
    """eraflow's result tables (grid, eras, features, ...) in a PostgreSQL schema.

    Save one per environment and pass its name to the flows instead of a Parquet folder.
    """

    _block_type_name = "eraflow PostgreSQL store"
    _block_type_slug = "eraflow-postgres-store"
    _description = "eraflow result store in PostgreSQL (schema created and migrated by eraflow)."
    _documentation_url = HttpUrl("https://www.postgresql.org/docs/current/ddl-schemas.html")
    _code_example = """```python
from blocks.postgres import PostgresStoreBlock

from eraflow.store import Key

block = PostgresStoreBlock.load("BLOCK_NAME")
with block.open() as store:
    eras = store.read("eras", Key("kj_no3"))
```"""

    connection: PostgresConnection = Field(description="Server to store the results on.")
    db_schema: str = Field(
        default="eraflow",
        min_length=1,
        max_length=63,
        description="PostgreSQL schema holding eraflow's tables.",
    )
    lock_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a write waits for a lock held by another "
        "session before it fails (and is retried); the wait is logged.",
    )
    statement_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds one statement may run before PostgreSQL "
        "cancels it (and the task retries).",
    )

    def open(self) -> PostgresStore:
        """The store (connects, and creates/upgrades the schema)."""
        return self.connection.open_store(
            self.db_schema, lock_timeout=self.lock_timeout, statement_timeout=self.statement_timeout
        )
