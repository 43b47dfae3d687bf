"""Era detection timings: eraflow's PELT vs ruptures and skchange, detect_eras on a year, BOCPD.

Run: ``.venv/bin/python benchmarks/bench_eras.py [--ruptures-sizes 1000,2000,4000]``.
Uses a real year (Knud Jepsen compartment 3, ../shared/data) when present, else a seeded
synthetic year of the same length. ruptures' pure-Python PELT cannot do a 5-minute year in
reasonable time, so it runs on the first rows only and its full-year time is extrapolated from
the last two sizes (power law), and labelled as such.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eraflow.stages.eras import EraConfig, EraWarning, bocpd, detect_eras, pelt, standardise

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "greenhouse"
NO3 = DATA / "knudjepsen" / "NO3_LAMPEGRP_1.csv"
SIGNALS = ["air_temp_c", "humidity_deficit_g_m3", "radiation_w_m2", "pipe_temp_1_c"]
COLUMNS = [
    "air_temp_c", "outside_temp_c", "radiation_w_m2", "co2_ppm", "curtain_1_percent",
    "curtain_2_percent", "lamp_status", "humidity_deficit_g_m3", "pipe_temp_1_c", "pipe_temp_2_c",
]  # fmt: skip


def real_year() -> pd.DataFrame:
    raw = pd.read_csv(
        NO3, sep=";", skiprows=3, header=None, decimal=",", na_values=["#NUM!", ""],
        encoding="latin-1",
    )  # fmt: skip
    raw.columns = ["time", *COLUMNS]
    local = pd.to_datetime(raw["time"], format="%d-%m-%Y %H:%M:%S")
    utc = local.dt.tz_localize("Europe/Copenhagen", ambiguous="NaT", nonexistent="NaT")
    values = raw[COLUMNS].astype("float64")
    values.index = pd.DatetimeIndex(utc.dt.tz_convert("UTC"), name="time")
    values = values[values.index.notna() & ~values.index.duplicated()].sort_index()
    return values.resample("5min").mean().interpolate(limit=6, limit_area="inside")


def synthetic_year(n: int = 105_697, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2015-09-07", periods=n, freq="5min", tz="UTC", name="time")
    day = np.clip(np.sin(((np.arange(n) % 288) / 12.0 - 6.0) / 12.0 * np.pi), 0.0, None)
    season = np.cos(np.arange(n) / n * 2 * np.pi)
    regime = np.repeat(rng.normal(0, 1, n // 2016 + 1), 2016)[:n]
    return pd.DataFrame(
        {
            "air_temp_c": 20 + 3 * day + regime + rng.normal(0, 0.3, n),
            "humidity_deficit_g_m3": 4 + 3 * day * (1 - season) + rng.normal(0, 0.4, n),
            "radiation_w_m2": 400 * day * (1.2 - season) + rng.normal(0, 5, n).clip(0),
            "pipe_temp_1_c": 40 + 10 * season - 8 * day + 3 * regime + rng.normal(0, 1, n),
        },
        index=idx,
    )


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ruptures-sizes", default="1000,2000,4000")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument(
        "--scale", type=float, default=10.0, help="BIC multiple for PELT vs ruptures"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", EraWarning)
    warnings.filterwarnings("ignore", message="New behaviour in v1.1.5")

    t_load, values = timed(real_year if NO3.exists() else synthetic_year)
    source = "Knud Jepsen NO3 (real)" if NO3.exists() else "synthetic (real data absent)"
    frame = values[SIGNALS].interpolate(limit_direction="both")
    x = standardise(frame.to_numpy(dtype=np.float64), scaling="robust")
    n, d = x.shape
    print(f"data: {source}, {n} rows x {d} signals at 5 min, loaded in {t_load:.1f} s")

    rows: list[tuple[str, str, str, str]] = []
    t_cold, _ = timed(lambda: pelt(x[:500], model="normal", pen=50.0, min_size=36))
    t_cold_b, _ = timed(lambda: bocpd(x[:500], r_max=50))
    rows.append(("numba compile/cache load (first calls)", f"{t_cold + t_cold_b:.2f}", "", ""))

    import ruptures as rpt

    n_par = d + d * (d + 1) // 2
    sizes = [int(s) for s in args.ruptures_sizes.split(",")]
    t_rpt: dict[int, float] = {}
    for size in sizes:
        xs = x[:size]
        pen = args.scale * n_par * np.log(size)
        t_ours, ours = timed(
            lambda xs=xs, pen=pen: pelt(xs, model="normal", pen=pen, min_size=36), 3
        )
        algo = rpt.Pelt(model="normal", min_size=36, jump=1)
        t_ref, ref = timed(lambda xs=xs, pen=pen, algo=algo: algo.fit(xs).predict(pen=pen))
        t_rpt[size] = t_ref
        same = "equal" if ours == ref else "DIFFERENT"
        rows.append(
            (f"PELT normal d={d}, n={size}, {len(ours) - 1} bkps ({same})",
             f"{t_ours:.4f}", f"{t_ref:.2f}", f"{t_ref / t_ours:.0f}x")
        )  # fmt: skip
    s1, s2 = sizes[-2], sizes[-1]
    expo = np.log(t_rpt[s2] / t_rpt[s1]) / np.log(s2 / s1)
    t_rpt_year = t_rpt[s2] * (n / s2) ** expo
    pen = args.scale * n_par * np.log(n)
    t_full, full = timed(lambda: pelt(x, model="normal", pen=pen, min_size=36))
    rows.append(
        (f"PELT normal d={d}, full year n={n}, 5-min grid, {len(full) - 1} bkps",
         f"{t_full:.2f}", f"~{t_rpt_year:,.0f} (extrapolated, n^{expo:.2f})",
         f"~{t_rpt_year / t_full:,.0f}x")
    )  # fmt: skip

    rows += grid_resolution_rows(x)

    for method in ("pelt", "bocpd"):
        cfg = EraConfig(method=method)  # type: ignore[arg-type]
        t_det, eras = timed(lambda cfg=cfg: detect_eras(values, entity="NO3", config=cfg), 3)
        counts = eras.groupby("level").size().to_dict()
        label = f"detect_eras(method={method!r}), A/B/C = {counts['A']}/{counts['B']}/{counts['C']}"
        rows.append((label, f"{t_det:.2f}", "", ""))

    hourly = x[: n // 12 * 12].reshape(-1, 12, d).mean(axis=1)
    t_bh, res = timed(lambda: bocpd(hourly, hazard=1 / 12, r_max=336, lag=3, min_size=3), 3)
    rows.append(
        (
            f"BOCPD hourly n={len(hourly)}, r_max=336, {len(res.bkps) - 1} bkps",
            f"{t_bh:.3f}",
            "",
            "",
        )
    )
    t_b5, res = timed(lambda: bocpd(x, hazard=1 / 144, r_max=288, lag=36, min_size=36))
    rows.append((f"BOCPD 5-min n={n}, r_max=288, {len(res.bkps) - 1} bkps", f"{t_b5:.2f}", "", ""))

    head = ("case", "eraflow s", "reference s", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    if args.json:
        records = [dict(zip(head, r, strict=True)) for r in rows]
        Path(args.json).write_text(
            json.dumps({"source": source, "n": n, "rows": records}, indent=1)
        )
        print(f"JSON: {args.json}")


def grid_resolution_rows(x: np.ndarray) -> list[tuple[str, str, str, str]]:
    """Exact PELT over every 5-minute row of the year: eraflow vs skchange's PELT (numba).

    Same cost (l2), penalty and minimum size; the boundaries must be identical. The normal
    cost has no skchange twin with ruptures' variance floor, so it is timed alone, at the
    penalty that gives about as many eras as the hourly default (scale 4: ~700 on NO3).
    """
    from skchange.detectors import PELT
    from skchange.interval_scorers import L2Cost

    n, d = x.shape
    frame = pd.DataFrame(x)
    rows = []
    for scale in (1.0, 4.0):
        pen = scale * d * np.log(n)
        detector = PELT(cost=L2Cost(), penalty=pen, min_segment_length=1)
        detector.fit(frame.iloc[:2000]).predict(frame.iloc[:2000])  # compile outside the timing
        t_ours, ours = timed(lambda pen=pen: pelt(x, model="l2", pen=pen, min_size=1), 3)
        t_ref, ref = timed(lambda d=detector: np.asarray(d.fit(frame).predict(frame)).ravel(), 3)
        same = "equal" if list(ours[:-1]) == [int(v) for v in ref] else "DIFFERENT"
        rows.append(
            (f"exact PELT l2 d={d}, n={n} (5-min year), c={scale:g}, {len(ours) - 1} bkps ({same})",
             f"{t_ours:.2f}", f"{t_ref:.2f} (skchange)", f"{t_ref / t_ours:.1f}x")
        )  # fmt: skip
    pen = 4.0 * (d + d * (d + 1) // 2) * np.log(n)
    t_norm, bkps = timed(
        lambda: pelt(x, model="normal", pen=pen, min_size=36, params={"eps": 0.01})
    )
    rows.append(
        (f"exact PELT normal d={d}, n={n}, c=4, floor 0.01, min 3 h, {len(bkps) - 1} bkps",
         f"{t_norm:.2f}", "", "")
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
