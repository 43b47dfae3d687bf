"""Every tsfresh-compatible calculator against tsfresh's own function, on the dropna'd series.

tsfresh's ``extract_features`` hands each calculator a NumPy array (``_do_extraction_on_chunk``),
so calling ``feature_calculators.<name>`` on the NaN-free slice is the same computation; one
``extract_features`` call additionally checks that names and values agree end to end.

Tolerances: rtol 1e-9 with an absolute floor scaled to the data (values built from sums of
large-offset data differ in the last digits from tsfresh's summation order). Documented
exceptions:
- ``time_reversal_asymmetry_statistic``: tsfresh's ``x2²x1 - x1x0²`` cancels on large offsets;
  ours is factored, so the absolute floor is relative to the size of the terms;
- ``linear_trend``/``agg_linear_trend`` ``pvalue``: rtol 1e-6 (a tail probability of a t
  statistic built from ``1 - r``);
- the mean and every decision against it (``count_above_mean``, ``count_below_mean``,
  ``longest_strike_*_mean``, ``ratio_beyond_r_sigma``, ``symmetry_looking``,
  ``large_standard_deviation``, ``variance_larger_than_standard_deviation``) are compared, with
  no tolerance, with the exact rational reference of test_features_exact_mean instead of
  tsfresh: tsfresh's ``np.mean`` is itself a rounding step off in places (66 x 80.03 has mean
  80.02999999999997, so tsfresh counts all 66 values above it; the exact count is 0), and the
  engine deliberately gives the exact answer;
- the quantile thresholds (``index_mass_quantile``, ``change_quantiles``) may differ only where
  a value ties the threshold to within 1e-9 relative, where tsfresh's own answer depends on
  summation order; those cases are detected and counted, and must be rare;
- ``friedrich_coefficients``/``max_langevin_fixed_point``: rtol grows with the condition number
  of the polynomial fit (x 1e-16): on an energy counter near 1e5 the raw-power coefficients move
  with the last digits of the bin means, which pandas sums with Kahan's algorithm;
- ``augmented_dickey_fuller`` on series whose nested lag models fit exactly as well (all-zero
  lag columns) or to rounding (a ramp): see test_features_models, which pins those cases;
- ``permutation_entropy`` on windows with equal values: tsfresh ranks ties with NumPy's default
  argsort, which dispatches to unstable SIMD sorts on current x86 CPUs (the result depends on
  the machine); the engine ranks ties by position, and is checked against stable sorts there.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.stages.features import compute_segment_matrix, feature_registry
from tests.eraflow.test_features_exact_mean import MEAN_CALCULATORS, exact_features

tsfresh = pytest.importorskip("tsfresh")
from tsfresh.feature_extraction import feature_calculators as fc  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "greenhouse"
REAL_CSV = DATA / "knudjepsen" / "NO3_LAMPEGRP_1.csv"

TSFRESH_SPECS = [s for c in feature_registry().values() if c.tsfresh for s in c.specs()]
THRESHOLD = {"index_mass_quantile", "change_quantiles"}


def tsfresh_value(spec, x: np.ndarray, times: np.ndarray | None = None) -> float:
    """tsfresh's value for one feature on one NaN-free array (as extract_features computes it).

    A combiner is called with its whole default grid, as ``extract_features`` calls it (some,
    like ``partial_autocorrelation``, answer a lag differently when asked for it alone).
    ``times`` (grid positions of the values, 5-minute steps) gives the series the datetime
    index that the timewise calculators read.
    """
    func = getattr(fc, spec.calculator)
    series = x
    if times is not None and getattr(func, "index_type", None) is pd.DatetimeIndex:
        series = pd.Series(x, index=pd.Timestamp("2020-01-01") + pd.to_timedelta(5 * times, "min"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            if func.fctype == "combiner":
                grid = [dict(s.params) for s in feature_registry()[spec.calculator].specs()]
                res = dict(func(series, param=grid))
                val = res[spec.name[len(spec.calculator) + 2 :]]
            elif spec.params:
                val = func(series, **spec.params)
            else:
                val = func(series)
    return float(val)


def polyfit_condition(x: np.ndarray, m: int, r: int) -> float:
    """Condition number of the degree-m fit of tsfresh's Friedrich estimate on x.

    The coefficients in the raw power basis of values far from 0 (an energy counter at 1e5
    moving by units) are ill-conditioned: the bin means' last digits, which depend on the
    summation order (pandas sums groups with Kahan's algorithm), move them by up to
    condition x 1e-16.
    """
    if len(x) < 2:
        return 1.0
    q = np.quantile(x[:-1], np.linspace(0, 1, r + 1))
    centers = (q[1:] + q[:-1]) / 2
    vander = np.vander(centers, m + 1)
    norms = np.sqrt((vander * vander).sum(axis=0))
    if np.ptp(centers) == 0 or not (norms > 0).all():
        return 1.0  # no fit: NaN on both sides
    return float(np.linalg.cond(vander / norms))


def synthetic_segments() -> list[np.ndarray]:
    rng = np.random.default_rng(42)
    segs = []
    for n in (1, 2, 3, 4, 5, 7, 11, 12, 49, 50, 51, 60, 97, 240, 1301):
        segs.append(rng.normal(size=n))
    segs.append(1000.0 + 300.0 * rng.normal(size=300))  # CO2-like large offset
    segs.append(1e5 + rng.normal(size=120).cumsum())  # energy counter: huge offset, tiny steps
    segs.append(np.full(30, 2.5))  # constant (dyadic: NumPy's mean is exact too)
    segs.append(np.full(1, 7.0))
    segs.append(np.round(20 + rng.normal(size=400), 1))  # quantised, many duplicates
    segs.append((rng.random(200) > 0.7).astype(float))  # on/off status
    segs.append(np.zeros(20))
    segs.append(np.arange(64, dtype=float) ** 1.5)
    return segs


def with_nans(segs: list[np.ndarray], seed: int = 1) -> tuple[np.ndarray, np.ndarray, list]:
    """Concatenate segments with NaN inserted; return flat grid, offsets and dropna'd slices."""
    rng = np.random.default_rng(seed)
    parts, clean = [], []
    for s in segs:
        g = s.copy()
        if len(g) > 3:
            g[rng.random(len(g)) < 0.05] = np.nan
        parts.append(g)
        clean.append(g[~np.isnan(g)])
    parts.append(np.full(5, np.nan))  # an era with no valid value at all
    clean.append(np.array([]))
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    return np.concatenate(parts), offsets, clean


def near_tie(calc: str, params: dict, x: np.ndarray) -> bool:
    """True when x may have a value within rounding of the feature's quantile threshold."""
    return len(x) > 0 and calc in THRESHOLD


def degenerate_trend(calc: str, params: dict, x: np.ndarray) -> bool:
    """scipy's linregress on a numerically constant series returns rounding noise for r."""
    if calc == "linear_trend":
        return len(x) > 0 and np.ptp(x) == 0
    if calc == "agg_linear_trend":
        cl = params["chunk_len"]
        if cl >= len(x):
            return False
        agg = fc._aggregate_on_chunks(x, params["f_agg"], cl)
        return np.ptp(agg) <= 1e-12 * max(1.0, np.max(np.abs(agg)))
    return False


def windows_with_ties(x: np.ndarray, d: int) -> bool:
    """Whether some window of d consecutive values holds equal values."""
    if len(x) < d:
        return False
    w = np.lib.stride_tricks.sliding_window_view(x, d)
    s = np.sort(w, axis=1)
    return bool((np.diff(s, axis=1) == 0).any())


def stable_permutation_entropy(x: np.ndarray, d: int) -> float:
    """Permutation entropy with ties ranked by position (stable sorts): the engine's rule."""
    if len(x) < d:
        return np.nan
    w = np.lib.stride_tricks.sliding_window_view(x, d)
    ranks = np.argsort(np.argsort(w, axis=1, kind="stable"), axis=1, kind="stable")
    _, counts = np.unique(ranks, axis=0, return_counts=True)
    p = counts / len(w)
    return float(-np.sum(p * np.log(p)))


def compare(grid, offsets, clean, *, allow_tie_share: float) -> None:
    matrix, specs, _ = compute_segment_matrix(
        grid, offsets, TSFRESH_SPECS, device="cpu", step="5min"
    )
    times = [np.flatnonzero(~np.isnan(grid[a:b])) for a, b in itertools.pairwise(offsets)]
    failures, ties, checked = [], 0, 0
    for j, spec in enumerate(specs):
        for i, x in enumerate(clean):
            got = matrix[i, j]
            if len(x) == 0:
                assert np.isnan(got), (spec.name, "empty era must give NaN")
                continue
            if spec.calculator in MEAN_CALCULATORS:
                # exact, not tsfresh's: its np.mean can be a rounding step off (see docstring)
                want = exact_features(x)[spec.name]
                if got != want:
                    failures.append((spec.name, i, len(x), got, want))
                continue
            want = tsfresh_value(spec, x, times[i])
            if spec.calculator == "permutation_entropy" and windows_with_ties(
                x, spec.params["dimension"]
            ):
                # tsfresh ranks ties with NumPy's unstable (SIMD) argsort: hardware-dependent;
                # the engine ranks them by position, checked against stable sorts instead
                want = stable_permutation_entropy(x, spec.params["dimension"])
            scale = max(1.0, float(np.max(np.abs(x))))
            rtol, atol = 1e-9, 1e-12 * scale
            if spec.calculator == "time_reversal_asymmetry_statistic":
                atol = 1e-12 * scale**3
            if spec.calculator in ("abs_energy", "c3"):
                atol = 1e-12 * scale ** (3 if spec.calculator == "c3" else 2)
            if spec.params.get("attr") == "pvalue":
                rtol = 1e-6
            if spec.calculator in ("friedrich_coefficients", "max_langevin_fixed_point"):
                rtol = max(rtol, 1e-15 * polyfit_condition(x, spec.params["m"], spec.params["r"]))
            if spec.params.get("attr") == "angle":
                atol = 1e-6  # degrees; angle of a coefficient that is ~0 in both is noise
            if np.isnan(want) and np.isnan(got):
                continue
            if np.isclose(got, want, rtol=rtol, atol=atol):
                continue
            if spec.calculator in THRESHOLD and near_tie(spec.calculator, spec.params, x):
                ties += 1
                continue
            if degenerate_trend(spec.calculator, spec.params, x) and np.isnan(got):
                continue
            failures.append((spec.name, i, len(x), got, want))
    assert not failures, f"{len(failures)} mismatches, first: {failures[:8]}"
    assert ties <= allow_tie_share * checked, f"too many tie cases: {ties} of {checked}"


def test_every_tsfresh_calculator_equals_tsfresh_on_synthetic_eras():
    grid, offsets, clean = with_nans(synthetic_segments())
    compare(grid, offsets, clean, allow_tie_share=0.0)


def read_knudjepsen(path: Path, days: int = 21) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=";", skiprows=[1, 2], decimal=",", nrows=days * 288 + 50)
    raw = raw.rename(columns={raw.columns[0]: "time"})
    t = pd.to_datetime(raw["time"], format="%d-%m-%Y %H:%M:%S")
    t = t.dt.tz_localize("Europe/Copenhagen", ambiguous="NaT", nonexistent="NaT")
    frame = raw.drop(columns="time").apply(pd.to_numeric, errors="coerce").astype(float)
    frame.index = pd.DatetimeIndex(t).tz_convert("UTC")
    frame = frame[frame.index.notna()]
    frame = frame[~frame.index.duplicated()]
    grid = pd.date_range(frame.index[0], frame.index[-1], freq="5min", name="time")
    return frame.reindex(grid)


@pytest.mark.slow  # tsfresh itself on a real month: about 3 min on 2 cores
@pytest.mark.realdata
@pytest.mark.skipif(not REAL_CSV.exists(), reason=f"real data not present at {REAL_CSV}")
def test_every_tsfresh_calculator_equals_tsfresh_on_real_data():
    frame = read_knudjepsen(REAL_CSV)
    frame.iloc[100:130, 0] = np.nan  # a gap that stayed missing
    cols = list(frame.columns)[:6]
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(np.arange(1, len(frame)), size=12, replace=False))
    bounds = np.concatenate([[0], cuts, [len(frame)]])
    parts, clean = [], []
    for a, b in itertools.pairwise(bounds):
        for c in cols:
            g = frame[c].to_numpy()[a:b]
            parts.append(g)
            clean.append(g[~np.isnan(g)])
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    compare(np.concatenate(parts), offsets, clean, allow_tie_share=0.01)


def test_extract_features_names_and_values_match():
    """One real tsfresh extract_features call: same column names, same values."""
    from tsfresh import extract_features

    rng = np.random.default_rng(7)
    segs = [rng.normal(size=n) + 50 for n in (40, 75, 130)]
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(3), [len(s) for s in segs]),
            "time": np.concatenate(
                [pd.date_range("2020-01-01", periods=len(s), freq="5min") for s in segs]
            ),
            "air": np.concatenate(segs),
        }
    )
    df.index = pd.DatetimeIndex(df["time"], name="stamp")  # timewise calculators read it
    settings = {}
    for s in TSFRESH_SPECS:
        settings.setdefault(s.calculator, [])
        if s.params:
            settings[s.calculator].append(dict(s.params))
    settings = {k: (v or None) for k, v in settings.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = extract_features(
            df,
            column_id="id",
            column_sort="time",
            default_fc_parameters=settings,
            n_jobs=0,
            disable_progressbar=True,
        )
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segs])])
    matrix, specs, _ = compute_segment_matrix(
        np.concatenate(segs), offsets, TSFRESH_SPECS, device="cpu", step="5min"
    )
    ours = pd.DataFrame(matrix, columns=["air__" + s.name for s in specs], index=ref.index)
    assert set(ours.columns) == set(ref.columns)
    ref = ref[ours.columns]
    pd.testing.assert_frame_equal(ours, ref.astype(float), rtol=1e-6, check_dtype=False)
