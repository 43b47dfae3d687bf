"""The pipeline on a full real year: PostgreSQL source → PostgreSQL store, against files → Parquet.

Loads the Knud Jepsen year (both compartments) into a fresh database with the loader, then runs
feature-pipeline twice in this process on the same range: from the files into a Parquet folder
(the baseline) and from the table into the PostgreSQL store. Prints wall times and the ratio.
tsfresh and selection are off by default (--full turns them on): they cost the same on both
paths and would only dilute the comparison of the source and sink.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pandas as pd
import psycopg
from psycopg import sql

from blocks.postgres import PostgresConnection, PostgresStoreBlock
from eraflow.ingest import load_mapping, read_mapping
from eraflow.load_source import load_frame
from flows.pipeline import feature_pipeline

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "greenhouse"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--start", default="2015-09-07")
    parser.add_argument("--end", default="2016-09-07")
    parser.add_argument("--full", action="store_true", help="also tsfresh (A) and selection")
    args = parser.parse_args()
    root = DATA / "knudjepsen"
    stages = {} if args.full else {"tsfresh_levels": [], "selection_levels": []}
    name = f"eraflow_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(args.admin_dsn, autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(args.admin_dsn, dbname=name)
    rows: list[tuple[str, float, str]] = []
    try:
        began = time.perf_counter()
        results = read_mapping(load_mapping("knudjepsen"), root,
                               start=pd.Timestamp(args.start, tz="UTC"),
                               end=pd.Timestamp(args.end, tz="UTC"))
        long = pd.concat([r.frame for r in results], ignore_index=True)
        with psycopg.connect(dsn) as conn:
            counts = load_frame(conn, long, table="sensor_data", layout="wide")
        rows.append(("load exports into sensor_data", time.perf_counter() - began,
                     f"{counts}"))

        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            parts = psycopg.conninfo.conninfo_to_dict(dsn)
            connection = PostgresConnection(host=str(parts.get("host", "127.0.0.1")),
                                            port=int(parts.get("port", 5432)), database=name,
                                            user=str(parts.get("user", "postgres")))
            connection.save("bench-source", overwrite=True)
            PostgresStoreBlock(connection=connection, db_schema="results").save(
                "bench-results", overwrite=True)
            with tempfile.TemporaryDirectory() as folder:
                began = time.perf_counter()
                files = feature_pipeline(source="knudjepsen", data_root=str(root),
                                         start=args.start, end=args.end, store=folder,
                                         return_state=True, **stages)
                baseline = time.perf_counter() - began
                assert files.is_completed(), files.message
                rows.append(("files → Parquet (baseline)", baseline,
                             f"{files.result()['feature_rows']} feature values"))
            began = time.perf_counter()
            pg = feature_pipeline(source="postgres", source_block="bench-source",
                                  postgres_source={"table": "sensor_data"},
                                  store_block="eraflow-postgres-store/bench-results",
                                  start=args.start, end=args.end, return_state=True,
                                  **stages)
            elapsed = time.perf_counter() - began
            assert pg.is_completed(), pg.message
            rows.append(("Postgres → Postgres", elapsed,
                         f"{pg.result()['feature_rows']} feature values; "
                         f"{elapsed / baseline:.2f}x the baseline's time"))
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()
    print(f"\nKnud Jepsen {args.start} .. {args.end}, both compartments "
          f"({'all stages' if args.full else 'tsfresh and selection off'})")
    print(f"{'step':<34} {'seconds':>9}  notes")
    for step, seconds, note in rows:
        print(f"{step:<34} {seconds:>9.1f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
