"""The exact mean, and every decision against it, checked against exact rational arithmetic.

The expected side never comes from the engine: it is the mean ``Fraction(sum) / n`` of the
doubles (:func:`exact_features`, with :mod:`fractions`), or a value worked out by hand in the
test. tsfresh's own answers are pinned where its ``np.mean`` (pairwise summation) is a rounding
step off: those are the cases where the engine deliberately differs from tsfresh (README:
"Where eraflow deliberately differs from tsfresh"). The same holds for ``permutation_entropy``
on windows with ties: the engine ranks ties by position, tsfresh with NumPy's default argsort.

Importing this module needs neither tsfresh nor the ingest stack (pydantic): the GPU test
machine collects it for its GPU test, and the tests that call tsfresh import it themselves.
"""

from __future__ import annotations

import bisect
import importlib.util
import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from eraflow.stages.features import compute_segment_matrix, feature_registry, gpu_available
from eraflow.stages.features import exact as ex

MEAN_CALCULATORS = (
    "mean",
    "count_above_mean",
    "count_below_mean",
    "longest_strike_above_mean",
    "longest_strike_below_mean",
    "ratio_beyond_r_sigma",
    "symmetry_looking",
    "large_standard_deviation",
    "variance_larger_than_standard_deviation",
)
"""Every registered calculator that compares values (or its std, or its median) with the mean."""

HAVE_TSFRESH = importlib.util.find_spec("tsfresh") is not None
SPECS = [s for name in MEAN_CALCULATORS for s in feature_registry()[name].specs()]


# ---- the independent reference -------------------------------------------------------------------
def _longest_run(flag: np.ndarray) -> int:
    best = run = 0
    for f in flag.tolist():
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def exact_features(x: np.ndarray) -> dict[str, float]:
    """Every feature of :data:`SPECS` on the NaN-free ``x``, from the exact rational moments.

    ``m = Fraction(sum) / n`` and ``var = sum_sq / n - m^2`` of the doubles, exactly; the median
    is ``(a + b) / 2`` of the middle values, exactly; parameters ``r`` are the doubles the
    registry holds. Unique values are summed once (quantised data repeat), so a real month runs
    in seconds.
    """
    uniq, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    fu = [Fraction(float(u)) for u in uniq]
    cu = counts.tolist()
    n = int(x.size)
    s = sum((c * f for c, f in zip(cu, fu, strict=True)), Fraction(0))
    q = sum((c * f * f for c, f in zip(cu, fu, strict=True)), Fraction(0))
    m = s / n
    var = q / n - m * m
    sign = np.array([(f > m) - (f < m) for f in fu], dtype=np.int64)[inverse]
    # (x - m)^2 of the unique values, sorted with their counts: a threshold is one bisection
    dev = sorted(zip(((f - m) ** 2 for f in fu), cu, strict=True))
    dev_sq = [d for d, _ in dev]
    tail = [*np.cumsum([k for _, k in dev][::-1])[::-1].tolist(), 0]  # values from i on
    srt = np.sort(x)
    median = (Fraction(float(srt[(n - 1) // 2])) + Fraction(float(srt[n // 2]))) / 2
    spread = Fraction(float(srt[-1])) - Fraction(float(srt[0]))
    out: dict[str, float] = {}
    for spec in SPECS:
        c = spec.calculator
        r = Fraction(float(spec.params.get("r", 0.0)))
        if c == "mean":
            v = float(m)
        elif c == "count_above_mean":
            v = float((sign > 0).sum())
        elif c == "count_below_mean":
            v = float((sign < 0).sum())
        elif c == "longest_strike_above_mean":
            v = float(_longest_run(sign > 0))
        elif c == "longest_strike_below_mean":
            v = float(_longest_run(sign < 0))
        elif c == "ratio_beyond_r_sigma":  # |x - m| > r std  <=>  (x - m)^2 > r^2 var
            beyond = tail[bisect.bisect_right(dev_sq, r * r * var)]
            v = float(Fraction(beyond, n))
        elif c == "symmetry_looking":
            v = float(abs(m - median) < r * spread)
        elif c == "large_standard_deviation":  # std > r (max - min), both sides >= 0
            v = float(var > (r * spread) ** 2)
        else:  # variance_larger_than_standard_deviation: var > sqrt(var)  <=>  var > 1
            v = float(var > 1)
        out[spec.name] = v
    return out


def engine(segments: list[np.ndarray], device: str = "cpu") -> np.ndarray:
    """The engine's (segment x spec) matrix of :data:`SPECS` for NaN-free segments."""
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in segments])])
    matrix, specs, _ = compute_segment_matrix(
        np.concatenate(segments), offsets, SPECS, device=device, step="5min"
    )
    assert [s.name for s in specs] == [s.name for s in SPECS]
    return matrix


def mismatches(segments: list[np.ndarray], matrix: np.ndarray) -> list[tuple]:
    """``(segment, feature, engine, exact)`` wherever the engine differs from the reference."""
    bad = []
    for i, x in enumerate(segments):
        want = exact_features(x)
        for j, spec in enumerate(SPECS):
            if matrix[i, j] != want[spec.name]:
                bad.append((i, spec.name, float(matrix[i, j]), want[spec.name]))
    return bad


def named(matrix_row: np.ndarray) -> dict[str, float]:
    return {s.name: float(v) for s, v in zip(SPECS, matrix_row, strict=True)}


# ---- the cases of the issue, by hand -------------------------------------------------------------
def test_a_constant_80_03_era_has_no_value_above_or_below_its_mean():
    """66 x 80.03 (a curtain's constant era): the exact mean is 80.03, nothing is above it."""
    x = np.full(66, 80.03)
    got = named(engine([x])[0])
    assert got["mean"] == 80.03
    for name in ("count_above_mean", "count_below_mean"):
        assert got[name] == 0.0
    for name in ("longest_strike_above_mean", "longest_strike_below_mean"):
        assert got[name] == 0.0
    assert all(v == 0.0 for k, v in got.items() if k.startswith("ratio_beyond_r_sigma"))


def test_tsfresh_counts_every_value_of_the_constant_era_above_its_pairwise_mean():
    """Pinned: the difference is deliberate. NumPy's pairwise sum of 66 x 80.03 rounds down."""
    pytest.importorskip("tsfresh")
    from tsfresh.feature_extraction import feature_calculators as fc

    x = np.full(66, 80.03)
    assert np.mean(x) == 80.02999999999997 != 80.03
    assert fc.count_above_mean(x) == 66
    assert fc.count_below_mean(x) == 0
    assert fc.longest_strike_above_mean(x) == 66


def test_a_mean_that_cumulative_sums_put_one_step_off():
    """0.0, 5 x 0.05, 0.1 (an hourly CO2 status): the mean is exactly the double 0.05.

    By hand: the double 0.1 is exactly twice the double 0.05 (same mantissa), so the sum is
    exactly 7 x 0.05 and the mean the double 0.05 itself: one value above it (0.1), one below
    (0.0), five equal. A running sum rounds on the way (0.05 + 0.05 + 0.05 is not 3 x 0.05) and
    lands on 0.049999999999999996, below all five 0.05s: six values "above the mean".
    """
    x = np.array([0.0] + [0.05] * 5 + [0.1])
    assert Fraction(0.1) == 2 * Fraction(0.05)
    assert sum(map(Fraction, x.tolist())) / 7 == Fraction(0.05)  # the hand result, checked
    naive = np.cumsum(x)[-1] / x.size
    assert naive == 0.049999999999999996  # the co2_status mean
    got = named(engine([x])[0])
    assert got["mean"] == 0.05
    assert got["count_above_mean"] == 1.0
    assert got["count_below_mean"] == 1.0
    assert got["longest_strike_above_mean"] == 1.0
    assert got["longest_strike_below_mean"] == 1.0


def test_a_value_equal_to_the_rounded_mean_is_compared_with_the_exact_one():
    """0.1, 0.2, 0.3: the correctly rounded mean is the double 0.2, yet 0.2 lies above the mean.

    By hand, in doubles: 0.1 + 0.2 + 0.3 sums exactly to a value below 3 x 0.2 (0.1 and 0.2
    are stored slightly high, 0.3 slightly low, by less), so the exact mean is a hair below the
    double 0.2, which rounds to it. Two values are above the exact mean, one below; NumPy's
    mean, 0.20000000000000004, gives tsfresh one above.
    """
    x = np.array([0.1, 0.2, 0.3])
    exact = sum(map(Fraction, x.tolist())) / 3
    assert exact < Fraction(0.2) and float(exact) == 0.2  # the tie: mean == 0.2, exact < 0.2
    got = named(engine([x])[0])
    assert got["mean"] == 0.2
    assert got["count_above_mean"] == 2.0
    assert got["count_below_mean"] == 1.0
    assert got["longest_strike_above_mean"] == 2.0
    assert np.mean(x) == 0.20000000000000004
    if HAVE_TSFRESH:
        from tsfresh.feature_extraction import feature_calculators as fc

        assert fc.count_above_mean(x) == 1  # pinned: tsfresh's pairwise mean is a step high


def test_decisions_on_ties_of_the_variance():
    """Two values a, b: |x - mean| = std = |b - a| / 2 exactly, so none is beyond 1 std, the
    std is never above 0.5 (max - min), and with b - a = 2 the variance is exactly 1 (not
    above its square root)."""
    segs = [np.array([0.1, 0.3] * 7), np.array([20.37, 22.37] * 5)]
    assert Fraction(22.37) - Fraction(20.37) == 2
    got = [named(row) for row in engine(segs)]
    for row in got[:2]:
        assert row["ratio_beyond_r_sigma__r_1"] == 0.0
        assert row["ratio_beyond_r_sigma__r_0.5"] == 1.0
        assert row["large_standard_deviation__r_0.5"] == 0.0
        assert row["large_standard_deviation__r_0.45"] == 1.0
    assert got[1]["variance_larger_than_standard_deviation"] == 0.0  # variance exactly 1
    assert not mismatches(segs, engine(segs))


# ---- against the reference, broadly --------------------------------------------------------------
def hard_segments(seed: int = 3) -> list[np.ndarray]:
    """Segments that put naive means off: quantised readings, decimals, offsets, constants."""
    rng = np.random.default_rng(seed)
    segs = [np.full(66, 80.03), np.array([0.0] + [0.05] * 5 + [0.1]), np.array([0.1, 0.2, 0.3])]
    for n in (1, 2, 3, 7, 24, 66, 144, 1000):
        segs.append(np.round(20 + rng.normal(size=n), 1))  # temperatures, 0.1 steps
        segs.append(np.round(rng.random(n) * 4) / 20)  # hourly status shares 0..0.2
        segs.append(np.round(50 + 3 * rng.normal(size=n), 1))  # humidity
        segs.append(1e9 + np.round(rng.normal(size=n), 3))  # a counter: large offset
        segs.append(np.full(n, rng.choice([0.1, 0.7, 80.03, 1e-5, 1234.5678])))
        segs.append(rng.normal(size=n) * 10.0 ** rng.integers(-20, 20, size=n))
    return segs


def test_every_mean_decision_equals_the_exact_one():
    segs = hard_segments()
    assert not mismatches(segs, engine(segs))


def test_the_exact_sum_and_mean_on_wide_ranges():
    """Sums exact as expansions; the mean the double nearest the exact mean, even for values
    spanning 500 orders of magnitude, subnormals, and means far below the values (values
    above 2^900 are summed the plain way: ``exact_mean``'s docstring)."""
    rng = np.random.default_rng(8)
    segs = [
        rng.normal(size=500) * 10.0 ** rng.integers(-250, 250, size=500),
        np.array([1e-310, 3e-310, -2e-320]),
        np.array([1.0, -1.0, 2.0**-1074]),
        np.array([1e16, 1.0, -1e16, 3.0]),
        np.array([0.1] * 10**4),
        np.array([]),
    ]
    x = np.concatenate(segs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segs])]).astype(np.int64)
    n_int = np.diff(offsets)
    seg = np.repeat(np.arange(len(segs)), n_int)
    em = ex.exact_mean(np, x, seg, offsets, n_int, len(segs))
    for i, s in enumerate(segs):
        total = sum(map(Fraction, s.tolist()), Fraction(0))
        assert sum(map(Fraction, em.levels[:, i].tolist()), Fraction(0)) == total
        if s.size:
            assert em.mean[i] == float(total / s.size), i
            assert np.sign(total - s.size * Fraction(float(em.mean[i]))) == em.tie[i]
    assert np.isnan(em.mean[-1])


# ---- real exports --------------------------------------------------------------------------------
@pytest.mark.realdata
def test_aarslev_month_every_mean_decision_is_exact(greenhouse_dir: Path):
    """The README's Aarslev run (2014-03-15 .. 04-15, 10 minutes), through the real stages.

    Every (era, sensor) segment of every level and entity: each mean-dependent feature equals
    the exact reference. The month holds the cases the issue found (17 segments where
    ``np.sum(x > np.mean(x))`` is off, 4 with a value equal to the rounded but not the exact
    mean), so the check has teeth; both are asserted to be there.
    """
    import pandas as pd

    from eraflow.catalogue import load_catalogue
    from eraflow.common.grid import entity_frames
    from eraflow.stages.aggregate import aggregate
    from eraflow.stages.eras import EraConfig, EraWarning
    from eraflow.stages.eras.gaps import detect_eras_with_gaps
    from eraflow.stages.features import compute_features
    from eraflow.stages.gapfill import gap_fill
    from eraflow.stages.ingest import load_mapping, read_mapping

    catalogue = load_catalogue()
    lo, hi = pd.Timestamp("2014-03-15", tz="UTC"), pd.Timestamp("2014-04-15", tz="UTC")
    results = read_mapping(load_mapping("aarslev"), greenhouse_dir / "aarslev", start=lo, end=hi)
    grid = aggregate([r.frame for r in results], catalogue, freq="10min", start=lo, end=hi).grid
    frames = entity_frames(gap_fill(grid, catalogue, freq="10min").grid)
    checked = np_off = ties = 0
    bad = []
    for entity, (values, mask) in frames.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EraWarning)
            eras = detect_eras_with_gaps(values, mask, entity=entity, config=EraConfig())
        table = compute_features(values, mask, eras, entity=entity, profile=SPECS, device="cpu")
        keys = zip(table["level"], table["era_id"], table["sensor"], table["feature"], strict=True)
        got = dict(zip(keys, table["value"], strict=True))
        stamps = values.index
        for era in eras.itertuples():
            inside = (stamps >= era.start) & (stamps < era.end)
            rows = values[inside].mask(mask[inside].to_numpy(dtype=bool))  # measured values
            for sensor in values.columns:
                x = rows[sensor].to_numpy()
                x = x[~np.isnan(x)]
                if x.size == 0:
                    continue
                want = exact_features(x)
                for name, value in want.items():
                    checked += 1
                    if got[(era.level, era.era_id, sensor, name)] != value:
                        bad.append((entity, era.level, era.era_id, sensor, name, value))
                np_off += int(np.sum(x > np.mean(x)) != want["count_above_mean"])
                rounded = want["mean"]  # a value equal to it, though the exact mean is not
                ties += int(bool((x == rounded).any()) and Fraction(rounded) != _exact_mean(x))
    assert not bad, f"{len(bad)} of {checked} differ from the exact reference, first: {bad[:5]}"
    assert checked > 50_000
    assert np_off >= 10 and ties >= 1, (np_off, ties)


def _exact_mean(x: np.ndarray) -> Fraction:
    uniq, counts = np.unique(x, return_counts=True)
    total = sum((int(c) * Fraction(float(u)) for u, c in zip(uniq, counts, strict=True)))
    return Fraction(total) / x.size


# ---- CPU and GPU ---------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA device (CuPy absent or no GPU)")
def test_gpu_means_and_counts_are_bit_for_bit_the_cpus():
    """Exact sums do not depend on the order CUDA's atomics add in: same bits on both."""
    segs = hard_segments(seed=4)
    cpu = engine(segs, "cpu")
    gpu = engine(segs, "gpu")
    assert np.array_equal(cpu, gpu, equal_nan=True)
    assert not mismatches(segs, gpu)


# ---- permutation entropy: ties ranked by position ------------------------------------------------
def _entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts)


def test_permutation_entropy_ranks_ties_by_position():
    """2, 1, 0, 0, 3, 2, 0, 1 with dimension 4: five windows, by hand.

    Ranks with ties by position: (2,1,0,0) -> (3,2,0,1), (1,0,0,3) -> (2,0,1,3),
    (0,0,3,2) -> (0,1,3,2), (0,3,2,0) -> (0,3,2,1), (3,2,0,1) -> (3,2,0,1): the first and the
    last share a pattern, so the shares are 2/5, 1/5, 1/5, 1/5. A constant series has one
    pattern (entropy 0).
    """
    x = np.array([2.0, 1, 0, 0, 3, 2, 0, 1])
    specs = [s for s in feature_registry()["permutation_entropy"].specs()]
    matrix, specs, _ = compute_segment_matrix(
        np.concatenate([x, np.full(9, 4.2)]), np.array([0, 8, 17]), specs, device="cpu"
    )
    by_dim = {s.params["dimension"]: j for j, s in enumerate(specs)}
    assert matrix[0, by_dim[4]] == pytest.approx(_entropy([2, 1, 1, 1]), rel=1e-15)
    assert (matrix[1] == 0.0).all()


def test_tsfresh_ranks_ties_with_numpys_default_argsort():
    """The same series in tsfresh: its patterns come from ``np.argsort`` (default kind).

    On CPUs where NumPy dispatches that argsort to an unstable SIMD sort (AVX-512 here), the
    window (2,1,0,0) is ranked (3,2,1,0), so it no longer shares the last window's pattern: five
    patterns, entropy ln 5. Where NumPy's sort happens to keep ties in order, tsfresh agrees
    with the engine; either way the engine's value is the hand one above.
    """
    pytest.importorskip("tsfresh")
    from tsfresh.feature_extraction import feature_calculators as fc

    x = np.array([2.0, 1, 0, 0, 3, 2, 0, 1])
    windows = np.lib.stride_tricks.sliding_window_view(x, 4)
    stable_here = bool((np.argsort(windows) == np.argsort(windows, kind="stable")).all())
    got = fc.permutation_entropy(x, tau=1, dimension=4)
    if stable_here:
        assert got == pytest.approx(_entropy([2, 1, 1, 1]), rel=1e-15)
    else:
        assert got == pytest.approx(math.log(5), rel=1e-15)
        assert got != pytest.approx(_entropy([2, 1, 1, 1]))
