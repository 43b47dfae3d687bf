"""Benchmark: features over measured values at native rates vs over every grid row (A/B).

The same era batches as the pipeline (``batches_from_eras``), the same grid slices, the
feature stage (``compute_profiled_features``, CPU) called twice per batch, interleaved:
``feature_values="grid"`` (every grid row, the engine before native rates) and
``feature_values="measured"`` (each sensor on its native grid, filled values out). The ratio
measured/grid is what native rates cost; the target is <= 1.0 on the Knud Jepsen year.

Input: a Parquet store of a run (grid and eras); without ``--store`` the Knud Jepsen year is
first run into a temporary store, features off (see bench_greenhouse.year_store).

Run: ``python benchmarks/bench_native_rates.py [--store DIR] [--levels A B C]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import resource
import time
from pathlib import Path

import pandas as pd
from bench_greenhouse import year_store

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import grid_step
from eraflow.stages.batches import batches_from_eras
from eraflow.stages.sensor_profiles import compute_profiled_features, engine_sensor_profiles
from eraflow.store.grid import read_entity_grid
from eraflow.store.parquet import ParquetStore

HERE = Path(__file__).resolve().parent
CHOICES = ("grid", "measured")


def measure(store_dir: Path, levels: list[str], profile: str, freq: str) -> list[dict[str, object]]:
    """Seconds of each choice per (entity, level), interleaved per batch."""
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
                seconds = dict.fromkeys(CHOICES, 0.0)
                counts = dict.fromkeys(CHOICES, 0)
                for i, batch in enumerate(batches_from_eras(part, max_rows=20_000)):
                    chosen = part[
                        (part["era_id"] >= batch.first_era_id)
                        & (part["era_id"] <= batch.last_era_id)
                    ]
                    window = slice(batch.start, batch.end - pd.Timedelta("1ns"))
                    v, m = values.loc[window], fill_mask.loc[window]
                    order = CHOICES if i % 2 == 0 else CHOICES[::-1]  # no order advantage
                    for choice in order:
                        t0 = time.perf_counter()
                        out = compute_profiled_features(
                            v,
                            m,
                            chosen,
                            entity=str(entity),
                            profiles=profiles,
                            device="cpu",
                            feature_values=choice,
                        )
                        seconds[choice] += time.perf_counter() - t0
                        counts[choice] += len(out)
                rows.append(
                    {
                        "entity": str(entity),
                        "level": str(level),
                        "eras": len(part),
                        **{f"{c}_s": seconds[c] for c in CHOICES},
                        **{f"{c}_values": counts[c] for c in CHOICES},
                    }
                )
                print(
                    f"{entity} {level}: grid {seconds['grid']:.1f} s, "
                    f"measured {seconds['measured']:.1f} s",
                    flush=True,
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="Parquet store of a pipeline run")
    ap.add_argument("--levels", nargs="+", default=["A", "B", "C"])
    ap.add_argument("--profile", default="efficient")
    ap.add_argument("--freq", default="5min")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "native_rates.json")
    args = ap.parse_args()
    if args.store is None:
        args.store = year_store()
    rows = measure(args.store, args.levels, args.profile, args.freq)
    table = pd.DataFrame(rows)
    grid_s, measured_s = float(table["grid_s"].sum()), float(table["measured_s"].sum())
    print(f"\n{'entity':<8}{'level':>6}{'eras':>6}{'grid s':>9}{'measured s':>12}{'ratio':>8}")
    for r in table.itertuples():
        print(
            f"{r.entity:<8}{r.level:>6}{r.eras:>6}{r.grid_s:>9.1f}{r.measured_s:>12.1f}"
            f"{r.measured_s / r.grid_s:>8.3f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"total: grid {grid_s:.1f} s, measured {measured_s:.1f} s, ratio "
        f"{measured_s / grid_s:.3f} (target <= 1.0); peak RSS {peak:.2f} GiB"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "store": str(args.store),
                "rows": rows,
                "total": {"grid_s": grid_s, "measured_s": measured_s, "peak_rss_gib": peak},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
