"""Benchmark: tsfresh's catalogue in the engine vs tsfresh itself, on a stored run's eras.

Input: a Parquet store that a pipeline run wrote (its grid and its eras); without ``--store``
the Knud Jepsen year (``../shared``) is first run into a temporary store, features off.
Every (era, sensor) pair of the chosen levels is one segment, exactly as the pipeline computes
it (the era's grid values, NaN dropped; sensors without any value in the entity left out).

Prints two tables and writes them as JSON:

1. the whole profile: the engine (batches of at most ``--batch-values`` values, as the
   pipeline's batches, on ``--workers`` threads as its task runner maps them) against one
   tsfresh ``extract_features`` call (``n_jobs=2``, ``OPENBLAS_NUM_THREADS=1``) on the same
   segments, wall and CPU (tsfresh's worker processes included), with the number of values
   that differ (``rtol 1e-6``; NaN equals NaN);
2. per calculator, on every ``--table-every``-th segment: the engine's time for that
   calculator's combinations against tsfresh's own function called on each segment (what
   ``extract_features`` does inside each worker), so the slowest calculators are visible.

Run: ``python benchmarks/bench_catalogue.py [--store DIR] [--levels A B C] [--sample 1]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads BLAS, as specified

import argparse
import json
import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eraflow.common.grid import grid_step
from eraflow.stages.features import compute_segment_matrix, feature_registry, resolve_features
from eraflow.stages.features.registry import FeatureSpec
from eraflow.store.grid import read_entity_grid
from eraflow.store.parquet import ParquetStore


@dataclass
class Segments:
    """Flat segments (grid values with NaN) plus each valid value's timestamp."""

    grid: np.ndarray
    offsets: np.ndarray
    stamps: np.ndarray  # datetime64[ns], aligned with grid
    labels: list[tuple[str, str, int, str]]  # entity, level, era_id, sensor

    def take(self, every: int) -> Segments:
        keep = np.arange(0, len(self.labels), every)
        parts = [(self.offsets[i], self.offsets[i + 1]) for i in keep]
        idx = np.concatenate([np.arange(a, b) for a, b in parts]) if parts else np.zeros(0, int)
        lens = [b - a for a, b in parts]
        return Segments(
            self.grid[idx],
            np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
            self.stamps[idx],
            [self.labels[i] for i in keep],
        )


def year_store() -> Path:
    """The Knud Jepsen year's grid and eras, run into a temporary store (features off)."""
    import tempfile

    from bench_scoped_runs import kj

    from flows.pipeline import feature_pipeline

    store = Path(tempfile.mkdtemp(prefix="eraflow-bench-catalogue-"))
    print(f"running the Knud Jepsen year into {store} (grid and eras only) ...", flush=True)
    feature_pipeline(**kj(store), features=False, select=False, report=False)
    return store


def load_segments(store_dir: Path, levels: list[str], sample: int, freq: str) -> Segments:
    grids, stamps, lens, labels = [], [], [], []
    with ParquetStore(store_dir) as store:
        eras = store.read("eras")
        for entity, eras_e in eras.groupby("entity", observed=True):
            values, _ = read_entity_grid(store, str(entity), step=grid_step(freq))
            sensors = [s for s in values.columns if values[s].notna().any()]
            t = values.index.as_unit("ns").asi8
            x = values[sensors].to_numpy(dtype=np.float64)
            chosen = eras_e[eras_e["level"].isin(levels)].sort_values(["level", "era_id"])
            for era in chosen.iloc[::sample].itertuples():
                a = np.searchsorted(t, pd.Timestamp(era.start).value, side="left")
                b = np.searchsorted(t, pd.Timestamp(era.end).value, side="left")
                for j, sensor in enumerate(sensors):
                    grids.append(x[a:b, j])
                    stamps.append(t[a:b])
                    lens.append(b - a)
                    labels.append((str(entity), str(era.level), int(era.era_id), sensor))
    return Segments(
        np.concatenate(grids),
        np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        np.concatenate(stamps).view("datetime64[ns]"),
        labels,
    )


def _cpu_with_children() -> float:
    """User + system CPU of this process and of its waited-for children (tsfresh's pool)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def engine_matrix(
    seg: Segments, specs: list[FeatureSpec], batch_values: int, workers: int = 1
) -> np.ndarray:
    """The engine over consecutive groups of segments of at most ``batch_values`` values.

    ``workers`` > 1: the groups run on that many threads, as the pipeline's task runner maps
    its era batches (the kernels release the GIL).
    """
    bounds = []
    nseg = len(seg.labels)
    i = 0
    while i < nseg:
        j = i + 1
        while j < nseg and seg.offsets[j + 1] - seg.offsets[i] <= batch_values:
            j += 1
        bounds.append((i, j))
        i = j

    def one(bound: tuple[int, int]) -> np.ndarray:
        i, j = bound
        a, b = seg.offsets[i], seg.offsets[j]
        m, _, _ = compute_segment_matrix(
            seg.grid[a:b], seg.offsets[i : j + 1] - a, specs, device="cpu", step="5min"
        )
        return m

    from concurrent.futures import ThreadPoolExecutor

    # the largest groups first, so that no thread is left with a long one at the end
    order = sorted(
        range(len(bounds)), key=lambda k: seg.offsets[bounds[k][0]] - seg.offsets[bounds[k][1]]
    )
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        done = dict(zip(order, pool.map(one, [bounds[k] for k in order]), strict=True))
    return np.vstack([done[k] for k in range(len(bounds))])


def tsfresh_settings_of(specs: list[FeatureSpec]) -> dict[str, list[dict] | None]:
    settings: dict[str, list[dict] | None] = {}
    for s in specs:
        grid = settings.setdefault(s.calculator, [])
        if s.params and grid is not None:
            grid.append(dict(s.params))
    return {k: (v or None) for k, v in settings.items()}


def long_frame(seg: Segments) -> pd.DataFrame:
    valid = ~np.isnan(seg.grid)
    ids = np.repeat(np.arange(len(seg.labels)), np.diff(seg.offsets))
    return pd.DataFrame(
        {"id": ids[valid], "time": seg.stamps[valid], "v": seg.grid[valid]},
        index=pd.DatetimeIndex(seg.stamps[valid], name="stamp"),  # for the timewise calculators
    )


def run_tsfresh(seg: Segments, specs: list[FeatureSpec], n_jobs: int) -> pd.DataFrame:
    from tsfresh import extract_features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_features(
            long_frame(seg),
            column_id="id",
            column_sort="time",
            default_fc_parameters=tsfresh_settings_of(specs),
            n_jobs=n_jobs,
            disable_progressbar=True,
        )


def differing(ours: np.ndarray, theirs: np.ndarray) -> int:
    both_nan = np.isnan(ours) & np.isnan(theirs)
    close = np.isclose(ours, theirs, rtol=1e-6, atol=1e-9 * np.maximum(1.0, np.abs(theirs)))
    return int((~(both_nan | close)).sum())


def tsfresh_per_calculator(seg: Segments, specs: list[FeatureSpec]) -> float:
    """tsfresh's own function on every segment, as ``_do_extraction_on_chunk`` calls it."""
    from tsfresh.feature_extraction import feature_calculators as fc

    func = getattr(fc, specs[0].calculator)
    grid = [dict(s.params) for s in specs]
    needs_index = getattr(func, "input", None) == "pd.Series"
    pieces = []
    for i in range(len(seg.labels)):
        x = seg.grid[seg.offsets[i] : seg.offsets[i + 1]]
        ok = ~np.isnan(x)
        t = seg.stamps[seg.offsets[i] : seg.offsets[i + 1]][ok]
        pieces.append(pd.Series(x[ok], index=pd.DatetimeIndex(t)) if needs_index else x[ok])
    t0 = time.perf_counter()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for x in pieces:
            if len(x) == 0:
                continue
            if func.fctype == "combiner":
                list(func(x, param=grid))
            elif specs[0].params:
                for p in grid:
                    func(x, **p)
            else:
                func(x)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="Parquet store of a pipeline run")
    ap.add_argument("--levels", nargs="+", default=["A", "B", "C"])
    ap.add_argument("--profile", default="efficient")
    ap.add_argument("--freq", default="5min")
    ap.add_argument("--sample", type=int, default=1, help="keep every k-th era (1: all)")
    ap.add_argument("--table-every", type=int, default=20, help="segments for the table")
    ap.add_argument(
        "--batch-values",
        type=int,
        default=400_000,
        help="values per engine batch (the pipeline's: 20,000 grid rows of ~20 sensors)",
    )
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument(
        "--workers", type=int, default=2, help="engine threads (the pipeline's task runner)"
    )
    ap.add_argument("--json", type=Path, default=Path("bench_catalogue.json"))
    args = ap.parse_args()

    if args.store is None:
        args.store = year_store()
    seg = load_segments(args.store, args.levels, args.sample, args.freq)
    registry = feature_registry()
    specs = [s for s in resolve_features(args.profile) if registry[s.calculator].tsfresh]
    nvalid = int((~np.isnan(seg.grid)).sum())
    print(
        f"input: {args.store} levels {' '.join(args.levels)}: {len(seg.labels):,} segments, "
        f"{nvalid:,} values; profile {args.profile!r}: {len(specs)} tsfresh features\n"
    )

    t0, c0 = time.perf_counter(), time.process_time()
    ours = engine_matrix(seg, specs, args.batch_values, args.workers)
    t_engine, cpu_engine = time.perf_counter() - t0, time.process_time() - c0
    peak_engine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0, c0 = time.perf_counter(), _cpu_with_children()
    ref = run_tsfresh(seg, specs, args.n_jobs)
    t_tsfresh, cpu_tsfresh = time.perf_counter() - t0, _cpu_with_children() - c0
    theirs = ref.reindex(index=np.arange(len(seg.labels)))[["v__" + s.name for s in specs]]
    diff_by_calc: dict[str, int] = {}
    for j, s in enumerate(specs):
        n = differing(ours[:, j], theirs.iloc[:, j].to_numpy(dtype=float))
        diff_by_calc[s.calculator] = diff_by_calc.get(s.calculator, 0) + n
    total_values = ours.size
    print(f"{'whole profile':<34}{'wall [s]':>10}{'CPU [s]':>10}")
    print(
        f"{f'engine (numpy, {args.workers} threads)':<34}{t_engine:>10.1f}{cpu_engine:>10.1f}"
        f"   peak RSS {peak_engine:.2f} GiB"
    )
    print(
        f"{f'tsfresh extract_features n_jobs={args.n_jobs}':<34}{t_tsfresh:>10.1f}"
        f"{cpu_tsfresh:>10.1f}"
    )
    print(
        f"ratio tsfresh / engine: {t_tsfresh / t_engine:.1f}x wall, "
        f"{cpu_tsfresh / cpu_engine:.1f}x CPU"
    )
    print(
        f"values differing (rtol 1e-6): {sum(diff_by_calc.values()):,} of {total_values:,} "
        f"({', '.join(f'{k} {v}' for k, v in diff_by_calc.items() if v) or 'none'})\n"
    )

    table_seg = seg.take(args.table_every)
    rows = []
    by_calc: dict[str, list[FeatureSpec]] = {}
    for s in specs:
        by_calc.setdefault(s.calculator, []).append(s)
    for name, calc_specs in by_calc.items():
        t0 = time.perf_counter()
        engine_matrix(table_seg, calc_specs, args.batch_values)
        te = time.perf_counter() - t0
        tt = tsfresh_per_calculator(table_seg, calc_specs)
        rows.append(
            {"calculator": name, "combos": len(calc_specs), "engine_s": te, "tsfresh_s": tt}
        )
    rows.sort(key=lambda r: -r["engine_s"])
    print(
        f"per calculator, {len(table_seg.labels):,} segments (every {args.table_every}th), "
        f"slowest engine first"
    )
    print(f"{'calculator':<44}{'combos':>7}{'engine s':>10}{'tsfresh s':>11}{'ratio':>8}")
    for r in rows:
        ratio = r["tsfresh_s"] / r["engine_s"] if r["engine_s"] else float("nan")
        print(
            f"{r['calculator']:<44}{r['combos']:>7}{r['engine_s']:>10.3f}"
            f"{r['tsfresh_s']:>11.3f}{ratio:>8.1f}"
        )
    args.json.write_text(
        json.dumps(
            {
                "store": str(args.store),
                "levels": args.levels,
                "profile": args.profile,
                "segments": len(seg.labels),
                "values": nvalid,
                "features": len(specs),
                "engine_s": t_engine,
                "engine_cpu_s": cpu_engine,
                "engine_threads": args.workers,
                "tsfresh_cpu_s": cpu_tsfresh,
                "ratio_cpu": cpu_tsfresh / cpu_engine,
                "engine_peak_rss_gib": peak_engine,
                "tsfresh_s": t_tsfresh,
                "tsfresh_n_jobs": args.n_jobs,
                "ratio": t_tsfresh / t_engine,
                "differing": diff_by_calc,
                "per_calculator": rows,
                "table_segments": len(table_seg.labels),
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
