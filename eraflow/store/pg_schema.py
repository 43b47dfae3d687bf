"""Versioned DDL for the PostgreSQL result store: numbered, idempotent migrations.

eraflow creates and upgrades its own tables; no external migration tool is needed. Every
migration is a list of statements, each idempotent on its own (``CREATE ... IF NOT EXISTS``),
applied in order, in **one transaction**, under a transaction-level advisory lock, when a store
is opened. The applied versions are recorded in ``<schema>.eraflow_schema_version``. Why all
this: many workers open the store at once (era sub-flows on Dask workers); the lock makes them
queue instead of racing on ``CREATE TABLE``, and a failed upgrade leaves the old schema intact.

Tables (all in the configured schema, default ``eraflow``) hold the columns declared in
:mod:`eraflow.store.tables` (a test holds the two together): ``grid`` (long; a TimescaleDB
hypertable on ``time`` when the ``timescaledb`` extension is installed), ``coverage``, ``eras``,
``features``, ``feature_ledger``, ``selection`` and ``feature_matrix`` (values as
``double precision[]``). Migrations 1-2 built v0.1's per-run tables; migration 3 makes them
scoped (see its description).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from eraflow.common.pg import check_identifier

logger = logging.getLogger(__name__)

VERSION_TABLE = "eraflow_schema_version"


@dataclass(frozen=True)
class Migration:
    """One schema version: statements templated on ``{schema}`` (an Identifier, never text).

    ``timescale`` statements run instead of nothing only when TimescaleDB is installed.
    """

    version: int
    description: str
    statements: tuple[str, ...]
    timescale: tuple[str, ...] = field(default=())


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "grid (long), eras, features",
        (
            """CREATE TABLE IF NOT EXISTS {schema}.grid (
                entity text NOT NULL,
                sensor text NOT NULL,
                time timestamptz NOT NULL,
                value double precision,
                filled boolean NOT NULL DEFAULT false,
                PRIMARY KEY (entity, sensor, time))""",
            """CREATE TABLE IF NOT EXISTS {schema}.eras (
                entity text NOT NULL,
                level text NOT NULL,
                era_id bigint NOT NULL,
                start timestamptz,
                "end" timestamptz,
                rows bigint,
                method text,
                signals jsonb,
                score double precision,
                PRIMARY KEY (entity, level, era_id))""",
            """CREATE TABLE IF NOT EXISTS {schema}.features (
                entity text NOT NULL,
                level text NOT NULL,
                era_id bigint NOT NULL,
                sensor text NOT NULL,
                feature text NOT NULL,
                value double precision,
                engine text,
                run_id text,
                config_hash text,
                PRIMARY KEY (entity, level, era_id, sensor, feature))""",
        ),
        timescale=(
            "SELECT create_hypertable({grid_regclass}, 'time', "
            "chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE, "
            "migrate_data => TRUE)",
        ),
    ),
    Migration(
        2,
        "grid sensor registry and long column names",
        (
            """CREATE TABLE IF NOT EXISTS {schema}.grid_sensors (
                sensor text PRIMARY KEY)""",
            """INSERT INTO {schema}.grid_sensors (sensor)
                SELECT DISTINCT sensor FROM {schema}.grid ON CONFLICT DO NOTHING""",
            """CREATE TABLE IF NOT EXISTS {schema}.eraflow_columns (
                table_name text NOT NULL,
                column_name text NOT NULL,
                frame_column text NOT NULL,
                PRIMARY KEY (table_name, column_name),
                UNIQUE (table_name, frame_column))""",
        ),
    ),
    Migration(
        3,
        "scoped runs: era fingerprints, feature ledger, daily coverage, scoped selection, "
        "feature matrix as arrays (v2's per-run coverage, selection and matrix are derived "
        "data and are dropped: a run fills the new ones)",
        (
            """ALTER TABLE {schema}.eras ALTER COLUMN signals TYPE text
                USING (signals #>> '{{}}')""",
            """ALTER TABLE {schema}.eras
                ADD COLUMN IF NOT EXISTS fingerprint text,
                ADD COLUMN IF NOT EXISTS coverage double precision,
                ADD COLUMN IF NOT EXISTS kind text,
                ADD COLUMN IF NOT EXISTS regime bigint""",
            "CREATE INDEX IF NOT EXISTS grid_entity_time ON {schema}.grid (entity, time)",
            "DROP TABLE IF EXISTS {schema}.grid_sensors",
            "DROP TABLE IF EXISTS {schema}.eraflow_columns",
            "DROP TABLE IF EXISTS {schema}.coverage",
            """CREATE TABLE {schema}.coverage (
                entity text NOT NULL,
                sensor text NOT NULL,
                day timestamptz NOT NULL,
                rows bigint,
                measured bigint,
                filled bigint,
                missing bigint,
                longest_gap_rows bigint,
                PRIMARY KEY (entity, sensor, day))""",
            """CREATE TABLE IF NOT EXISTS {schema}.feature_ledger (
                entity text NOT NULL,
                level text NOT NULL,
                era_id bigint NOT NULL,
                stage text NOT NULL,
                fingerprint text,
                config_hash text,
                "values" bigint,
                run_id text,
                written_at timestamptz,
                PRIMARY KEY (entity, level, era_id, stage))""",
            "DROP TABLE IF EXISTS {schema}.selection",
            """CREATE TABLE {schema}.selection (
                scope text NOT NULL,
                level text NOT NULL,
                feature text NOT NULL,
                kept boolean,
                reason text,
                position bigint,
                run_id text,
                PRIMARY KEY (scope, level, feature))""",
            "DROP TABLE IF EXISTS {schema}.feature_matrix",
            """CREATE TABLE {schema}.feature_matrix (
                scope text NOT NULL,
                entity text NOT NULL,
                level text NOT NULL,
                era_id bigint NOT NULL,
                start timestamptz,
                "end" timestamptz,
                "values" double precision[],
                PRIMARY KEY (scope, entity, level, era_id))""",
        ),
    ),
    Migration(
        4,
        "era penalties: the penalty each level of an entity was segmented with, and its rule",
        (
            """CREATE TABLE IF NOT EXISTS {schema}.era_penalties (
                entity text NOT NULL,
                level text NOT NULL,
                rule text,
                factor double precision,
                penalty_scale double precision,
                pen double precision,
                eras bigint,
                elbow_factor double precision,
                PRIMARY KEY (entity, level))""",
        ),
    ),
    Migration(
        5,
        "selection evidence: the number of eras each decision rests on",
        ("ALTER TABLE {schema}.selection ADD COLUMN IF NOT EXISTS eras bigint",),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def has_timescale(conn: psycopg.Connection) -> bool:
    """True when the ``timescaledb`` extension is installed in this database (never required)."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def applied_versions(conn: psycopg.Connection, schema: str) -> list[int]:
    """Versions recorded in the schema's version table (empty when it does not exist)."""
    exists = conn.execute(
        "SELECT to_regclass(%s)", [sql.Identifier(schema, VERSION_TABLE).as_string(conn)]
    ).fetchone()
    if exists is None or exists[0] is None:
        return []
    rows = conn.execute(
        sql.SQL("SELECT version FROM {} ORDER BY version").format(
            sql.Identifier(schema, VERSION_TABLE)
        )
    ).fetchall()
    return [int(r[0]) for r in rows]


def _render(template: str, conn: psycopg.Connection, schema: str) -> sql.Composed:
    # {grid_regclass} is the quoted table name as a string literal, for functions that take
    # a regclass as text (create_hypertable); Literal doubles any quote inside it.
    regclass = sql.Literal(sql.Identifier(schema, "grid").as_string(conn))
    return sql.SQL(template).format(  # type: ignore[arg-type,unused-ignore]
        schema=sql.Identifier(schema), grid_regclass=regclass
    )


def migrate(conn: psycopg.Connection, schema: str = "eraflow") -> list[int]:
    """Bring ``schema`` to the latest version in one transaction; returns the versions applied.

    Safe to call on every store open and from many processes at once (advisory lock).
    Raises whatever PostgreSQL raises; the transaction is then rolled back whole.
    """
    check_identifier(schema, "schema name")
    done: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"eraflow:{schema}"])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, description text "
                "NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema, VERSION_TABLE))
        )
        have = set(applied_versions(conn, schema))
        timescale = has_timescale(conn)
        for migration in MIGRATIONS:
            if migration.version in have:
                continue
            for statement in migration.statements:
                conn.execute(_render(statement, conn, schema))
            if timescale:
                for statement in migration.timescale:
                    conn.execute(_render(statement, conn, schema))
            conn.execute(
                sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)").format(
                    sql.Identifier(schema, VERSION_TABLE)
                ),
                [migration.version, migration.description],
            )
            done.append(migration.version)
    if done:
        logger.info("migrated schema=%s versions=%s timescale=%s", schema, done, timescale)
    return done
