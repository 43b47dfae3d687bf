"""Feature sink throughput: PostgresStore (COPY → staging → replace by key) vs executemany INSERT.

Usage::

    python benchmarks/bench_sink.py [--rows 200000] [--dsn postgresql://postgres@127.0.0.1/postgres]

Creates a fresh database, writes the same long feature rows both ways (into empty tables of the
same shape and primary key), then once more through the store to time an idempotent rewrite
(delete + re-insert of the same key range), prints a table, and drops the database.
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from eraflow.store import Key
from eraflow.store.postgres import PostgresStore

COLUMNS = [
    "entity",
    "level",
    "era_id",
    "sensor",
    "feature",
    "value",
    "engine",
    "run_id",
    "config_hash",
]


def feature_rows(n: int) -> pd.DataFrame:
    sensors = [f"sensor_{i}" for i in range(10)]
    names = [f"calc_{i}__param_{i % 7}" for i in range(100)]
    per_era = len(sensors) * len(names)
    eras = -(-n // per_era)
    frame = pd.DataFrame(
        {
            "entity": "gh1",
            "level": "A",
            "era_id": np.repeat(np.arange(eras, dtype=np.int64), per_era),
            "sensor": np.tile(np.repeat(sensors, len(names)), eras),
            "feature": np.tile(names, eras * len(sensors)),
            "value": np.random.default_rng(0).normal(size=eras * per_era),
            "engine": "numpy",
            "run_id": "bench",
            "config_hash": "0123abcd",
        }
    )
    return frame.iloc[:n].reset_index(drop=True)


def bench_store(dsn: str, frame: pd.DataFrame, schema: str) -> tuple[float, float]:
    with PostgresStore(dsn, schema=schema) as store:
        began = time.perf_counter()
        store.replace("features", frame, Key("gh1"))
        first = time.perf_counter() - began
        began = time.perf_counter()
        store.replace("features", frame, Key("gh1", {"level": "A"}))
        again = time.perf_counter() - began
        stored = (
            store.connection()
            .execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "features")))
            .fetchone()
        )
        assert stored == (len(frame),), stored
    return first, again


def bench_executemany(dsn: str, frame: pd.DataFrame, like: str) -> float:
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_plain CASCADE")
        conn.execute("CREATE SCHEMA bench_plain")
        conn.execute(
            sql.SQL("CREATE TABLE bench_plain.features (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(like, "features")
            )
        )
        conn.commit()
        began = time.perf_counter()
        rows = list(frame[COLUMNS].itertuples(index=False, name=None))
        rows = [
            (e, lv, int(era), s, f, float(v), en, r, c) for e, lv, era, s, f, v, en, r, c in rows
        ]
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO bench_plain.features ({}) VALUES ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
                    sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
                ),
                rows,
            )
        conn.commit()
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"eraflow_bench_{uuid.uuid4().hex[:8]}"
    frame = feature_rows(args.rows)
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            dsn = psycopg.conninfo.make_conninfo(args.dsn, dbname=name)
            runs = []
            for r in range(args.repeat):  # best of N: the machine may be shared
                store_s, rewrite_s = bench_store(dsn, frame, f"bench_store_{r}")
                runs.append((store_s, rewrite_s, bench_executemany(dsn, frame, "bench_store_0")))
            store_s, rewrite_s, plain_s = (min(column) for column in zip(*runs, strict=True))
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    n = len(frame)
    print(
        f"feature sink, {n} rows (psycopg {psycopg.__version__}, "
        f"libpq {psycopg.pq.version()}, same process, fresh database, best of {args.repeat})"
    )
    print(f"{'method':<48}{'seconds':>9}{'rows/s':>12}{'vs executemany':>16}")
    for label, seconds in (
        ("PostgresStore.replace (COPY+stage+replace)", store_s),
        ("  same rows again (delete + re-insert)", rewrite_s),
        ("psycopg executemany INSERT", plain_s),
    ):
        print(f"{label:<48}{seconds:>9.2f}{n / seconds:>12,.0f}{plain_s / seconds:>15.1f}x")


if __name__ == "__main__":
    main()
