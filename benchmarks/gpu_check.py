"""The prepared GPU check (``make gpu-check``): parity, speed, bandwidth and a large batch.

Runs where CuPy sees a CUDA device but Prefect, cuDF and tsfresh are absent (the GPU test
machine): it imports only eraflow's array code. In under five minutes it

1. runs the ``gpu`` tests (CuPy vs NumPy to 1e-6 relative for every registered calculator);
2. compares CuPy with NumPy on a real slice of the greenhouse exports, shipped with the run
   (``--slice``, made here with ``--make-slice`` from ../shared; the data is never committed);
3. times every calculator group on GPU and CPU in this process (the ratio per group);
4. measures the bandwidth of the segment reductions against the device's peak;
5. computes a batch of at least 10^8 values on the GPU and records the memory it took;

and writes ``gpu_check.json`` and ``gpu_check.log`` into ``--out``. Without a CUDA device the
GPU parts are skipped, each with a line saying so, and the CPU parts still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eraflow.stages.features import (  # noqa: E402  (after the path: runs without an install)
    compute_segment_matrix,
    feature_registry,
    gpu_available,
    resolve_features,
)
from eraflow.stages.features.segments import SegmentBatch  # noqa: E402

LOG: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    LOG.append(line)


def synthetic(values: int, segments: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Greenhouse-like values (daily cycle, drift, 1 % gaps) cut into ``segments`` segments."""
    rng = np.random.default_rng(seed)
    t = np.arange(values)
    grid = 20 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(size=values).cumsum() / 300
    grid[rng.random(values) < 0.01] = np.nan
    cuts = np.sort(rng.choice(np.arange(1, values), size=segments - 1, replace=False))
    return grid, np.concatenate([[0], cuts, [values]]).astype(np.int64)


def device_facts() -> dict[str, Any]:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    clock_khz = props.get("memoryClockRate", 0) or 0
    bus_bits = props.get("memoryBusWidth", 0) or 0
    peak = 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None
    free, total = cupy.cuda.runtime.memGetInfo()
    return {
        "name": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "cupy": cupy.__version__,
        "memory_gib": round(total / 2**30, 1),
        "peak_bandwidth_gb_s": round(peak, 1) if peak else None,
        "free_gib": round(free / 2**30, 1),
    }


def gpu_tests(out: Path) -> dict[str, Any]:
    began = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "tests/",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={out / 'gpu-tests.xml'}",
        ],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    tail = done.stdout.strip().splitlines()[-1:] or [done.stderr[-300:]]
    say(f"gpu tests: exit {done.returncode}: {tail[0]} ({time.perf_counter() - began:.0f} s)")
    (out / "gpu-tests.log").write_text(done.stdout + done.stderr)
    return {"exit": done.returncode, "summary": tail[0]}


def parity(grid: np.ndarray, offsets: np.ndarray, label: str) -> dict[str, Any]:
    """CuPy against NumPy, calculator by calculator (one that fails is named, the rest run)."""
    bad: list[str] = []
    failed: dict[str, str] = {}
    total = 0
    for name, calc in sorted(feature_registry().items()):
        specs = list(calc.specs())
        if not specs:
            continue
        total += len(specs)
        try:
            cpu, specs, _ = compute_segment_matrix(grid, offsets, specs, step="5min", device="cpu")
            gpu, _, _ = compute_segment_matrix(grid, offsets, specs, step="5min", device="gpu")
        except Exception as exc:  # a crash on one device names the calculator, the rest go on
            failed[name] = f"{type(exc).__name__}: {exc}"
            bad += [s.name for s in specs]
            continue
        bad += [
            s.name
            for j, s in enumerate(specs)
            if not np.allclose(
                gpu[:, j],
                cpu[:, j],
                rtol=1e-6,
                atol=1e-6 if s.params.get("attr") == "angle" else 1e-9,
                equal_nan=True,
            )
        ]
    say(
        f"parity on {label}: {total - len(bad)} of {total} features equal to 1e-6"
        + (f"; differ: {bad[:10]}" if bad else "")
        + (f"; failed: {failed}" if failed else "")
    )
    return {"features": total, "differ": bad, "failed": failed}


def timed(fn: Any, repeat: int = 3) -> float:
    fn()  # warm-up (CuPy compiles kernels on first use)
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def per_group(grid: np.ndarray, offsets: np.ndarray, with_gpu: bool) -> list[dict[str, Any]]:
    rows = []
    for name, calc in sorted(feature_registry().items()):
        specs = list(calc.specs())
        if not specs:
            continue
        row: dict[str, Any] = {"calculator": name, "features": len(specs)}
        row["cpu_s"] = timed(
            lambda s=specs: compute_segment_matrix(grid, offsets, s, step="5min", device="cpu"),
            repeat=1,
        )
        if with_gpu:
            import cupy

            def on_gpu(s: list[Any] = specs) -> None:
                compute_segment_matrix(grid, offsets, s, step="5min", device="gpu")
                cupy.cuda.Device().synchronize()

            try:
                row["gpu_s"] = timed(on_gpu)
                row["gpu_speedup"] = round(row["cpu_s"] / row["gpu_s"], 1)
            except Exception as exc:
                row["gpu_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    say(f"{'calculator':<32}{'cpu s':>9}{'gpu s':>9}{'x':>7}")
    for row in rows:
        say(
            f"{row['calculator']:<32}{row['cpu_s']:>9.4f}{row.get('gpu_s', float('nan')):>9.4f}"
            f"{row.get('gpu_speedup', float('nan')):>7}"
        )
    return rows


def bandwidth(values: int, segments: int, peak: float | None) -> dict[str, Any]:
    import cupy

    grid, offsets = synthetic(values, segments)
    batch = SegmentBatch(cupy, cupy.asarray(grid), cupy.asarray(offsets))
    v = cupy.nan_to_num(batch.grid)

    def reduce() -> None:
        batch.sum(v)
        cupy.cuda.Device().synchronize()

    seconds = timed(reduce, repeat=5)
    achieved = 8 * values / seconds / 1e9
    share = f" = {100 * achieved / peak:.0f} % of the {peak:.0f} GB/s peak" if peak else ""
    say(
        f"segment sum over {values:.2e} values in {segments} segments: {seconds * 1e3:.1f} ms, "
        f"{achieved:.0f} GB/s{share}"
    )
    return {
        "values": values,
        "segments": segments,
        "seconds": seconds,
        "achieved_gb_s": round(achieved, 1),
        "peak_gb_s": peak,
    }


def large_batch(values: int) -> dict[str, Any]:
    import cupy

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    grid, offsets = synthetic(values, max(values // 100_000, 2))
    began = time.perf_counter()
    matrix, specs, engine = compute_segment_matrix(
        grid, offsets, resolve_features("minimal"), step="5min", device="gpu"
    )
    cupy.cuda.Device().synchronize()
    seconds = time.perf_counter() - began
    peak = pool.total_bytes() / 2**30
    say(
        f"large batch: {values:.2e} values, {len(offsets) - 1} segments, minimal profile on "
        f"{engine}: {seconds:.1f} s, GPU pool {peak:.1f} GiB"
    )
    return {
        "values": values,
        "seconds": seconds,
        "pool_gib": round(peak, 2),
        "features": len(specs),
        "finite": bool(np.isfinite(matrix).any()),
    }


def make_slice(path: Path) -> None:
    """A real slice of the Knud Jepsen exports (two compartments, ten days) for the GPU run."""
    import pandas as pd

    from eraflow.catalogue import load_catalogue
    from eraflow.stages.aggregate import aggregate
    from eraflow.stages.ingest import load_mapping, read_mapping

    root = REPO.parent / "shared" / "data" / "greenhouse" / "knudjepsen"
    results = read_mapping(
        load_mapping("knudjepsen"),
        root,
        start=pd.Timestamp("2015-10-01", tz="UTC"),
        end=pd.Timestamp("2015-10-11", tz="UTC"),
    )
    grid = aggregate([r.frame for r in results], load_catalogue()).grid
    columns = [c for c in grid.columns if c not in ("time", "entity") and grid[c].notna().any()]
    parts = [
        grid.loc[grid["entity"] == e, c].to_numpy(float)
        for e in sorted(grid["entity"].unique())
        for c in columns
    ]
    pieces = [p[i : i + 288] for p in parts for i in range(0, len(p), 288)]  # daily segments
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pieces])])
    np.savez_compressed(path, grid=np.concatenate(pieces), offsets=offsets)
    print(f"wrote {path}: {len(pieces)} segments, {offsets[-1]} values")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "gpu-check-out")
    ap.add_argument("--slice", type=Path, default=REPO / "gpu-slice.npz")
    ap.add_argument("--make-slice", action="store_true", help="write --slice from ../shared")
    ap.add_argument("--large", type=float, default=1e8, help="values in the large batch")
    args = ap.parse_args(argv)
    if args.make_slice:
        make_slice(args.slice)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    has_gpu = gpu_available()
    report: dict[str, Any] = {"gpu": has_gpu}
    if has_gpu:
        report["device"] = device_facts()
        say(f"device: {report['device']}")
        report["tests"] = gpu_tests(args.out)
        grid, offsets = synthetic(200_000, 400, seed=3)
        report["parity_seeded"] = parity(grid, offsets, "seeded data")
        if args.slice.is_file():
            data = np.load(args.slice)
            report["parity_real"] = parity(data["grid"], data["offsets"], args.slice.name)
        else:
            say(f"real slice {args.slice} absent: make it with --make-slice and carry it")
    else:
        say(
            "no CUDA device here (CuPy absent or no GPU): parity, GPU timings, bandwidth and "
            "the large batch are skipped; the CPU timings run"
        )
    grid, offsets = synthetic(2_000_000, 2000, seed=5)
    report["groups"] = per_group(grid, offsets, has_gpu)
    if has_gpu:
        report["bandwidth"] = bandwidth(
            int(args.large), 10_000, report["device"]["peak_bandwidth_gb_s"]
        )
        report["large_batch"] = large_batch(int(args.large))
    report["seconds"] = round(time.perf_counter() - began, 1)
    say(f"gpu check done in {report['seconds']} s")
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "gpu_check.log").write_text("\n".join(LOG) + "\n")
    failed = has_gpu and (report["tests"]["exit"] != 0 or report["parity_seeded"]["differ"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
