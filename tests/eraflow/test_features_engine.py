"""Registry contract, rolling windows vs pandas, coverage, the long schema and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.features import (
    FEATURE_COLUMNS,
    PROFILES,
    SEED_FEATURES,
    compute_features,
    compute_segment_matrix,
    feature_registry,
    parse_feature_name,
    profile_specs,
    to_wide,
)


def make_frame(step: str, days: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(
        "2015-09-07",
        periods=int(days * 86400 / pd.Timedelta(step).total_seconds()),
        freq=step,
        tz="UTC",
        name="time",
    )
    n = len(idx)
    values = pd.DataFrame(
        {
            "air_temp_c": 20 + rng.normal(size=n).cumsum() * 0.05,
            "co2_ppm": 900 + 300 * np.sin(np.arange(n) / 50) + rng.normal(size=n),
            "status": (rng.random(n) > 0.5).astype(float),
        },
        index=idx,
    )
    values.iloc[40:47, 0] = np.nan
    values.iloc[200:260, 1] = np.nan
    mask = pd.DataFrame(False, index=idx, columns=values.columns)
    mask.iloc[10:20, 0] = True
    return values, mask


def make_eras(index: pd.DatetimeIndex, cuts: list[int], level: str = "A") -> pd.DataFrame:
    bounds = [index[0], *[index[c] for c in cuts], index[-1] + (index[1] - index[0])]
    return pd.DataFrame(
        {
            "entity": "gh1",
            "level": level,
            "era_id": np.arange(len(bounds) - 1),
            "start": bounds[:-1],
            "end": bounds[1:],
            "rows": np.diff([0, *cuts, len(index)]),
        }
    )


# ---- registry ---------------------------------------------------------------------------------
def test_every_calculator_appears_in_every_profile_it_claims():
    for name, calc in feature_registry().items():
        assert calc.profiles, name
        for prof in calc.profiles:
            names = {s.name for s in profile_specs(prof)}
            missing = [s.name for s in calc.specs() if s.name not in names]
            assert not missing, (name, prof, missing)
    assert set(PROFILES) == {"minimal", "efficient", "comprehensive", "seeds"}
    eff = {s.name for s in profile_specs("efficient")}
    assert set(SEED_FEATURES) <= eff


def test_every_name_round_trips():
    for prof in PROFILES:
        for spec in profile_specs(prof):
            back = parse_feature_name(spec.name)
            assert back == spec
            assert back.name == spec.name
            assert dict(back.params) == dict(spec.params)
    assert parse_feature_name(
        'agg_linear_trend__attr_"slope"__chunk_len_5__f_agg_"mean"'
    ).params == {"attr": "slope", "chunk_len": 5, "f_agg": "mean"}


def test_tsfresh_names_are_tsfresh_names():
    names = {s.name for s in profile_specs("efficient")}
    for n in (
        "quantile__q_0.25",
        "mean",
        "autocorrelation__lag_1",
        "cid_ce__normalize_True",
        'agg_linear_trend__attr_"slope"__chunk_len_5__f_agg_"mean"',
        "large_standard_deviation__r_0.15000000000000002",
    ):
        assert n in names


@pytest.mark.parametrize(
    "settings_class",
    ["MinimalFCParameters", "EfficientFCParameters", "ComprehensiveFCParameters"],
)
def test_profile_is_tsfresh_settings_name_for_name(settings_class):
    """The engine's profile holds tsfresh's settings object, names taken from tsfresh's output.

    The names come from one ``extract_features`` call with tsfresh's settings class on a
    datetime-indexed series (so the timewise calculators run too), not from the registry.
    ``matrix_profile`` is in none of them: tsfresh drops it when its ``matrixprofile``
    dependency is missing, and that package does not build on current Python.
    """
    tsfresh = pytest.importorskip("tsfresh")
    import tsfresh.feature_extraction.settings as tsfresh_settings

    settings = getattr(tsfresh_settings, settings_class)()
    assert "matrix_profile" not in settings
    n = 120
    time = pd.date_range("2020-01-01", periods=n, freq="5min")
    frame = pd.DataFrame(
        {"id": 0, "time": time, "x": np.random.default_rng(0).normal(size=n)},
        index=pd.DatetimeIndex(time, name="stamp"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tsfresh.extract_features(
            frame,
            column_id="id",
            column_sort="time",
            default_fc_parameters=settings,
            n_jobs=0,
            disable_progressbar=True,
        )
    tsfresh_names = {c.removeprefix("x__") for c in out.columns}
    assert len(tsfresh_names) == len(out.columns) > 0
    profile = settings_class.removesuffix("FCParameters").lower()
    registry = feature_registry()
    engine_names = {s.name for s in profile_specs(profile) if registry[s.calculator].tsfresh}
    assert tsfresh_names <= engine_names, tsfresh_names - engine_names
    # beyond tsfresh's grid, a profile adds only the seed features (quartiles, for example)
    assert engine_names - tsfresh_names <= set(SEED_FEATURES)


def test_unknown_feature_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown feature calculator 'no_such'"):
        parse_feature_name("no_such__q_1")
    with pytest.raises(ConfigError, match="malformed"):
        parse_feature_name("quantile__q")
    with pytest.raises(ConfigError):
        profile_specs("huge")


# ---- rolling ------------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["5min", "10min"])
@pytest.mark.parametrize("feature_values", ["measured", "grid"])
def test_rolling_equals_pandas_rolling_within_each_era(step, feature_values):
    values, mask = make_frame(step, days=3)
    eras = make_eras(values.index, [30, 100, 101, 250])
    out = compute_features(
        values,
        mask,
        eras,
        entity="gh1",
        profile="seeds",
        device="cpu",
        feature_values=feature_values,
    )
    got = out.set_index(["era_id", "sensor", "feature"])["value"]
    step_td = pd.Timedelta(step)
    seen = values.mask(mask) if feature_values == "measured" else values  # filled: out
    checked = 0
    for _, era in eras.iterrows():
        sl = seen[(seen.index >= era["start"]) & (seen.index < era["end"])]
        for sensor in values.columns:
            for window in ("30min", "2h"):
                w = int(pd.Timedelta(window) / step_td)
                roll = sl[sensor].rolling(w)
                for stat, series in (
                    ("mean", roll.mean()),
                    ("std", roll.std()),
                    ("min", roll.min()),
                    ("max", roll.max()),
                ):
                    s = series.dropna().to_numpy()
                    for agg, ref in (
                        ("mean", np.mean),
                        ("std", np.std),
                        ("min", np.min),
                        ("max", np.max),
                    ):
                        want = ref(s) if len(s) else np.nan
                        name = f'rolling_{stat}__agg_"{agg}"__window_"{window}"'
                        val = got[(era["era_id"], sensor, name)]
                        # pandas' rolling std is an online add/remove update that loses
                        # ~1e-8 relative on offset data (900 ppm); ours is two-pass.
                        rtol = 1e-7 if stat == "std" else 1e-9
                        np.testing.assert_allclose(
                            val,
                            want,
                            rtol=rtol,
                            atol=1e-9,
                            err_msg=f"{step} {name} era {era['era_id']}",
                        )
                        checked += 1
    assert checked == len(eras) * 3 * 2 * 4 * 4


def test_rolling_std_is_exact_two_pass():
    from numpy.lib.stride_tricks import sliding_window_view

    values, _ = make_frame("5min", days=2)
    s = values["co2_ppm"].iloc[300:].to_numpy()
    m, _, _ = compute_segment_matrix(
        s,
        np.array([0, len(s)]),
        ['rolling_std__agg_"min"__window_"30min"', 'rolling_std__agg_"max"__window_"2h"'],
        step="5min",
        device="cpu",
    )
    exact6 = np.std(sliding_window_view(s, 6), axis=1, ddof=1)
    exact24 = np.std(sliding_window_view(s, 24), axis=1, ddof=1)
    np.testing.assert_allclose(m[0], [exact6.min(), exact24.max()], rtol=1e-12)


def test_window_not_a_multiple_of_step_is_a_config_error():
    values, mask = make_frame("10min", days=1)
    eras = make_eras(values.index, [50])
    with pytest.raises(ConfigError, match="not a whole multiple"):
        compute_features(
            values,
            mask,
            eras,
            entity="gh1",
            profile=['rolling_mean__agg_"mean"__window_"25min"'],
            device="cpu",
        )


# ---- coverage, NaN rule, schema ------------------------------------------------------------
def test_coverage_hand_computed():
    idx = pd.date_range("2020-01-01", periods=10, freq="5min", tz="UTC", name="time")
    values = pd.DataFrame(
        {"a": [1, 2, np.nan, 4, 5, 6, np.nan, np.nan, 9, 10.0], "b": [np.nan] * 10}, index=idx
    )
    mask = pd.DataFrame(False, index=idx, columns=values.columns)
    mask.iloc[[0, 4], 0] = True  # two filled values
    eras = make_eras(idx, [4])  # era 0: rows 0-3, era 1: rows 4-9
    out = compute_features(
        values, mask, eras, entity="gh1", profile=["coverage", "mean"], device="cpu"
    )
    v = out.set_index(["era_id", "sensor", "feature"])["value"]
    assert v[(0, "a", "coverage")] == pytest.approx(2 / 4)  # rows 1 and 3 measured
    assert v[(1, "a", "coverage")] == pytest.approx(3 / 6)  # rows 5, 8, 9
    assert v[(0, "b", "coverage")] == 0.0
    assert np.isnan(v[(0, "b", "mean")])  # no valid value: NaN
    assert v[(0, "a", "mean")] == pytest.approx((2 + 4) / 2)  # the measured values only
    on_grid = compute_features(
        values,
        mask,
        eras,
        entity="gh1",
        profile=["coverage", "mean"],
        device="cpu",
        feature_values="grid",
    ).set_index(["era_id", "sensor", "feature"])["value"]
    assert on_grid[(0, "a", "mean")] == pytest.approx((1 + 2 + 4) / 3)  # filled ones too
    assert on_grid[(0, "a", "coverage")] == pytest.approx(2 / 4)


def test_long_schema_and_wide_names():
    values, mask = make_frame("5min", days=1)
    eras = pd.concat(
        [make_eras(values.index, [100]), make_eras(values.index, [50, 100, 200], level="B")]
    )
    out = compute_features(values, mask, eras, entity="gh1", profile="minimal", device="cpu")
    assert tuple(out.columns) == FEATURE_COLUMNS
    assert out["era_id"].dtype == np.int64
    assert out["value"].dtype == np.float64
    assert set(out["engine"]) == {"numpy"}
    nfeat = len(profile_specs("minimal"))
    assert len(out) == len(eras) * 3 * nfeat
    assert not out.duplicated(["level", "era_id", "sensor", "feature"]).any()
    wide = to_wide(out)
    assert "co2_ppm__standard_deviation" in wide.columns
    assert len(wide) == len(eras)
    b1 = out.query("level == 'B' and era_id == 1 and sensor == 'co2_ppm' and feature == 'maximum'")
    assert b1["value"].item() == values["co2_ppm"].iloc[50:100].max()


def test_large_offset_variance_is_accurate():
    rng = np.random.default_rng(5)
    x = 1e9 + rng.normal(size=5000) * 1e-3  # cumsum-of-squares would lose every digit
    m, _, _ = compute_segment_matrix(
        x, np.array([0, 2500, 5000]), ["variance", "standard_deviation", "skewness"], device="cpu"
    )
    for i, sl in enumerate((slice(0, 2500), slice(2500, 5000))):
        np.testing.assert_allclose(m[i, 0], np.var(x[sl] - 1e9), rtol=1e-6)
        np.testing.assert_allclose(m[i, 2], pd.Series(x[sl] - 1e9).skew(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda v, m: (v, m.iloc[:-1]), DataError, "fill_mask has shape"),
        (lambda v, m: (v.tz_convert("Europe/Copenhagen"), m), DataError, "UTC"),
        (lambda v, m: (v.tz_localize(None), m.tz_localize(None)), DataError, "UTC"),
    ],
)
def test_bad_input_is_a_clear_error(mutate, exc, match):
    values, mask = make_frame("5min", days=1)
    eras = make_eras(values.index, [50])
    v, m = mutate(values, mask)
    with pytest.raises(exc, match=match):
        compute_features(v, m, eras, entity="gh1", profile="seeds", device="cpu")


def test_unknown_feature_in_compute_features():
    values, mask = make_frame("5min", days=1)
    with pytest.raises(ConfigError, match="unknown feature calculator"):
        compute_features(
            values,
            mask,
            make_eras(values.index, [50]),
            entity="gh1",
            profile=["mean", "meen"],
            device="cpu",
        )


def test_autocorrelation_at_lags_past_the_shared_table_equals_tsfresh():
    """Lags beyond the 40 computed at once widen the batch's table (in any order asked)."""
    from tsfresh.feature_extraction.feature_calculators import autocorrelation

    rng = np.random.default_rng(4)
    parts = [np.round(rng.normal(size=n).cumsum(), 2) for n in (30, 120, 700)]
    grid = np.concatenate(parts)
    offsets = np.array([0, 30, 150, 850])
    lags = [3, 45, 41, 200, 100, 0]
    names = [f"autocorrelation__lag_{lag}" for lag in lags]
    matrix, _, _ = compute_segment_matrix(grid, offsets, names, step="5min", device="cpu")
    for i, part in enumerate(parts):
        want = [autocorrelation(pd.Series(part), lag) for lag in lags]
        np.testing.assert_allclose(matrix[i], want, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_concat_feature_rows_keeps_labels_categorical_with_every_value() -> None:
    """Parts with different categories (and one of plain strings) join without losing a label."""
    from eraflow.stages.features import concat_feature_rows

    a = pd.DataFrame(
        {"sensor": pd.Categorical(["t", "rh"]), "feature": ["mean", "max"], "value": [1.0, 2.0]}
    )
    b = pd.DataFrame(
        {
            "sensor": pd.Categorical(["co2", "t"], categories=["t", "co2"]),
            "feature": pd.Categorical(["min", "mean"]),
            "value": [3.0, 4.0],
        }
    )
    out = concat_feature_rows([a, b])
    assert isinstance(out["sensor"].dtype, pd.CategoricalDtype)
    assert isinstance(out["feature"].dtype, pd.CategoricalDtype)
    assert out["sensor"].astype(str).tolist() == ["t", "rh", "co2", "t"]
    assert out["feature"].astype(str).tolist() == ["mean", "max", "min", "mean"]
    assert out["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
