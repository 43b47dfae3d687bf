"""Benchmark: eraflow's feature engine (NumPy, and CuPy when a GPU is present) vs tsfresh.

Input: ``--days`` of 5-minute data for ``--sensors`` sensors (synthetic greenhouse-like signals
with gaps), split into ``--eras`` eras of random length. Every (era, sensor) pair is one segment.
Prints one table: wall time, features per second (segments x features / time) and ratios.

tsfresh runs on the same segments with the equivalent settings (its own names and parameters for
every tsfresh-compatible calculator of the profile) through ``extract_features(n_jobs=0)``; the
column is skipped with a note when tsfresh is not installed (e.g. on the GPU machine).

GPU "effective bandwidth" = 8 bytes x valid values x calculator groups / GPU time: each group of
features (one calculator) reads the segment data at least once, so this is a lower bound on the
bytes the kernels touch.

Run: ``python benchmarks/bench_features.py [--days 365 --eras 100 --sensors 6]``.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import pandas as pd

from eraflow.stages.features import compute_segment_matrix, gpu_available, resolve_features


def make_input(
    days: int, n_eras: int, n_sensors: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = days * 288
    t = np.arange(n)
    cols = []
    for j in range(n_sensors):
        base = [20.0, 800.0, 200.0, 60.0, 0.0, 1000.0][j % 6]
        amp = [3.0, 300.0, 200.0, 15.0, 1.0, 50.0][j % 6]
        x = (
            base
            + amp * np.sin(2 * np.pi * t / 288 + j)
            + 0.05 * amp * rng.normal(size=n).cumsum() / 30
        )
        x[rng.random(n) < 0.01] = np.nan
        cols.append(np.round(x, 2))
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_eras - 1, replace=False))
    bounds = np.concatenate([[0], cuts, [n]])
    parts = [c[a:b] for a, b in itertools.pairwise(bounds) for c in cols]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return np.concatenate(parts), offsets


def time_engine(grid, offsets, specs, device: str, repeat: int = 1) -> float:
    compute_segment_matrix(
        grid[: offsets[min(3, len(offsets) - 1)]],
        offsets[:4] if len(offsets) > 3 else offsets,
        specs,
        step="5min",
        device=device,
    )  # warm-up (imports, CUDA context)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        compute_segment_matrix(grid, offsets, specs, step="5min", device=device)
        if device == "gpu":
            import cupy

            cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def tsfresh_settings(specs) -> dict[str, list[dict] | None]:
    """tsfresh's ``default_fc_parameters`` for these specs (its own names and parameters)."""
    settings: dict[str, list[dict]] = {}
    for spec in specs:
        settings.setdefault(spec.calculator, [])
        if spec.params:
            settings[spec.calculator].append(dict(spec.params))
    return {name: (params or None) for name, params in settings.items()}


def long_frame(grid: np.ndarray, offsets: np.ndarray) -> pd.DataFrame:
    """The segments as tsfresh's long input: id (the segment), time, value."""
    lengths = np.diff(offsets)
    return pd.DataFrame(
        {"id": np.repeat(np.arange(len(lengths)), lengths), "time": np.arange(len(grid)), "v": grid}
    )


def time_tsfresh(grid, offsets, specs) -> float | None:
    try:
        from tsfresh import extract_features
    except ImportError:
        return None
    settings = tsfresh_settings(specs)
    df = long_frame(grid, offsets).dropna()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract_features(
            df,
            column_id="id",
            column_sort="time",
            default_fc_parameters=settings,
            n_jobs=0,
            disable_progressbar=True,
        )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--eras", type=int, default=100)
    ap.add_argument("--sensors", type=int, default=6)
    ap.add_argument("--profile", default="efficient")
    ap.add_argument("--no-tsfresh", action="store_true")
    args = ap.parse_args()

    grid, offsets = make_input(args.days, args.eras, args.sensors)
    specs = resolve_features(args.profile)
    ts_specs = [s for s in specs if _is_tsfresh(s.calculator)]
    nseg = len(offsets) - 1
    nvalid = int(np.sum(~np.isnan(grid)))
    print(
        f"input: {args.days} d x {args.sensors} sensors, {args.eras} eras -> {nseg} segments, "
        f"{len(grid):,} grid values ({nvalid:,} valid)"
    )
    print(f"profile {args.profile!r}: {len(specs)} features, {len(ts_specs)} tsfresh-compatible\n")

    rows = []
    t_cpu_all = time_engine(grid, offsets, specs, "cpu")
    rows.append(("eraflow numpy", "all", len(specs), t_cpu_all))
    t_cpu_ts = time_engine(grid, offsets, ts_specs, "cpu")
    rows.append(("eraflow numpy", "tsfresh-compatible", len(ts_specs), t_cpu_ts))
    t_gpu = None
    if gpu_available():
        t_gpu = time_engine(grid, offsets, specs, "gpu", repeat=3)
        rows.append(("eraflow cupy", "all", len(specs), t_gpu))
    t_ts = None if args.no_tsfresh else time_tsfresh(grid, offsets, ts_specs)
    if t_ts is not None:
        rows.append(("tsfresh 0.21 n_jobs=0", "tsfresh-compatible", len(ts_specs), t_ts))

    print(f"{'engine':<24}{'features':<20}{'n_feat':>7}{'time [s]':>11}{'features/s':>14}")
    for name, which, nf, t in rows:
        print(f"{name:<24}{which:<20}{nf:>7}{t:>11.3f}{nseg * nf / t:>14,.0f}")
    print()
    if t_ts is not None:
        print(f"speed-up numpy vs tsfresh (same {len(ts_specs)} features): {t_ts / t_cpu_ts:.1f}x")
    else:
        print("tsfresh column skipped: tsfresh not installed (or --no-tsfresh)")
    if t_gpu is not None:
        ngroups = len({s.calculator for s in specs})
        bw = 8.0 * nvalid * ngroups / t_gpu / 1e9
        print(f"speed-up cupy vs numpy (all {len(specs)} features): {t_cpu_all / t_gpu:.1f}x")
        print(
            f"GPU effective bandwidth (8 B x valid values x {ngroups} calculators / time): "
            f"{bw:.1f} GB/s"
        )
    else:
        print("GPU column skipped: no CUDA device")


def _is_tsfresh(name: str) -> bool:
    from eraflow.stages.features import get_calculator

    return get_calculator(name).tsfresh


if __name__ == "__main__":
    main()
