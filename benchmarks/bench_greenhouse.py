"""Benchmark: the greenhouse family's time against the feature stage's, per era batch.

Input: a Parquet store that a pipeline run wrote (its grid and its eras); without ``--store``
the Knud Jepsen year (``../shared``) is first run into a temporary store, features off. The
eras of the chosen levels are cut into batches exactly as the pipeline cuts them
(``batches_from_eras``, at most ``--max-batch-rows`` grid rows), and each batch's grid slice
is given to both, as the era-features task does:

- the feature stage: ``compute_profiled_features`` with the run's profile (``--profile``,
  default ``efficient``) raised by the catalogue, on the CPU;
- the greenhouse family: ``greenhouse_features`` with the catalogue's constants.

Reading the store is left out of both. Prints one table per level and the total, and writes
them as JSON; the target is greenhouse <= 10 % of the feature stage.

Run: ``python benchmarks/bench_greenhouse.py [--store DIR] [--levels A B C] [--json FILE]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import grid_step
from eraflow.stages.batches import batches_from_eras
from eraflow.stages.greenhouse import greenhouse_features
from eraflow.stages.sensor_profiles import compute_profiled_features, engine_sensor_profiles
from eraflow.store.grid import read_entity_grid
from eraflow.store.parquet import ParquetStore

HERE = Path(__file__).resolve().parent


def year_store() -> Path:
    """The Knud Jepsen year's grid and eras, run into a temporary store (features off)."""
    import tempfile

    from bench_scoped_runs import kj

    from flows.pipeline import feature_pipeline

    store = Path(tempfile.mkdtemp(prefix="eraflow-bench-greenhouse-"))
    print(f"running the Knud Jepsen year into {store} (grid and eras only) ...", flush=True)
    feature_pipeline(**kj(store), features=False, select=False, report=False)
    return store


def measure(
    store_dir: Path, levels: list[str], profile: str, freq: str, max_rows: int
) -> list[dict[str, object]]:
    """Seconds of both per (entity, level), over the pipeline's batches."""
    catalogue = load_catalogue()
    step = grid_step(freq)
    rows: list[dict[str, object]] = []
    with ParquetStore(store_dir) as store:
        eras = store.read("eras")
        for entity, eras_e in eras.groupby("entity", observed=True):
            values, fill_mask = read_entity_grid(store, str(entity), step=step)
            sensors = [s for s in values.columns if values[s].notna().any()]
            profiles = engine_sensor_profiles(profile, sensors, catalogue)
            data = eras_e[(eras_e["kind"] == "data") & eras_e["level"].isin(levels)]
            for level, part in data.groupby("level", observed=True):
                engine_s = greenhouse_s = 0.0
                engine_values = greenhouse_values = 0
                batches = batches_from_eras(part, max_rows=max_rows)
                for batch in batches:
                    chosen = part[
                        (part["era_id"] >= batch.first_era_id)
                        & (part["era_id"] <= batch.last_era_id)
                    ]
                    window = slice(batch.start, batch.end - pd.Timedelta("1ns"))
                    v, m = values.loc[window], fill_mask.loc[window]
                    t0 = time.perf_counter()
                    out = compute_profiled_features(
                        v, m, chosen, entity=str(entity), profiles=profiles, device="cpu"
                    )
                    t1 = time.perf_counter()
                    gh = greenhouse_features(
                        v,
                        m,
                        chosen,
                        entity=str(entity),
                        constants=catalogue.greenhouse,
                        step=step,
                    )
                    t2 = time.perf_counter()
                    engine_s += t1 - t0
                    greenhouse_s += t2 - t1
                    engine_values += len(out)
                    greenhouse_values += len(gh)
                rows.append(
                    {
                        "entity": str(entity),
                        "level": str(level),
                        "eras": len(part),
                        "batches": len(batches),
                        "feature_stage_s": engine_s,
                        "greenhouse_s": greenhouse_s,
                        "feature_stage_values": engine_values,
                        "greenhouse_values": greenhouse_values,
                    }
                )
                print(
                    f"{entity} {level}: {len(part)} eras, {len(batches)} batches: feature stage "
                    f"{engine_s:.1f} s, greenhouse {greenhouse_s:.2f} s",
                    flush=True,
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="Parquet store of a pipeline run")
    ap.add_argument("--levels", nargs="+", default=["A", "B", "C"])
    ap.add_argument("--profile", default="efficient")
    ap.add_argument("--freq", default="5min")
    ap.add_argument("--max-batch-rows", type=int, default=20_000)
    ap.add_argument("--json", type=Path, default=HERE / "results" / "greenhouse.json")
    args = ap.parse_args()
    if args.store is None:
        args.store = year_store()
    rows = measure(args.store, args.levels, args.profile, args.freq, args.max_batch_rows)
    table = pd.DataFrame(rows)
    total = {
        "feature_stage_s": float(table["feature_stage_s"].sum()),
        "greenhouse_s": float(table["greenhouse_s"].sum()),
        "feature_stage_values": int(table["feature_stage_values"].sum()),
        "greenhouse_values": int(table["greenhouse_values"].sum()),
    }
    total["greenhouse_share"] = total["greenhouse_s"] / total["feature_stage_s"]
    table["share"] = table["greenhouse_s"] / table["feature_stage_s"]
    print()
    header = f"{'entity':<8}{'level':>6}{'eras':>6}{'batches':>8}{'feature s':>11}"
    print(header + f"{'greenhouse s':>14}{'share':>8}{'gh values':>11}")
    for r in table.itertuples():
        print(
            f"{r.entity:<8}{r.level:>6}{r.eras:>6}{r.batches:>8}{r.feature_stage_s:>11.2f}"
            f"{r.greenhouse_s:>14.3f}{r.share:>8.1%}{r.greenhouse_values:>11,}"
        )
    print(
        f"total: feature stage {total['feature_stage_s']:.1f} s "
        f"({total['feature_stage_values']:,} values), greenhouse {total['greenhouse_s']:.2f} s "
        f"({total['greenhouse_values']:,} values): {total['greenhouse_share']:.1%} "
        f"(target <= 10 %)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "store": str(args.store),
                "profile": args.profile,
                "levels": args.levels,
                "rows": rows,
                "total": total,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
