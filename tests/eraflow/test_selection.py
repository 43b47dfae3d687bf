"""Feature selection on constructed matrices whose expected outcome is known by construction,
with pandas' pairwise correlation and tsfresh's own select_features as references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.selection import (
    SELECTION_COLUMNS,
    _greedy_correlation,
    _pairwise_r,
    _standardise,
    align_target_to_eras,
    correlation_min_eras,
    mask_patterns,
    select,
    select_features_unsupervised,
    select_relevant,
)

N = 200


def era_index(n: int) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays(
        [["gh"] * n, ["A"] * n, np.arange(n, dtype=np.int64)], names=["entity", "level", "era_id"]
    )


def daily_eras(n: int, start: str = "2022-05-01") -> pd.DataFrame:
    days = pd.date_range(start, periods=n + 1, freq="1D", tz="UTC")
    return pd.DataFrame(
        {
            "entity": "gh",
            "level": "A",
            "era_id": np.arange(n, dtype=np.int64),
            "start": days[:-1],
            "end": days[1:],
        }
    )


@pytest.fixture(scope="module")
def constructed() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    x = rng.normal(size=N)
    p = rng.normal(size=N)
    # r = 1 / sqrt(1 + s^2) = 0.97  ->  s = sqrt(1 / 0.97^2 - 1)
    q = p + np.sqrt(1 / 0.97**2 - 1) * rng.normal(size=N)
    p_nan = p.copy()
    p_nan[:5] = np.nan  # fewer finite values: q (more values) wins although 'p' < 'q'
    u = rng.normal(size=N)
    v = 0.5 * u + np.sqrt(0.75) * rng.normal(size=N)
    mostly_nan = rng.normal(size=N)
    mostly_nan[: int(0.7 * N)] = np.nan
    ratio = rng.normal(size=N)
    ratio[[3, 50]] = np.inf
    cols = {
        "a__const": np.full(N, 3.0),
        "a__near_const": 1000.0 + 1e-9 * rng.normal(size=N),
        "a__mostly_nan": mostly_nan,
        "a__all_nan": np.full(N, np.nan),
        "b__x": x,
        "b__x_dup": 2.0 * x + 5.0,
        "b__x_neg": -x + 1e-6 * rng.normal(size=N),
        "c__p": p_nan,
        "c__q": q,
        "d__u": u,
        "d__v": v,
        "e__ratio": ratio,
    }
    return pd.DataFrame(cols, index=era_index(N))


EXPECTED_KEPT = ["b__x", "c__q", "d__u", "d__v", "e__ratio"]


def test_constructed_correlations_are_as_designed(constructed: pd.DataFrame) -> None:
    r = constructed.corr()  # pandas: pairwise complete
    assert 0.96 < r.at["c__p", "c__q"] < 0.98
    assert 0.4 < r.at["d__u", "d__v"] < 0.6
    assert r.at["b__x", "b__x_dup"] == pytest.approx(1.0)


def test_unsupervised_keeps_exactly_expected(constructed: pd.DataFrame) -> None:
    res = select_features_unsupervised(constructed)
    sel = res.selection.set_index("feature")
    assert list(res.selection.columns) == list(SELECTION_COLUMNS)
    assert res.selection["feature"].tolist() == list(constructed.columns)
    assert res.kept == EXPECTED_KEPT
    assert list(res.matrix.columns) == EXPECTED_KEPT
    pd.testing.assert_frame_equal(res.matrix, constructed[EXPECTED_KEPT])  # values untouched
    r_pq = constructed["c__p"].corr(constructed["c__q"])
    assert sel.at["a__const", "reason"] == "constant (value 3)"
    assert sel.at["a__near_const", "reason"].startswith("near-constant (relative variance")
    assert sel.at["a__mostly_nan", "reason"] == "too many NaN (70% of eras > 50%)"
    assert sel.at["a__all_nan", "reason"] == "all NaN"
    assert sel.at["b__x_dup", "reason"] == "correlated with b__x (r=1.000)"
    assert sel.at["b__x_neg", "reason"] == "correlated with b__x (r=-1.000)"
    assert sel.at["c__p", "reason"] == f"correlated with c__q (r={r_pq:.3f})"
    assert (sel.loc[EXPECTED_KEPT, "reason"] == "").all()


def test_unsupervised_independent_of_column_order_and_blocks(constructed) -> None:
    ref = select_features_unsupervised(constructed)
    shuffled = constructed[list(reversed(constructed.columns))]
    res = select_features_unsupervised(shuffled, block_size=2)
    assert sorted(res.kept) == sorted(ref.kept)
    a = ref.selection.set_index("feature").sort_index()
    b = res.selection.set_index("feature").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_thresholds_move_the_decisions(constructed) -> None:
    # 0.98 lets the 0.97 pair through; 0.4 removes one of the 0.5 pair (d__u: first by name)
    assert "c__p" in select_features_unsupervised(constructed, correlation_threshold=0.98).kept
    res = select_features_unsupervised(constructed, correlation_threshold=0.4)
    assert "d__u" in res.kept and "d__v" not in res.kept
    # 1.0 disables the correlation filter; a laxer NaN limit keeps the 70%-NaN feature
    assert "b__x_dup" in select_features_unsupervised(constructed, correlation_threshold=1.0).kept
    assert "a__mostly_nan" in select_features_unsupervised(constructed, max_nan_fraction=0.8).kept
    # 0 variance threshold: the near-constant one (1e-12 relative noise) survives
    assert "a__near_const" in select_features_unsupervised(constructed, variance_threshold=0).kept


def test_pairwise_r_equals_pandas_pairwise_complete() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 1))
    x = base + rng.normal(scale=[0.1, 0.5, 1.0, 3.0, 0.2, 1.0], size=(40, 6))
    x[:, 2:][rng.random((40, 4)) < 0.25] = np.nan  # columns 0, 1 complete: both code paths
    x[:, 5] = np.nan
    x[:2, 5] = [1.0, 2.0]  # only two finite values: fewer than min_overlap -> "not correlated"
    z, m = _standardise(x)
    ref = pd.DataFrame(x).corr(min_periods=3).fillna(0.0).to_numpy()
    np.testing.assert_allclose(_pairwise_r(np, z, m, z, m, 3), ref, rtol=1e-10, atol=1e-12)
    # blocks: complete x incomplete and incomplete x complete
    r = _pairwise_r(np, z[:, :2], m[:, :2], z[:, 2:], m[:, 2:], 3)
    np.testing.assert_allclose(r, ref[:2, 2:], rtol=1e-10, atol=1e-12)
    # the pattern-grouped evaluation (few NaN patterns) against the pairwise sums
    grouped = _pairwise_r(np, z, m, z, m, 3, max_pattern_pairs=10**6)
    sums = _pairwise_r(np, z, m, z, m, 3, max_pattern_pairs=0)
    np.testing.assert_allclose(grouped, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sums, ref, rtol=1e-10, atol=1e-12)


def test_pairwise_r_shared_nan_patterns_equals_pandas() -> None:
    # features of one sensor share its empty eras: 3 patterns over 12 columns
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 1)) + rng.normal(scale=0.7, size=(50, 12))
    x[[1, 7, 30], :4] = np.nan
    x[10:20, 4:8] = np.nan
    x[5, 5] = x[5, 4]  # not a pattern change, just a value
    z, m = _standardise(x)
    ref = pd.DataFrame(x).corr(min_periods=3).to_numpy()
    for pairs in (0, 10**6):
        r = _pairwise_r(np, z, m, z, m, 3, max_pattern_pairs=pairs)
        np.testing.assert_allclose(r, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [1, 7, 8, 9, 1334])
def test_mask_patterns_equal_numpy_unique_rows(rows: int) -> None:
    # the reference: np.unique over the boolean masks as rows (ids in lexicographic order);
    # row counts off a multiple of 8 leave padding bits in the packed masks
    rng = np.random.default_rng(rows)
    mask = rng.random((rows, 300)) < 0.7
    mask[:, 100:200] = mask[:, rng.integers(0, 5, 100)]  # columns sharing five masks
    expected = np.unique(mask.T, axis=0, return_inverse=True)[1].reshape(-1)
    np.testing.assert_array_equal(mask_patterns(mask), expected)
    assert mask_patterns(np.zeros((rows, 0), dtype=bool)).shape == (0,)


@pytest.mark.parametrize(("block_size", "kept_chunk"), [(1024, 2048), (7, 5), (1, 1)])
def test_greedy_correlation_equals_a_plain_greedy_over_pandas_r(
    block_size: int, kept_chunk: int
) -> None:
    # 60 features from 8 sources with noise and NaN patterns: many drops, chains of partners
    rng = np.random.default_rng(11)
    base = rng.normal(size=(80, 8))
    x = base[:, rng.integers(0, 8, 60)] + rng.normal(
        scale=rng.uniform(0.05, 1.0, 60), size=(80, 60)
    )
    x[rng.random((80, 60)) < 0.1] = np.nan
    x[:15, 20:35] = np.nan
    names = [f"s__f{j:02d}" for j in range(60)]
    r = pd.DataFrame(x).corr(min_periods=3).fillna(0.0).to_numpy()
    # the reference: visit columns in the given order; drop one whose largest |r| with any
    # column kept so far exceeds 0.9, naming the first kept column of that largest |r|
    kept: list[int] = []
    expected: dict[str, str] = {}
    for j in range(60):
        strength = np.abs(r[j, kept]) if kept else np.zeros(0)
        if strength.size and strength.max() > 0.9:
            partner = kept[int(strength.argmax())]
            expected[names[j]] = f"correlated with {names[partner]} (r={r[j, partner]:.3f})"
        else:
            kept.append(j)
    assert 15 < len(expected) < 50
    z, m = _standardise(x)
    got, _ = _greedy_correlation(
        z,
        m,
        names,
        threshold=0.9,
        min_overlap=3,
        device="cpu",
        block_size=block_size,
        kept_chunk=kept_chunk,
    )
    assert got == expected


@pytest.mark.gpu
def test_gpu_selection_equals_cpu(constructed) -> None:
    rng = np.random.default_rng(8)
    big = pd.DataFrame(rng.normal(size=(50, 300)), columns=[f"g__f{i:03d}" for i in range(300)])
    big.iloc[:, 100:200] = big.iloc[:, :100].to_numpy() + 0.05 * rng.normal(size=(50, 100))
    big.iloc[rng.integers(0, 50, 40), rng.integers(0, 300, 40)] = np.nan
    for frame in (constructed, big):
        cpu = select_features_unsupervised(frame, device="cpu", block_size=64)
        gpu = select_features_unsupervised(frame, device="gpu", block_size=64)
        pd.testing.assert_frame_equal(cpu.selection, gpu.selection)


# ------------------------------------------------------------------------------ supervised


def make_supervised(n: int = 60, seed: int = 5):
    """n daily eras; the target is a 10-min series whose per-era mean is 2*rel + noise."""
    rng = np.random.default_rng(seed)
    rel = rng.normal(size=n)
    cols = {"s__rel": rel} | {f"n__noise_{k:02d}": rng.normal(size=n) for k in range(20)}
    cols["s__const"] = np.ones(n)
    matrix = pd.DataFrame(cols, index=era_index(n))
    eras = daily_eras(n)
    y_era = 2.0 * rel + 0.5 * rng.normal(size=n)
    times = pd.date_range(
        eras["start"].iloc[0], eras["end"].iloc[-1], freq="10min", inclusive="left"
    )
    day = (times - times[0]) // pd.Timedelta("1D")
    wiggle = np.tile(np.r_[np.linspace(-1, 1, 72), -np.linspace(-1, 1, 72)], n)  # mean 0 a day
    target = pd.Series(np.asarray(y_era)[day] + wiggle, index=times, name="yield")
    return matrix, eras, target, y_era


def test_align_target_by_time_hand_values() -> None:
    eras = pd.DataFrame(
        {
            "entity": "gh",
            "level": ["A", "B", "B"],
            "era_id": np.array([0, 0, 1], dtype=np.int64),
            "start": pd.to_datetime(
                ["2022-01-01 00:00", "2022-01-01 00:00", "2022-01-01 06:00"], utc=True
            ),
            "end": pd.to_datetime(
                ["2022-01-01 12:00", "2022-01-01 06:00", "2022-01-01 12:00"], utc=True
            ),
        }
    )
    hours = pd.date_range("2022-01-01", periods=24, freq="1h", tz="UTC")
    target = pd.Series(np.arange(24.0), index=hours)
    y = align_target_to_eras(target, eras)
    # half-open eras: hour 6 belongs to B/1, not B/0; the A era spans both B eras
    assert y.tolist() == [5.5, 2.5, 8.5]
    assert y.index.names == ["entity", "level", "era_id"]
    assert align_target_to_eras(target, eras, "sum").tolist() == [66.0, 15.0, 51.0]
    assert align_target_to_eras(target, eras, "max").tolist() == [11.0, 5.0, 11.0]
    # a target in another time zone is the same instants
    local = target.tz_convert("Europe/Copenhagen")
    pd.testing.assert_series_equal(align_target_to_eras(local, eras), y)
    # eras with fewer than min_samples samples get NaN
    sparse = target.iloc[[1, 7, 8]]
    assert align_target_to_eras(sparse, eras, min_samples=2).isna().tolist() == [
        False,
        True,
        False,
    ]


def test_align_target_shuffled_and_other_sampling_rate() -> None:
    _, eras, target, y_era = make_supervised()
    y = align_target_to_eras(target, eras)
    np.testing.assert_allclose(y.to_numpy(), y_era, atol=1e-9)
    shuffled = target.sample(frac=1.0, random_state=1)
    assert not shuffled.index.is_monotonic_increasing
    np.testing.assert_allclose(
        align_target_to_eras(shuffled, eras).to_numpy(), y.to_numpy(), rtol=1e-12
    )
    hourly = target.iloc[::6]  # 1-hour samples (a subset of the 10-min ones) of the same target
    brute = [
        hourly[(hourly.index >= s) & (hourly.index < e)].mean()
        for s, e in zip(eras["start"], eras["end"], strict=True)
    ]
    np.testing.assert_allclose(align_target_to_eras(hourly, eras).to_numpy(), brute, rtol=1e-12)


def test_relevant_kept_noise_dropped_and_matches_tsfresh() -> None:
    from tsfresh.feature_selection import select_features

    matrix, eras, target, _ = make_supervised()
    y = align_target_to_eras(target, eras)
    res = select_relevant(matrix, y, fdr_level=0.05)
    assert res.kept == ["s__rel"]
    sel = res.selection.set_index("feature")
    assert sel.at["s__rel", "reason"].startswith("relevant (p=")
    assert sel.at["n__noise_00", "reason"].startswith("not relevant (p=")
    assert sel.at["s__const", "reason"] == "not relevant (constant on the eras with a target)"
    ref = select_features(
        matrix.reset_index(drop=True), y.reset_index(drop=True), fdr_level=0.05, n_jobs=0
    )
    assert list(ref.columns) == res.kept


def test_shuffled_target_same_selection() -> None:
    matrix, eras, target, _ = make_supervised()
    a = select(matrix, eras, target=target)
    b = select(matrix, eras, target=target.sample(frac=1.0, random_state=3))
    assert a.kept == b.kept == ["s__rel"]
    # eras given in another order: the target is matched by era key, not by row position
    c = select(matrix.iloc[::-1], eras.iloc[::-1], target=target)
    assert c.kept == ["s__rel"]


def test_select_end_to_end_reasons(constructed) -> None:
    matrix, eras, target, _ = make_supervised()
    matrix = matrix.assign(s__rel_copy=matrix["s__rel"] * 3 - 1)
    res = select(matrix, eras, target=target)
    sel = res.selection.set_index("feature")
    assert res.kept == ["s__rel"]
    assert sel.at["s__const", "reason"].startswith("constant")
    assert sel.at["s__rel_copy", "reason"] == "correlated with s__rel (r=1.000)"
    assert sel.at["n__noise_03", "reason"].startswith("not relevant")
    assert res.selection["feature"].tolist() == list(matrix.columns)
    assert list(res.matrix.columns) == ["s__rel"]
    # classification: an event target (any hour above 1 in the era)
    event = (target > 1.0).astype(float)
    res = select(matrix, eras, target=event, how="max", ml_task="classification")
    assert "s__rel" in res.kept and not any(k.startswith("n__") for k in res.kept)


def test_bad_input() -> None:
    matrix, eras, target, _ = make_supervised()
    with pytest.raises(DataError, match="DatetimeIndex"):
        align_target_to_eras(target.reset_index(drop=True), eras)
    with pytest.raises(DataError, match="naive"):
        align_target_to_eras(target.tz_localize(None), eras)
    with pytest.raises(DataError, match="overlaps none of the 60 eras"):
        align_target_to_eras(target.set_axis(target.index + pd.Timedelta("400D")), eras)
    with pytest.raises(ConfigError, match="how must be one of"):
        align_target_to_eras(target, eras, "mode")
    y = align_target_to_eras(target, eras)
    few = select_relevant(matrix.iloc[:8], y).selection  # too few to test: kept, saying so
    assert few["kept"].all() and (few["eras"] == 8).all()
    assert set(few["reason"]) == {"too few eras (n=8) for the relevance tests (needs 10)"}
    with pytest.raises(DataError, match="constant"):
        select_relevant(matrix, y * 0.0 + 1.0)
    with pytest.raises(DataError, match="indexed by"):
        select_relevant(matrix, y.droplevel("entity"))
    with pytest.raises(ConfigError, match="needs the eras"):
        select(matrix, target=target)
    with pytest.raises(ConfigError, match="correlation_threshold"):
        select_features_unsupervised(matrix, correlation_threshold=0)
    with pytest.raises(DataError, match="numeric"):
        select_features_unsupervised(matrix.assign(s__rel="x"))
    with pytest.raises(DataError, match="no rows"):
        select_features_unsupervised(matrix.iloc[:0])


def _exact_r_pair(n_half: int, flips: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Two balanced +-1 columns (mean 0, population std 1, exactly) that disagree on ``flips``
    rows: r = (agreeing - disagreeing) / n, an exact binary fraction."""
    x = np.repeat([1.0, -1.0], n_half)
    y = x.copy()
    y[n_half - flips // 2 : n_half + flips // 2] *= -1  # as many +1 as -1 flipped: balanced
    n = 2 * n_half
    return 3.0 * x + 10.0, 0.5 * y - 2.0, (n - 2 * flips) / n  # affine: r unchanged


@pytest.mark.parametrize(("n_half", "flips", "r"), [(4, 2, 0.5), (8, 2, 0.75)])
@pytest.mark.parametrize("block_size", [1024, 1])  # within one block, and kept vs next block
def test_correlation_exactly_at_the_threshold_is_kept(n_half, flips, r, block_size) -> None:
    """``|r| > threshold`` drops: at ``threshold == r`` both stay, just below it one goes."""
    x, y, want = _exact_r_pair(n_half, flips)
    assert want == r
    # by hand: the +-1 columns agree on n - flips rows and disagree on flips
    assert np.sum(np.sign(x - 10) == np.sign(y + 2)) == 2 * n_half - flips
    matrix = pd.DataFrame({"a__x": x, "b__y": y}, index=era_index(len(x)))
    # the r this code computes is exactly the representable value, not r +- 1 ulp
    z, m = _standardise(matrix.to_numpy())
    assert _pairwise_r(np, z, m, z, m, 3)[0, 1] == r
    # the threshold's semantics on few eras: the evidence minimum is lifted (tested below)
    at = select_features_unsupervised(
        matrix, correlation_threshold=r, block_size=block_size, min_eras=3
    )
    assert at.kept == ["a__x", "b__y"]
    below = np.nextafter(r, 0.0)
    res = select_features_unsupervised(
        matrix, correlation_threshold=below, block_size=block_size, min_eras=3
    )
    assert res.kept == ["a__x"]
    sel = res.selection.set_index("feature")
    assert sel.at["b__y", "reason"] == f"correlated with a__x (r={r:.3f})"


def _chance_of_any_pair(n: int, features: int, threshold: float) -> float:
    """Bonferroni bound on a spurious |r| > threshold among the pairs, from r's null density.

    Independent of the code: integrates the exact null density of r on n eras,
    f(r) = (1 - r^2)^((n-4)/2) / B(1/2, (n-2)/2), over |r| > threshold.
    """
    from scipy.integrate import quad
    from scipy.special import beta

    density = lambda r: (1 - r * r) ** ((n - 4) / 2) / beta(0.5, (n - 2) / 2)  # noqa: E731
    tail = 2 * quad(density, threshold, 1.0)[0]
    return features * (features - 1) / 2 * tail


@pytest.mark.parametrize("features", [3, 4, 100, 14_000])
def test_correlation_minimum_is_the_first_n_where_chance_is_below_the_level(features) -> None:
    needed = correlation_min_eras(features, 0.95, 0.05)
    assert _chance_of_any_pair(needed, features, 0.95) <= 0.05
    assert _chance_of_any_pair(needed - 1, features, 0.95) > 0.05


def test_selection_rows_say_on_how_many_eras_each_decision_rests() -> None:
    n = 30
    rng = np.random.default_rng(5)
    base = rng.normal(size=n)
    holes = base.copy()
    holes[:4] = np.nan  # 26 finite eras
    matrix = pd.DataFrame(
        {
            "a__base": base,
            "a__twin": np.where(np.arange(n) < 10, np.nan, 2 * base + 1),  # 20 finite, r = 1
            "b__noise": rng.normal(size=n),
            "c__const": np.full(n, 7.0),
            "d__empty": np.where(np.arange(n) < 20, np.nan, 1.0 * np.arange(n)),  # 67 % NaN
            "e__holes": np.where(np.isnan(holes), np.nan, rng.normal(size=n)),
        },
        index=era_index(n),
    )
    res = select_features_unsupervised(matrix)
    sel = res.selection.set_index("feature")
    # a__base has more finite eras, so it is kept first and drops its twin on their 20 shared
    assert sel.at["a__twin", "reason"].startswith("correlated with a__base")
    assert sel["eras"].to_dict() == {
        "a__base": 30,  # kept: its finite eras
        "a__twin": 20,  # dropped: the eras both of the pair have
        "b__noise": 30,
        "c__const": 30,  # constant on its 30 finite eras
        "d__empty": 30,  # too many NaN: over all the eras
        "e__holes": 26,
    }


def test_too_few_eras_keeps_the_survivors_and_says_so() -> None:
    """On 4 eras with 3 features, |r| > 0.95 is a coin toss: the filter does not decide."""
    rng = np.random.default_rng(2)
    matrix = pd.DataFrame(
        {"a__x": [1.0, 2.0, 3.0, 4.0], "b__y": [2.0, 4.1, 6.0, 8.2], "c__z": rng.normal(size=4)},
        index=era_index(4),
    )
    needed = correlation_min_eras(3, 0.95, 0.05)
    assert needed > 4
    res = select_features_unsupervised(matrix)
    assert res.kept == ["a__x", "b__y", "c__z"]  # b__y = 2 a__x +- noise survives, undecided
    reasons = set(res.selection["reason"])
    assert reasons == {f"too few eras (n=4) for the correlation filter (needs {needed})"}
    assert (res.selection["eras"] == 4).all()


def test_features_of_the_target_itself_are_not_tested() -> None:
    """The target sensor's own features are relevant by construction: dropped, untested."""
    matrix, eras, target, _ = make_supervised()
    y = align_target_to_eras(target, eras)
    res = select_relevant(matrix.drop(columns="s__const"), y, leaking=["s__rel"])
    sel = res.selection.set_index("feature")
    assert not sel.at["s__rel", "kept"]
    assert sel.at["s__rel", "reason"] == "computed from the target (relevant by construction)"
    assert "s__rel" not in res.matrix.columns
    assert (sel["eras"] == 60).all()  # every decision rests on the 60 eras with a target
    # the 20 noise features are still tested: at fdr 0.05 none of them is relevant
    assert sel.loc[sel.index.str.startswith("n__"), "reason"].str.startswith("not relevant").all()


def _fdr_kept(p: dict[str, float], level: float, dependent: bool) -> set[str]:
    """Benjamini-Hochberg (or -Yekutieli) by hand: the largest rank k with p_(k) <= k/m q."""
    names = sorted(p, key=p.get)
    m = len(names)
    q = level / (sum(1 / i for i in range(1, m + 1)) if dependent else 1.0)
    passed = [k for k in range(1, m + 1) if p[names[k - 1]] <= k / m * q]
    return set(names[: max(passed)]) if passed else set()


def test_benjamini_hochberg_or_yekutieli_as_asked() -> None:
    """BH keeps a moderately related feature that BY (valid under dependence) does not."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(1)
    n = 60
    y = rng.normal(size=n)
    cols = {f"s__w{k}": y + s * rng.normal(size=n) for k, s in enumerate([1.2, 1.4, 1.6, 1.8])}
    cols |= {f"n__noise_{k:02d}": rng.normal(size=n) for k in range(16)}
    matrix = pd.DataFrame(cols, index=era_index(n))
    target = pd.Series(y, index=matrix.index)
    p = {name: float(kendalltau(col, y).pvalue) for name, col in cols.items()}
    for independent in (False, True):
        res = select_relevant(
            matrix, target, ml_task="regression", hypotheses_independent=independent
        )
        assert set(res.kept) == _fdr_kept(p, 0.05, dependent=not independent)
    assert _fdr_kept(p, 0.05, dependent=False) > _fdr_kept(p, 0.05, dependent=True)
