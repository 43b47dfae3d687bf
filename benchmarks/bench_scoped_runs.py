"""Runs scoped to what they touch: wall time and peak RSS per stage, chunking, scale, a busy store.

Cases (each pipeline run is a fresh child process, so its peak RSS is its own):

- ``year``: the full Knud Jepsen year, both compartments, all stages, files → Parquet; wall
  time and peak RSS per stage (from the task runs' start/end and a 20 ms RSS sampler);
- ``chunks``: the same year as weekly chunks (the backfill flow, in process) against ``year``:
  the tables must be identical, and the ratio of wall times is printed;
- ``scale``: the simulator with 22 sensors per entity at 1x, 2x, 4x, 8x (days x entities):
  wall and peak RSS;
- ``busy``: a one-week run in an empty store against the same run in a store holding three
  simulated years of two other entities (each year one run: the simulator's one-minute raw
  data of three years at once would not fit in memory);
- ``postgres``: the ``year`` run from a PostgreSQL table into the PostgreSQL store.

Usage: ``python benchmarks/bench_scoped_runs.py [case ...] [--json FILE]`` (default: all);
prints one table and writes JSON (default ``benchmarks/results/scoped_runs.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "greenhouse"
YEAR = {"start": "2015-09-07", "end": "2016-09-07"}
CASES = ["year", "chunks", "scale", "busy", "postgres"]
GiB = 1024**3


# --------------------------------------------------------------------------- child process
class RssSampler:
    """Resident set size of this process every ``interval`` seconds (from /proc)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open("/proc/self/statm", encoding="ascii") as statm:
            while not self._stop.is_set():
                statm.seek(0)
                self.samples.append((time.time(), int(statm.read().split()[1]) * self._page))
                time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside, default=0)


def _stages(since: float, sampler: RssSampler) -> dict[str, dict[str, float]]:
    """Per stage (task name before ``[``): span from first start to last end, and peak RSS."""
    from prefect.client.orchestration import get_client

    spans: dict[str, list[float]] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            runs = client.read_task_runs(limit=200, offset=offset)
            if not runs:
                break
            offset += len(runs)
            for r in runs:
                if r.start_time is None or r.end_time is None:
                    continue
                begin, end = r.start_time.timestamp(), r.end_time.timestamp()
                if begin < since:
                    continue
                stage = re.sub(r"-[0-9a-f]{1,3}$", "", r.name.split("[")[0])
                span = spans.setdefault(stage, [begin, end])
                span[0], span[1] = min(span[0], begin), max(span[1], end)
    return {
        stage: {
            "wall_s": round(end - begin, 2),
            "peak_gib": round(sampler.peak(begin, end) / GiB, 3),
        }
        for stage, (begin, end) in sorted(spans.items(), key=lambda item: item[1][0])
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration here; report wall, peak RSS and per-stage figures."""
    from eraflow.common.memory import limit_heaps
    from eraflow.common.threads import one_blas_thread
    from flows.backfill import backfill
    from flows.pipeline import feature_pipeline

    limit_heaps()  # what the eraflow command does first
    one_blas_thread()

    began = time.time()
    with RssSampler() as sampler:
        if spec["kind"] == "backfill":
            state = backfill(**spec["params"], return_state=True)
        else:
            state = feature_pipeline(**spec["params"], return_state=True)
        ended = time.time()
    if not state.is_completed():
        raise SystemExit(f"run failed: {state.message}")
    return {
        "wall_s": round(ended - began, 2),
        "peak_gib": round(sampler.peak() / GiB, 3),
        "stages": _stages(began, sampler),
    }


def spawn(spec: dict[str, Any], home: Path) -> dict[str, Any]:
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed: {spec}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the cases
def kj(store: Path, **more: Any) -> dict[str, Any]:
    return {
        "source": "knudjepsen",
        "data_root": str(DATA / "knudjepsen"),
        "store": str(store),
        **YEAR,
        **more,
    }


def same_tables(a: Path, b: Path) -> dict[str, bool]:
    import numpy as np
    import pandas as pd

    keys = {
        "grid": ["entity", "sensor", "time"],
        "eras": ["entity", "level", "era_id"],
        "features": ["entity", "level", "era_id", "sensor", "feature"],
        "selection": ["scope", "level", "feature"],
        "coverage": ["entity", "sensor", "day"],
    }
    out = {}
    for name, key in keys.items():
        left = pd.read_parquet(a / name).drop(columns=["run_id"], errors="ignore")
        right = pd.read_parquet(b / name).drop(columns=["run_id"], errors="ignore")
        left, right = (f.sort_values(key).reset_index(drop=True) for f in (left, right))
        try:
            pd.testing.assert_frame_equal(left, right, check_dtype=False)
            out[name] = True
        except AssertionError:
            out[name] = False
    m1 = pd.read_parquet(a / "feature_matrix").sort_values(["scope", "entity", "level", "era_id"])
    m2 = pd.read_parquet(b / "feature_matrix").sort_values(["scope", "entity", "level", "era_id"])
    out["feature_matrix"] = len(m1) == len(m2) and all(
        np.array_equal(x, y, equal_nan=True)
        for x, y in zip(m1["values"], m2["values"], strict=True)
    )
    return out


def run_cases(cases: list[str], work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    home = work / "prefect"
    if "year" in cases or "chunks" in cases:
        results["year"] = spawn({"kind": "pipeline", "params": kj(work / "year")}, home)
        print_case("year (files -> Parquet)", results["year"])
    if "chunks" in cases:
        chunked = spawn(
            {
                "kind": "backfill",
                "params": {
                    **YEAR,
                    "chunk": "7D",
                    "deployment": None,
                    "parameters": kj(work / "chunks", start=None, end=None),
                },
            },
            home,
        )
        chunked["same_tables"] = same_tables(work / "year", work / "chunks")
        chunked["ratio_to_one_run"] = round(chunked["wall_s"] / results["year"]["wall_s"], 2)
        results["chunks"] = chunked
        print_case("weekly chunks (backfill)", chunked)
        print(
            f"  same tables as one run: {chunked['same_tables']}; wall ratio "
            f"{chunked['ratio_to_one_run']}x (target <= 1.5x)"
        )
    if "scale" in cases:
        results["scale"] = {}
        for factor, days, entities in ((1, 28, 2), (2, 56, 2), (4, 56, 4), (8, 112, 4)):
            sim = {
                "days": days,
                "seed": 7,
                "full": True,
                "entities": [f"sim_{i}" for i in range(entities)],
            }
            run = spawn(
                {
                    "kind": "pipeline",
                    "params": {"store": str(work / f"scale{factor}"), "simulator": sim},
                },
                home,
            )
            results["scale"][f"{factor}x"] = run | {"days": days, "entities": entities}
            print_case(f"simulator {factor}x ({days} d x {entities} entities, 22 sensors)", run)
    if "busy" in cases:
        week = {
            "simulator": {"days": 7, "seed": 7, "full": True},
            "start": "2024-01-01",
            "end": "2024-01-08",
        }
        busy_store = work / "busy"
        prefill = 0.0
        for year in (2021, 2022, 2023):  # three simulated years of two other compartments
            others = {
                "days": 365,
                "seed": year,
                "entities": ["other_1", "other_2"],
                "start": f"{year}-01-01T00:00:00",
            }
            filled = spawn(
                {
                    "kind": "pipeline",
                    "params": {
                        "store": str(busy_store),
                        "simulator": others,
                        "tsfresh_levels": [],
                        "select": False,
                    },
                },
                home,
            )
            prefill += filled["wall_s"]
        # Each measured week gets a Prefect home of its own, started fresh: only the store
        # differs between the two (the prefill's thousands of runs would otherwise slow the
        # busy week's API calls, a cost of the Prefect database, not of the store).
        empty = spawn(
            {"kind": "pipeline", "params": {"store": str(work / "empty"), **week}},
            work / "prefect-week-empty",
        )
        busy = spawn(
            {"kind": "pipeline", "params": {"store": str(busy_store), **week}},
            work / "prefect-week-busy",
        )
        results["busy"] = {
            "empty": empty,
            "busy": busy,
            "prefill_wall_s": round(prefill, 1),
            "ratio": round(busy["wall_s"] / empty["wall_s"], 2),
        }
        print_case("one week, empty store", empty)
        print_case("one week, store with 3 years of 2 other entities", busy)
        print(f"  ratio busy/empty {results['busy']['ratio']}x (target <= 1.2x)")
    if "postgres" in cases:
        results["postgres"] = postgres_year(work, home)
        print_case("year (PostgreSQL -> PostgreSQL)", results["postgres"])
        if "year" in results:
            ratio = round(results["postgres"]["wall_s"] / results["year"]["wall_s"], 2)
            results["postgres"]["ratio_to_parquet"] = ratio
            print(f"  ratio to files -> Parquet: {ratio}x")
    return results


def postgres_year(work: Path, home: Path) -> dict[str, Any]:
    import pandas as pd
    import psycopg
    from psycopg import sql

    from eraflow.runs.load_source import load_frame
    from eraflow.stages.ingest import load_mapping, read_mapping

    admin_dsn = os.environ.get("ERAFLOW_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"eraflow_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(admin_dsn, autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    try:
        results = read_mapping(
            load_mapping("knudjepsen"),
            DATA / "knudjepsen",
            start=pd.Timestamp(YEAR["start"], tz="UTC"),
            end=pd.Timestamp(YEAR["end"], tz="UTC"),
        )
        with psycopg.connect(dsn) as conn:
            load_frame(
                conn,
                pd.concat([r.frame for r in results], ignore_index=True),
                table="sensor_data",
                layout="wide",
            )
        return spawn(
            {
                "kind": "postgres",
                "dsn": dsn,
                "params": {
                    "source": "postgres",
                    "source_block": "bench-source",
                    "postgres_source": {"table": "sensor_data", "layout": "wide"},
                    "store_block": "eraflow-postgres-store/bench-results",
                    **YEAR,
                },
            },
            home,
        )
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def child_postgres(spec: dict[str, Any]) -> dict[str, Any]:
    """Save the connection and store blocks in this child's Prefect home, then run."""
    import psycopg

    from blocks.postgres import PostgresConnection, PostgresStoreBlock

    info = psycopg.conninfo.conninfo_to_dict(spec["dsn"])
    connection = PostgresConnection(
        host=str(info.get("host", "127.0.0.1")),
        port=int(info.get("port", 5432)),
        database=str(info["dbname"]),
        user=str(info.get("user", "postgres")),
    )
    connection.save("bench-source", overwrite=True)
    PostgresStoreBlock(connection=connection, db_schema="results").save(
        "bench-results", overwrite=True
    )
    return child({"kind": "pipeline", "params": spec["params"]})


def print_case(title: str, run: dict[str, Any]) -> None:
    print(f"\n{title}: wall {run['wall_s']:.1f} s, peak RSS {run['peak_gib']:.2f} GiB")
    print(f"  {'stage':<18}{'wall s':>10}{'peak GiB':>10}")
    for stage, figures in run["stages"].items():
        print(f"  {stage:<18}{figures['wall_s']:>10.1f}{figures['peak_gib']:>10.2f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="*", help=f"any of {CASES} (default: all)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "scoped_runs.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        out = child_postgres(spec) if spec["kind"] == "postgres" else child(spec)
        print(json.dumps(out))
        return 0
    cases = args.cases or CASES
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {CASES}")
    work = Path(tempfile.mkdtemp(prefix="eraflow-bench-scoped-"))
    try:
        results = run_cases(cases, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
