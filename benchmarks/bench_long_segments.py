"""Benchmark: every tsfresh-compatible calculator on long segments, eraflow's engine vs tsfresh.

Level A eras are long (a month-long era holds 8,640 five-minute values per sensor): there the
calculators whose work grows faster than the segment (sample and approximate entropy, the
Lempel-Ziv complexity, the CWT, the ADF test, ...) decide the engine's speed, not the short-era
throughput that ``bench_features.py`` measures. For each calculator of the profile this times
the engine (NumPy) and tsfresh's own function for it (its parameters, called per segment) on
the same segments, at ``--length`` and at a quarter of it. What bounds each is measured: the
exponent ``log(t(L) / t(L/4)) / log 4`` (1: linear in the segment, 2: quadratic). Prints one
table, slowest engine calculator first, and writes JSON.

Run: ``python benchmarks/bench_long_segments.py [--length 8640 --segments 8 --profile efficient]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the eraflow command runs (common.threads)

import numpy as np
import pandas as pd
from bench_features import long_frame, tsfresh_settings

from eraflow.stages.features import (
    compute_segment_matrix,
    get_calculator,
    resolve_features,
)

HERE = Path(__file__).resolve().parent


def segments(length: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` greenhouse-like segments of ``length`` values (a daily cycle, drift, noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    parts = [
        np.round(
            20 + 3 * np.sin(2 * np.pi * t / 288 + k) + rng.normal(size=length).cumsum() / 30, 2
        )
        for k in range(count)
    ]
    offsets = np.concatenate([[0], np.cumsum([length] * count)]).astype(np.int64)
    return np.concatenate(parts), offsets


def engine_seconds(grid: np.ndarray, offsets: np.ndarray, specs: list[Any]) -> float:
    compute_segment_matrix(grid[: offsets[1]], offsets[:2], specs, step="5min", device="cpu")
    began = time.process_time()
    compute_segment_matrix(grid, offsets, specs, step="5min", device="cpu")
    return time.process_time() - began


def tsfresh_seconds(grid: np.ndarray, offsets: np.ndarray, specs: list[Any]) -> float:
    """tsfresh's own calculator functions called on each segment: the calculator's cost
    without extract_features' per-call framing (which the "all" row includes)."""
    from tsfresh.feature_extraction import feature_calculators

    series = [  # a time index: the timewise calculators read it
        pd.Series(
            grid[start:end], index=pd.date_range("2024-01-01", periods=end - start, freq="5min")
        )
        for start, end in itertools.pairwise(offsets)
    ]
    began = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, params in tsfresh_settings(specs).items():
            function = getattr(feature_calculators, name)
            for x in series:
                if function.fctype == "combiner":
                    list(function(x, params))
                elif params is None:
                    function(x)
                else:
                    for one in params:
                        function(x, **one)
    return time.process_time() - began


def extract_features_seconds(grid: np.ndarray, offsets: np.ndarray, specs: list[Any]) -> float:
    """The whole profile through ``tsfresh.extract_features(n_jobs=0)``."""
    from tsfresh import extract_features

    frame = long_frame(grid, offsets)
    began = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract_features(
            frame,
            column_id="id",
            column_sort="time",
            default_fc_parameters=tsfresh_settings(specs),
            n_jobs=0,
            disable_progressbar=True,
        )
    return time.process_time() - began


def exponent(long: float, short: float) -> float:
    return math.log(max(long, 1e-6) / max(short, 1e-6)) / math.log(4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8640)
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--profile", default="efficient")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "long_segments.json")
    args = ap.parse_args()

    by_calculator: dict[str, list[Any]] = defaultdict(list)
    for spec in resolve_features(args.profile):
        if get_calculator(spec.calculator).tsfresh:
            by_calculator[spec.calculator].append(spec)
    long_grid, long_offsets = segments(args.length, args.segments)
    short_grid, short_offsets = segments(args.length // 4, args.segments)
    print(
        f"{args.segments} segments of {args.length:,} values (and of {args.length // 4:,}), "
        f"profile {args.profile!r}, {len(by_calculator)} tsfresh-compatible calculators; "
        "CPU seconds, one process"
    )
    rows = []
    for name, specs in by_calculator.items():
        engine = engine_seconds(long_grid, long_offsets, specs)
        reference = tsfresh_seconds(long_grid, long_offsets, specs)
        rows.append(
            {
                "calculator": name,
                "features": len(specs),
                "engine_s": engine,
                "tsfresh_s": reference,
                "ratio": reference / max(engine, 1e-6),
                "engine_exponent": exponent(
                    engine, engine_seconds(short_grid, short_offsets, specs)
                ),
                "tsfresh_exponent": exponent(
                    reference, tsfresh_seconds(short_grid, short_offsets, specs)
                ),
            }
        )
    rows.sort(key=lambda r: -r["engine_s"])
    # what one engine call costs whatever it computes (checks, masks, the segment layout):
    # every row above pays it once, the whole profile at once pays it once in all
    fixed = min(engine_seconds(long_grid, long_offsets, by_calculator["length"]) for _ in range(3))
    print(
        f"{'calculator':<38}{'feat':>5}{'engine s':>10}{'tsfresh s':>11}{'ratio':>8}"
        f"{'exp eng':>9}{'exp tsf':>9}"
    )
    for r in rows:
        print(
            f"{r['calculator']:<38}{r['features']:>5}{r['engine_s']:>10.3f}{r['tsfresh_s']:>11.3f}"
            f"{r['ratio']:>7.1f}x{r['engine_exponent']:>9.2f}{r['tsfresh_exponent']:>9.2f}"
        )
    engine_total = sum(r["engine_s"] for r in rows)
    tsfresh_total = sum(r["tsfresh_s"] for r in rows)
    every = [spec for specs in by_calculator.values() for spec in specs]
    engine_all = engine_seconds(long_grid, long_offsets, every)
    extract_all = extract_features_seconds(long_grid, long_offsets, every)
    print(
        f"{'sum of the above':<38}{len(every):>5}{engine_total:>10.3f}"
        f"{tsfresh_total:>11.3f}{tsfresh_total / engine_total:>7.1f}x"
    )
    print(f"(an engine call's fixed cost, in every row: {fixed:.3f} s, 'length' alone)")
    print(
        f"{'all at once (extract_features)':<38}{len(every):>5}{engine_all:>10.3f}"
        f"{extract_all:>11.3f}{extract_all / engine_all:>7.1f}x"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "length": args.length,
                "segments": args.segments,
                "profile": args.profile,
                "rows": rows,
                "engine_s": engine_total,
                "tsfresh_s": tsfresh_total,
                "engine_all_s": engine_all,
                "engine_call_fixed_s": fixed,
                "extract_features_s": extract_all,
            },
            indent=2,
        )
    )
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
