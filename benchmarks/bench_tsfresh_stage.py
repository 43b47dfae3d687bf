"""Benchmark: the tsfresh stage and feature selection on real exports of one compartment.

Reads ``--days`` of Knud Jepsen NO3 climate data (``../shared/data/greenhouse`` beside the
repository) through ingest -> aggregate -> gap-fill, cuts daily eras, then times
1. the feature engine (NumPy, efficient profile), 2. the tsfresh stage (catalogue profile, engine
features subtracted), 3. the stage without subtraction (what tsfresh alone would cost for the same
catalogue profiles), 4. unsupervised selection on the wide engine+stage matrix.

Run: ``python benchmarks/bench_tsfresh_stage.py [--days 30 --start 2015-10-01]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import entity_frames
from eraflow.stages.aggregate import aggregate
from eraflow.stages.features import compute_features, to_wide
from eraflow.stages.gapfill import gap_fill
from eraflow.stages.ingest import load_mapping, read_mapping
from eraflow.stages.selection import select_features_unsupervised
from eraflow.stages.tsfresh_stage import tsfresh_features

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "greenhouse"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--start", default="2015-10-01")
    args = ap.parse_args()
    start = pd.Timestamp(args.start, tz="UTC")
    end = start + pd.Timedelta(days=args.days)
    cat = load_catalogue()
    results = read_mapping(
        load_mapping("knudjepsen"),
        DATA / "knudjepsen",
        sources=["kj_no3_climate"],
        start=start,
        end=end,
    )
    grid = aggregate([r.frame for r in results], cat, start=start, end=end).grid
    (entity, (values, mask)), *_ = entity_frames(gap_fill(grid, cat).grid).items()
    days = pd.date_range(start, end, freq="1D")
    eras = pd.DataFrame(
        {
            "level": "A",
            "era_id": np.arange(args.days, dtype=np.int64),
            "start": days[:-1],
            "end": days[1:],
        }
    )
    print(f"{entity}: {values.shape[0]} rows x {values.shape[1]} sensors, {len(eras)} daily eras")
    print("profiles:", {s: cat.get(s).tsfresh_profile for s in values.columns})

    import tsfresh  # noqa: F401  (import cost kept out of the timings)

    t0 = time.perf_counter()
    eng = compute_features(values, mask, eras, entity=entity, profile="efficient", device="cpu")
    t1 = time.perf_counter()
    stage = tsfresh_features(values, mask, eras, entity=entity, catalogue=cat)
    t2 = time.perf_counter()
    alone = tsfresh_features(values, mask, eras, entity=entity, catalogue=cat, engine_provides=())
    t3 = time.perf_counter()
    wide = to_wide(pd.concat([eng, stage], ignore_index=True))
    t4 = time.perf_counter()
    sel = select_features_unsupervised(wide)
    t5 = time.perf_counter()
    print(f"engine (numpy, efficient):          {t1 - t0:6.2f} s, {len(eng)} rows")
    print(f"tsfresh stage (catalogue, subtract): {t2 - t1:6.2f} s, {len(stage)} rows")
    print(f"tsfresh alone (catalogue, no subtr): {t3 - t2:6.2f} s, {len(alone)} rows")
    print(f"unsupervised selection:              {t5 - t4:6.2f} s")
    print(f"features: {wide.shape[1]} before selection, {len(sel.kept)} after")
    reasons = sel.selection.loc[~sel.selection["kept"], "reason"].str.split(" ").str[0]
    print("dropped by:", reasons.value_counts().to_dict())


if __name__ == "__main__":
    main()
