r"""Load mapped source files into a PostgreSQL sensor table: ``eraflow load``.

Example::

    eraflow load --mapping knudjepsen --data-root ../shared/data/greenhouse/knudjepsen \\
        --dsn postgresql://postgres@127.0.0.1:5432/db --table sensor_data --layout wide

The files are read with ``eraflow.stages.ingest`` (so times are UTC and sensors renamed exactly
as the file pipeline does), then written with COPY into a staging table and upserted by key
((entity, time) for ``wide``, (entity, sensor, time) for ``long``) in one transaction:
re-loading the same files replaces rows instead of duplicating them, and a failure leaves the
table as it was. The table is created when absent; new sensors add columns (wide). The result
is what ``eraflow.stages.ingest.postgres_source.read_postgres`` reads.

Why a loader at all: it turns the real exports into a realistic Postgres source, for tests,
demos and for users whose data arrive as files but who want the database as the source.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from tqdm.auto import tqdm

from eraflow.common.errors import ConfigError, DataError, StoreError
from eraflow.common.pg import (
    COPY_BLOCK_ROWS,
    Kind,
    PostgresConnectionError,
    check_identifier,
    connect,
    copy_in,
    redact,
    split_password,
)
from eraflow.config import UtcTime
from eraflow.stages.ingest import load_mapping, read_mapping
from eraflow.stages.ingest.postgres_source import table_identifier
from eraflow.stages.ingest.readers import source_files

Layout = Literal["wide", "long"]
Advance = Callable[[int], None]


@dataclass(frozen=True)
class LoadCounts:
    """What a load did, for the final line and for tests."""

    values: int
    rows: int
    duplicates_dropped: int
    table_rows: int


def to_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Canonical long rows → (time, entity, one column per sensor), one row per timestamp."""
    frame = long.pivot(index=["time", "entity"], columns="sensor", values="value")
    frame = frame.reindex(columns=sorted(frame.columns)).reset_index()
    frame.columns.name = None
    return frame


def _create(
    cur: psycopg.Cursor, table: sql.Identifier, layout: Layout, sensors: Sequence[str]
) -> list[str]:
    """Create the table when absent, add missing sensor columns; returns its key columns."""
    if layout == "long":
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (time timestamptz NOT NULL, entity text NOT NULL, "
                "sensor text NOT NULL, value double precision, source text, "
                "PRIMARY KEY (entity, sensor, time))"
            ).format(table)
        )
        return ["entity", "sensor", "time"]
    cur.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (time timestamptz NOT NULL, entity text "
            "NOT NULL, PRIMARY KEY (entity, time))"
        ).format(table)
    )
    for sensor in sensors:
        check_identifier(sensor, "sensor name")
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} double precision").format(
                table, sql.Identifier(sensor)
            )
        )
    return ["entity", "time"]


def load_frame(
    conn: psycopg.Connection,
    long: pd.DataFrame,
    *,
    table: str,
    layout: Layout = "wide",
    advance: Advance | None = None,
) -> LoadCounts:
    """Upsert canonical long rows into ``table`` in one transaction (see the module doc).

    Rows sharing (entity, sensor, time) across sources keep the last one (counted).
    """
    ident = table_identifier(table)
    keys = ["entity", "sensor", "time"]
    deduped = long.drop_duplicates(keys, keep="last")
    dropped = len(long) - len(deduped)
    sensors = sorted(deduped["sensor"].astype(str).unique().tolist())
    if layout == "wide":
        frame = to_wide(deduped)
        floats: list[Kind] = ["float"] * len(sensors)
        kinds: list[Kind] = ["timestamptz", "text", *floats]
    else:
        frame = deduped[["time", "entity", "sensor", "value", "source"]].reset_index(drop=True)
        kinds = ["timestamptz", "text", "text", "float", "text"]
    columns = [str(c) for c in frame.columns]
    with conn.transaction(), conn.cursor() as cur:
        key = _create(cur, ident, layout, sensors)
        stage = sql.Identifier("eraflow_load_stage")
        cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, ident))
        for begin in range(0, len(frame), COPY_BLOCK_ROWS):
            part = frame.iloc[begin : begin + COPY_BLOCK_ROWS]
            copy_in(cur, stage, columns, part, kinds)
            if advance is not None:
                advance(len(part))
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        update = [c for c in columns if c not in key]
        cur.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO UPDATE SET {}"
            ).format(
                ident,
                names,
                names,
                stage,
                sql.SQL(", ").join(sql.Identifier(c) for c in key),
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                    for c in update
                ),
            )
        )
        row = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    return LoadCounts(
        values=len(deduped),
        rows=len(frame),
        duplicates_dropped=dropped,
        table_rows=int(row[0]) if row else 0,
    )


class LoadSettings(BaseModel):
    """What to load where: a mapping's files into a PostgreSQL sensor table."""

    model_config = ConfigDict(extra="forbid")

    mapping: str = Field(description="A mapping preset (knudjepsen, aarslev) or a TOML file.")
    data_root: Path = Field(description="Folder the mapping's file globs start in.")
    dsn: SecretStr | None = Field(
        default=None,
        description="postgresql://user@host:port/db (default: $ERAFLOW_PG_DSN; "
        "keep the password in $PGPASSWORD rather than on the command line).",
    )
    table: str = Field(default="sensor_data", description="Target table, or schema.table.")
    layout: Layout = Field(
        default="wide",
        description="'wide': a column per sensor; 'long': (entity, sensor, time, value) rows.",
    )
    sources: list[str] | None = Field(
        default=None, description="Only these sources of the mapping (default: all)."
    )
    start: UtcTime = Field(default=None, description="UTC start (inclusive), e.g. 2015-10-01.")
    end: UtcTime = Field(default=None, description="UTC end (exclusive).")

    @model_validator(mode="after")
    def _checked(self) -> LoadSettings:
        if self.dsn is None:
            env = os.environ.get("ERAFLOW_PG_DSN")
            if not env:
                raise ValueError("give --dsn or set ERAFLOW_PG_DSN")
            self.dsn = SecretStr(env)
        if not self.data_root.is_dir():
            raise ValueError(f"data_root {self.data_root} is not a folder")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"empty range: start {self.start} is not before end {self.end}")
        return self


def load(settings: LoadSettings) -> str:
    """Read the mapping's files and upsert them into the table; returns the summary line.

    Raises EraflowError (or PostgresConnectionError) with a message naming the problem.
    """
    assert settings.dsn is not None
    conninfo, password = split_password(settings.dsn.get_secret_value())
    table_identifier(settings.table)
    mapping = load_mapping(settings.mapping)
    for source in mapping.sources:  # the files exist (cheap), then the database answers,
        if settings.sources is None or source.name in settings.sources:  # then the reading
            source_files(source, settings.data_root)
    try:
        connect(conninfo, password).close()
    except PostgresConnectionError as exc:
        raise ConfigError(f"{exc}; nothing was loaded") from None
    with tqdm(desc="read files", unit="file", disable=None, leave=False) as bar:

        def progress(done: int, total: int, label: str) -> None:
            bar.total = total
            bar.set_postfix_str(label, refresh=False)
            bar.update(done - bar.n)

        results = read_mapping(
            mapping,
            settings.data_root,
            start=settings.start,
            end=settings.end,
            sources=settings.sources,
            progress=progress,
        )
    long = pd.concat([r.frame for r in results], ignore_index=True)
    if long.empty:
        raise DataError(
            f"the mapping's files hold no value in [{settings.start}, "
            f"{settings.end}): nothing to load; check the range and data_root"
        )
    files = sum(len(r.report.files) for r in results)
    try:
        with (
            connect(conninfo, password) as conn,
            tqdm(desc=f"load {settings.table}", unit="row", disable=None, leave=False) as bar,
        ):
            counts = load_frame(
                conn, long, table=settings.table, layout=settings.layout, advance=bar.update
            )
    except psycopg.OperationalError as exc:
        raise PostgresConnectionError(
            f"loading into {settings.table} was interrupted and rolled back: {str(exc).strip()}"
        ) from None
    except psycopg.Error as exc:
        raise StoreError(
            f"loading into {settings.table} failed and was rolled back: {str(exc).strip()}"
        ) from None
    return (
        f"loaded {counts.values} values ({counts.rows} {settings.layout} rows, "
        f"{counts.duplicates_dropped} duplicates dropped) from {files} file(s) into "
        f"{settings.table} at {redact(conninfo)}; the table now holds {counts.table_rows} "
        "rows"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eraflow.runs.load_source``: the same command as ``eraflow load``."""
    from eraflow.common.cli import run_command

    return run_command("eraflow load", LoadSettings, lambda s: print(load(s)), argv)


if __name__ == "__main__":
    sys.exit(main())
