r"""Load mapped source files into a PostgreSQL sensor table: ``python -m eraflow.load_source``.

Example::

    python -m eraflow.load_source --mapping knudjepsen \\
        --data-root ../shared/data/greenhouse/knudjepsen \\
        --dsn postgresql://postgres@127.0.0.1:5432/db --table sensor_data --layout wide

The files are read with ``eraflow.ingest`` (so times are UTC and sensors renamed exactly as the
file pipeline does), then written with COPY into a staging table and upserted by key
((entity, time) for ``wide``, (entity, sensor, time) for ``long``) in one transaction:
re-loading the same files replaces rows instead of duplicating them, and a failure leaves the
table as it was. The table is created when absent; new sensors add columns (wide). The result
is what ``eraflow.ingest.postgres_source.read_postgres`` reads.

Why a loader at all: it turns the real exports into a realistic Postgres source, for tests,
demos and for users whose data arrive as files but who want the database as the source.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import psycopg
from psycopg import sql
from tqdm.auto import tqdm

from eraflow.errors import ConfigError, EraflowError
from eraflow.ingest import load_mapping, read_mapping
from eraflow.ingest.postgres_source import table_identifier
from eraflow.pg import (
    COPY_BLOCK_ROWS,
    Kind,
    PostgresConnectionError,
    check_identifier,
    connect,
    copy_in,
    redact,
    split_password,
)

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eraflow.load_source",
        description="Load mapped sensor files into a PostgreSQL table (idempotent upsert).",
    )
    parser.add_argument(
        "--mapping", required=True, help="preset name (knudjepsen, aarslev) or a TOML mapping file"
    )
    parser.add_argument("--data-root", required=True, help="folder the mapping's globs start in")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("ERAFLOW_PG_DSN"),
        help="postgresql://user@host:port/db (default $ERAFLOW_PG_DSN; put the "
        "password in $PGPASSWORD rather than on the command line)",
    )
    parser.add_argument("--table", default="sensor_data", help="table or schema.table")
    parser.add_argument("--layout", choices=["wide", "long"], default="wide")
    parser.add_argument("--sources", nargs="*", default=None, help="only these mapping sources")
    parser.add_argument("--start", default=None, help="UTC start (inclusive), e.g. 2015-10-01")
    parser.add_argument("--end", default=None, help="UTC end (exclusive)")
    return parser


def _utc(text: str | None) -> pd.Timestamp | None:
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a date/time: {exc}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the loader; returns the exit status (0 ok, 1 a problem the message explains)."""
    args = _parser().parse_args(argv)
    if not args.dsn:
        print("error: give --dsn or set ERAFLOW_PG_DSN", file=sys.stderr)
        return 1
    try:
        conninfo, password = split_password(args.dsn)
        table_identifier(args.table)
        mapping = load_mapping(args.mapping)
        with tqdm(desc="read files", unit="file", disable=None, leave=False) as bar:

            def progress(done: int, total: int, label: str) -> None:
                bar.total = total
                bar.set_postfix_str(label, refresh=False)
                bar.update(done - bar.n)

            results = read_mapping(
                mapping,
                args.data_root,
                start=_utc(args.start),
                end=_utc(args.end),
                sources=args.sources,
                progress=progress,
            )
        long = pd.concat([r.frame for r in results], ignore_index=True)
        files = sum(len(r.report.files) for r in results)
        with (
            connect(conninfo, password) as conn,
            tqdm(desc=f"load {args.table}", unit="row", disable=None, leave=False) as bar,
        ):
            counts = load_frame(
                conn, long, table=args.table, layout=args.layout, advance=bar.update
            )
    except (EraflowError, PostgresConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(
            f"error: loading into {args.table} failed and was rolled back: {str(exc).strip()}",
            file=sys.stderr,
        )
        return 1
    print(
        f"loaded {counts.values} values ({counts.rows} {args.layout} rows, "
        f"{counts.duplicates_dropped} duplicates dropped) from {files} file(s) into "
        f"{args.table} at {redact(conninfo)}; the table now holds {counts.table_rows} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
