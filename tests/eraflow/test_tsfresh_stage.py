"""The tsfresh stage against direct ``tsfresh.extract_features`` calls on independently built
slices, the engine/stage split (union = full profile, no duplicates), the NaN/fill rules, and
bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.features import FEATURE_COLUMNS, compute_features, parse_feature_name
from eraflow.stages.tsfresh_stage import (
    engine_profile_names,
    engine_tsfresh_names,
    settings_names,
    stage_settings,
    subtract_features,
    tsfresh_features,
    tsfresh_settings,
)

tsfresh = pytest.importorskip("tsfresh")
from tsfresh.feature_extraction import (  # noqa: E402
    EfficientFCParameters,
    MinimalFCParameters,
)
from tsfresh.feature_extraction.settings import from_columns  # noqa: E402

STEP = pd.Timedelta("5min")
# catalogue profiles: air_temp_c -> efficient, outside_temp_c -> minimal
EFF, MIN = "air_temp_c", "outside_temp_c"


def make_grid() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Three eras of unequal length (the last one short), NaN holes, filled runs, and one
    (era, sensor) with no value at all."""
    rng = np.random.default_rng(7)
    n = 130
    idx = pd.date_range("2021-03-01", periods=n, freq=STEP, tz="UTC", name="time")
    air = 20 + 0.2 * rng.normal(size=n).cumsum() + np.sin(np.arange(n) / 9)
    out = 5 + rng.normal(size=n)
    values = pd.DataFrame({EFF: air, MIN: out}, index=idx)
    fill = pd.DataFrame(False, index=idx, columns=values.columns)
    values.iloc[5:9, 0] = np.nan  # long gap: stays missing
    fill.iloc[20:26, 0] = True  # values written by gap-fill
    fill.iloc[70:73, 1] = True
    values.iloc[100:120, 1] = np.nan  # era 2 (rows 100..119) of the minimal sensor is empty
    bounds = [0, 60, 100, 120]
    eras = pd.DataFrame(
        {
            "entity": "gh1",
            "level": ["B", "B", "C"],
            "era_id": np.array([3, 4, 11], dtype=np.int64),
            "start": idx[bounds[:-1]],
            "end": idx[bounds[1:]],
        }
    )
    # another entity's era must be ignored
    other = eras.iloc[:1].assign(entity="gh2", era_id=99)
    return values, fill, pd.concat([eras, other], ignore_index=True)


def direct_tsfresh(
    values: pd.DataFrame,
    fill: pd.DataFrame,
    eras: pd.DataFrame,
    sensor: str,
    settings,
    *,
    include_filled: bool = True,
) -> pd.DataFrame:
    """One extract_features call per sensor on hand-built slices (boolean time masks, dropna)."""
    parts = []
    for _, era in eras[eras["entity"] == "gh1"].iterrows():
        inside = (values.index >= era["start"]) & (values.index < era["end"])
        s = values.loc[inside, sensor]
        if not include_filled:
            s = s[~fill.loc[inside, sensor]]
        s = s.dropna()
        parts.append(
            pd.DataFrame(
                {"id": f"{era['level']}/{era['era_id']}", "t": s.index, sensor: s.to_numpy()},
                index=s.index.rename(None),
            )
        )
    frame = pd.concat(parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tsfresh.extract_features(
            frame,
            column_id="id",
            column_sort="t",
            default_fc_parameters=settings,
            n_jobs=0,
            disable_progressbar=True,
        )


def assert_matches_direct(stage: pd.DataFrame, direct: pd.DataFrame, sensor: str) -> int:
    part = stage[stage["sensor"] == sensor]
    keys = part["level"] + "/" + part["era_id"].astype(str)
    expected = [direct.at[k, f"{sensor}__{f}"] for k, f in zip(keys, part["feature"], strict=True)]
    np.testing.assert_allclose(part["value"].to_numpy(), expected, rtol=1e-9, atol=0)
    return len(part)


@pytest.fixture(scope="module")
def grid():
    return make_grid()


@pytest.fixture(scope="module")
def full_stage(grid) -> pd.DataFrame:
    values, fill, eras = grid
    return tsfresh_features(values, fill, eras, entity="gh1", engine_provides=())


def test_schema_and_catalogue_profiles(full_stage: pd.DataFrame) -> None:
    assert list(full_stage.columns) == list(FEATURE_COLUMNS)
    assert full_stage["era_id"].dtype == np.int64 and full_stage["value"].dtype == np.float64
    assert set(full_stage["engine"]) == {"tsfresh"} and set(full_stage["entity"]) == {"gh1"}
    assert 99 not in set(full_stage["era_id"])
    per = full_stage.groupby(["era_id", "sensor"]).size()
    # the whole efficient profile for air temperature (ADF names carry autolag; the rest
    # follow the settings), the minimal profile (10) for outside temperature
    assert per[(3, EFF)] == per[(4, EFF)] == per[(11, EFF)] == 782
    assert per[(3, MIN)] == per[(4, MIN)] == 10
    # era 11 of the minimal sensor has no value left: no rows
    assert (11, MIN) not in per.index
    assert not full_stage.duplicated(["era_id", "sensor", "feature"]).any()


def test_values_equal_direct_tsfresh_per_sensor_profile(grid, full_stage) -> None:
    values, fill, eras = grid
    d_eff = direct_tsfresh(values, fill, eras, EFF, EfficientFCParameters())
    d_min = direct_tsfresh(values, fill, eras, MIN, MinimalFCParameters())
    n = assert_matches_direct(full_stage, d_eff, EFF)
    n += assert_matches_direct(full_stage, d_min, MIN)
    assert n == len(full_stage)
    # every column of the direct calls is in the stage (names as tsfresh writes them)
    got = {(s + "__" + f) for s, f in zip(full_stage["sensor"], full_stage["feature"], strict=True)}
    assert got == set(d_eff.columns) | set(d_min.columns)
    # index-based calculators saw real timestamps (slope per hour of a ~20 °C series)
    assert 'linear_trend_timewise__attr_"slope"' in set(full_stage["feature"])


def test_include_filled_false_drops_filled_values(grid) -> None:
    values, fill, eras = grid
    out = tsfresh_features(
        values,
        fill,
        eras,
        entity="gh1",
        profile="minimal",
        include_filled=False,
        engine_provides=(),
    )
    for sensor in (EFF, MIN):
        direct = direct_tsfresh(
            values, fill, eras, sensor, MinimalFCParameters(), include_filled=False
        )
        assert assert_matches_direct(out, direct, sensor) > 0
    # and the filled values did count with include_filled=True: lengths differ by the fills
    length = out[out["feature"] == "length"].set_index(["era_id", "sensor"])["value"]
    assert length[(3, EFF)] == 60 - 4 - 6 and length[(4, MIN)] == 40 - 3


def test_engine_union_is_full_profile_without_duplicates(grid) -> None:
    values, fill, eras = grid
    # the efficient engine holds tsfresh's whole efficient catalogue: nothing is left to tsfresh
    assert tsfresh_features(values, fill, eras, entity="gh1").empty
    # an engine run on "minimal" leaves the rest of each sensor's profile to the stage
    provides = engine_profile_names("minimal")
    stage = tsfresh_features(values, fill, eras, entity="gh1", engine_provides=provides)
    engine = compute_features(values, fill, eras, entity="gh1", profile="minimal", device="cpu")
    full = {
        EFF: set(settings_names(tsfresh_settings("efficient"))),
        MIN: set(settings_names(tsfresh_settings("minimal"))),
    }
    for (era_id, sensor), part in stage.groupby(["era_id", "sensor"]):
        eng = engine[(engine["era_id"] == era_id) & (engine["sensor"] == sensor)]
        eng_names = set(eng["feature"]) & full[sensor]
        st_names = set(part["feature"])
        assert not (eng_names & st_names), "a feature computed by both engines"
        assert eng_names | st_names == full[sensor]
    # the minimal sensor is covered by the engine alone: the stage computes nothing for it
    assert set(stage["sensor"]) == {EFF}
    left = len(full[EFF] - provides)
    assert left == 782 - 10
    assert stage.groupby("era_id").size().tolist() == [left, left, left]


def test_subtract_features_exact_combos_and_parameterless() -> None:
    settings = {
        "mean": None,
        "length": None,
        "quantile": [{"q": 0.1}, {"q": 0.9}],
        "autocorrelation": [{"lag": 1}],
        "fft_aggregated": [{"aggtype": "centroid"}, {"aggtype": "skew"}],
    }
    out = subtract_features(
        settings,
        [
            "mean",
            "quantile__q_0.1",
            "autocorrelation__lag_1",
            'fft_aggregated__aggtype_"skew"',
            "quantile__q_0.5",
            "not_there",
        ],
    )
    assert out == {
        "length": None,
        "quantile": [{"q": 0.9}],
        "fft_aggregated": [{"aggtype": "centroid"}],
    }
    assert settings["quantile"] == [{"q": 0.1}, {"q": 0.9}]  # input untouched
    assert subtract_features(settings, ["quantile"])["autocorrelation"] == [{"lag": 1}]
    assert "quantile" not in subtract_features(settings, ["quantile"])


def test_stage_settings_default_and_exclude() -> None:
    eng = engine_tsfresh_names("efficient")
    eff = set(settings_names(tsfresh_settings("efficient")))
    st = stage_settings([EFF, MIN])
    assert st[MIN] == {} and st[EFF] == {}  # the engine computes both profiles whole
    assert eff <= eng and len(eff) == 782
    st = stage_settings(
        [EFF],
        engine_provides=(),
        exclude=["cwt_coefficients", "ar_coefficient__coeff_0__k_10"],
    )
    names = set(settings_names(st[EFF]))
    assert not any(n.startswith("cwt_coefficients") for n in names)
    assert "ar_coefficient__coeff_0__k_10" not in names and "ar_coefficient__coeff_1__k_10" in names
    # a mapping: sensors absent from it get the whole profile
    st = stage_settings([EFF, MIN], profile="minimal", engine_provides={EFF: ["mean"]})
    assert set(st[EFF]) == set(MinimalFCParameters()) - {"mean"}
    assert set(st[MIN]) == set(MinimalFCParameters())


def test_deterministic_and_names_parse(grid) -> None:
    values, fill, eras = grid
    a = tsfresh_features(
        values, fill, eras.iloc[::-1], entity="gh1", profile="minimal", engine_provides=()
    )
    b = tsfresh_features(
        values, fill, eras.iloc[::-1], entity="gh1", profile="minimal", engine_provides=()
    )
    pd.testing.assert_frame_equal(a, b)
    assert a["era_id"].tolist()[:2] == [11, 11]  # era order as given
    for f in set(a["feature"]):
        assert parse_feature_name(f).name == f


def test_nothing_left_gives_empty_schema(grid) -> None:
    values, fill, eras = grid
    out = tsfresh_features(values, fill, eras, entity="gh1", profile="minimal")
    assert out.empty and list(out.columns) == list(FEATURE_COLUMNS)
    out = tsfresh_features(values, fill, eras, entity="nobody", engine_provides=())
    assert out.empty


def test_bad_input(grid) -> None:
    values, fill, eras = grid
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        tsfresh_features(values, fill, eras, entity="gh1", profile="fast")
    bad = values.rename(columns={MIN: "outside__temp"})
    with pytest.raises(ConfigError, match="contains '__'"):
        tsfresh_features(bad, None, eras, entity="gh1")
    with pytest.raises(ConfigError, match="no tsfresh calculator"):
        tsfresh_features(values, fill, eras, entity="gh1", exclude=["fancy_entropy"])
    with pytest.raises(ConfigError, match="unknown sensors"):
        tsfresh_features(values, fill, eras, entity="gh1", sensors=["co2_ppm"])
    dup = pd.concat([eras, eras.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="duplicate"):
        tsfresh_features(values, fill, dup, entity="gh1")
    naive = values.tz_localize(None)
    with pytest.raises(DataError, match="UTC"):
        tsfresh_features(naive, None, eras, entity="gh1")
    inf = values.copy()
    inf.iloc[3, 1] = np.inf
    with pytest.raises(DataError, match="infinite"):
        tsfresh_features(inf, None, eras, entity="gh1", profile="minimal", engine_provides=())


@pytest.mark.realdata
def test_real_one_week_catalogue_profile(greenhouse_dir: Path) -> None:
    from eraflow.catalogue import load_catalogue
    from eraflow.common.grid import entity_frames
    from eraflow.stages.aggregate import aggregate
    from eraflow.stages.gapfill import gap_fill
    from eraflow.stages.ingest import load_mapping, read_mapping

    start, end = pd.Timestamp("2015-10-01", tz="UTC"), pd.Timestamp("2015-10-08", tz="UTC")
    cat = load_catalogue()
    results = read_mapping(
        load_mapping("knudjepsen"),
        greenhouse_dir / "knudjepsen",
        sources=["kj_no3_climate"],
        start=start,
        end=end,
    )
    grid = aggregate([r.frame for r in results], cat, start=start, end=end).grid
    filled = gap_fill(grid, cat).grid
    (entity, (values, mask)), *_ = entity_frames(filled).items()
    days = pd.date_range(start, end, freq="1D")
    eras = pd.DataFrame(
        {"level": "A", "era_id": np.arange(7, dtype=np.int64), "start": days[:-1], "end": days[1:]}
    )
    # as if the engine had run the minimal profile: the stage computes the rest
    out = tsfresh_features(
        values,
        mask,
        eras,
        entity=entity,
        catalogue=cat,
        engine_provides=engine_profile_names("minimal"),
    )
    eff = [s for s in values.columns if cat.get(s).tsfresh_profile == "efficient"]
    assert eff and set(out["sensor"]) <= set(eff)
    # co2_ppm is absent in this file (all NaN): no rows rather than NaN rows
    assert values["co2_ppm"].isna().all() and "co2_ppm" not in set(out["sensor"])
    assert out.groupby("sensor")["era_id"].nunique().min() == 7
    # NaN only where tsfresh itself gives NaN on such series: no query for the similarity
    # count; Friedrich/Langevin fits (r=30 quantile bins) on quantised, flat night data
    finite = np.isfinite(out["value"])
    assert finite.mean() > 0.9
    nan_calcs = {f.split("__")[0] for f in out.loc[~finite, "feature"]}
    assert nan_calcs <= {
        "query_similarity_count",
        "friedrich_coefficients",
        "max_langevin_fixed_point",
        "partial_autocorrelation",
    }
    # names round-trip through tsfresh's own parser
    kind_to_fc = from_columns(sorted(set(out["sensor"] + "__" + out["feature"])))
    assert set(kind_to_fc) == set(out["sensor"])
    assert "cwt_coefficients" in kind_to_fc[eff[0]]
