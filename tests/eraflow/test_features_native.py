"""Features over what was measured: each sensor at its own rate, filled values left out."""

from __future__ import annotations

import typing
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tsfresh.feature_extraction import feature_calculators as fc

from eraflow.config import FeatureOptions
from eraflow.stages.features import FeatureValues, compute_features
from eraflow.stages.features.native import GRID_RATE, NativeRate, infer_rate, native_rates

T0 = pd.Timestamp("2024-03-01", tz="UTC")
STEP = pd.Timedelta("10min")


def hourly_on_a_10min_grid() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Series]:
    """One day: an hourly sensor (readings at :00, filled linearly between) and a 10-min one."""
    idx = pd.date_range(T0, periods=144, freq=STEP, name="time")
    rng = np.random.default_rng(3)
    readings = pd.Series(20 + rng.normal(size=24).cumsum(), index=idx[::6])
    readings.iloc[7] = np.nan  # one missed reading at 07:00
    hourly = readings.reindex(idx)
    filled = hourly.interpolate(limit_area="inside")  # what gap-fill writes
    values = pd.DataFrame({"slow": filled, "fast": 400 + rng.normal(size=144)}, index=idx)
    mask = pd.DataFrame({"slow": hourly.isna() & filled.notna(), "fast": False}, index=idx)
    eras = pd.DataFrame(
        {
            "level": "C",
            "era_id": [0, 1],
            "start": [T0, T0 + pd.Timedelta("12h")],
            "end": [T0 + pd.Timedelta("12h"), T0 + pd.Timedelta("1D")],
        }
    )
    return values, mask, eras, readings


def test_infer_rate_from_measured_rows() -> None:
    assert infer_rate(np.array([0, 6, 12, 18, 30, 36])) == NativeRate(stride=6, phase=0)
    assert infer_rate(np.array([3, 9, 15, 21])) == NativeRate(stride=6, phase=3)
    assert infer_rate(np.array([0, 1, 2, 3, 5])) == GRID_RATE
    assert infer_rate(np.array([0, 6, 13, 18])) == GRID_RATE  # a reading off the schedule
    assert infer_rate(np.array([0, 12, 24]), declared_stride=6) == NativeRate(6, 0)


def test_rates_of_a_frame_count_steps_since_the_epoch() -> None:
    values, mask, _, _ = hourly_on_a_10min_grid()
    rates = native_rates(values.mask(mask), mask, STEP)
    hour_phase = int((T0.value // STEP.value) % 6)  # 2024-03-01 00:00 in 10-min rows mod 6
    assert rates == {"slow": NativeRate(6, hour_phase), "fast": GRID_RATE}


def test_an_hourly_sensor_is_read_at_its_own_rate() -> None:
    """By hand: the 12 hourly readings of an era, not its 72 grid rows (60 interpolated)."""
    values, mask, eras, readings = hourly_on_a_10min_grid()
    names = [
        "length",
        "mean",
        "measured_values",
        "coverage",
        'rolling_mean__agg_"max"__window_"2h"',
        'rolling_mean__agg_"max"__window_"30min"',
        'linear_trend_timewise__attr_"slope"',
    ]
    out = compute_features(values, mask, eras, entity="gh", profile=names, device="cpu")
    got = out.set_index(["era_id", "sensor", "feature"])["value"]
    for era in eras.itertuples():
        own = readings[(readings.index >= era.start) & (readings.index < era.end)].dropna()
        assert got[(era.era_id, "slow", "length")] == len(own)  # 12, or 11 with 07:00 missed
        assert got[(era.era_id, "slow", "measured_values")] == len(own)
        assert got[(era.era_id, "slow", "mean")] == pytest.approx(own.mean(), rel=1e-12)
        assert got[(era.era_id, "slow", "coverage")] == pytest.approx(len(own) / 12)
        # a 2-hour window holds two hourly readings; 30 minutes holds none: NaN
        pairs = readings[(readings.index >= era.start) & (readings.index < era.end)].rolling(2)
        assert got[(era.era_id, "slow", 'rolling_mean__agg_"max"__window_"2h"')] == (
            pytest.approx(pairs.mean().max(), rel=1e-12)
        )
        assert np.isnan(got[(era.era_id, "slow", 'rolling_mean__agg_"max"__window_"30min"')])
        hours = (own.index - own.index[0]) / pd.Timedelta("1h")
        slope = np.polyfit(hours.to_numpy(dtype=float), own.to_numpy(), 1)[0]
        assert got[(era.era_id, "slow", 'linear_trend_timewise__attr_"slope"')] == (
            pytest.approx(slope, rel=1e-9)
        )
        # the fast sensor is read on every grid row, as before
        assert got[(era.era_id, "fast", "length")] == 72
    assert len(readings.dropna()) == 23 and got[(0, "slow", "length")] == 11


def test_the_option_and_the_engine_name_the_same_choices() -> None:
    field = FeatureOptions.model_fields["values"]
    assert typing.get_args(field.annotation) == typing.get_args(FeatureValues)
    assert field.default == "measured"


# ---------------------------------------------------------------------- on the real exports


def real_frames(
    root: Path, source: str, start: str, end: str, freq: str
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Through the real stages (no Prefect): each entity's grid, fill mask and eras."""
    from eraflow.catalogue import load_catalogue
    from eraflow.common.grid import entity_frames
    from eraflow.stages.aggregate import aggregate
    from eraflow.stages.eras import EraConfig, EraWarning
    from eraflow.stages.eras.gaps import detect_eras_with_gaps
    from eraflow.stages.gapfill import gap_fill
    from eraflow.stages.ingest import load_mapping, read_mapping

    catalogue = load_catalogue()
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    results = read_mapping(load_mapping(source), root / source, start=lo, end=hi)
    grid = aggregate([r.frame for r in results], catalogue, freq=freq, start=lo, end=hi).grid
    out = {}
    for entity, (values, mask) in entity_frames(gap_fill(grid, catalogue, freq=freq).grid).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EraWarning)
            eras = detect_eras_with_gaps(values, mask, entity=entity, config=EraConfig())
        out[entity] = (values, mask, eras)
    return out


@pytest.fixture(scope="module")
def aarslev_month(
    greenhouse_dir: Path,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """The README's Aarslev run: 2014-03-15 .. 04-15 at 10 minutes."""
    return real_frames(greenhouse_dir, "aarslev", "2014-03-15", "2014-04-15", "10min")


@pytest.fixture(scope="module")
def knudjepsen_fortnight(
    greenhouse_dir: Path,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Knud Jepsen, 2015-10-01 .. 10-15, on its own 5-minute grid."""
    return real_frames(greenhouse_dir, "knudjepsen", "2015-10-01", "2015-10-15", "5min")


def _signs_against_the_exact_mean(x: np.ndarray) -> np.ndarray:
    """+1 / 0 / -1 per value against Fraction(sum) / n (eraflow's exact mean, see README)."""
    mean = sum((Fraction(float(v)) for v in x), Fraction(0)) / len(x)
    return np.array([(Fraction(float(v)) > mean) - (Fraction(float(v)) < mean) for v in x])


def _longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


REFERENCE = {
    "length": fc.length,
    "mean": fc.mean,
    "standard_deviation": fc.standard_deviation,
    "variance": fc.variance,
    "minimum": fc.minimum,
    "maximum": fc.maximum,
    "median": fc.median,
    # counts against the mean: the exact mean, where eraflow deliberately differs from
    # tsfresh's np.mean (its last bit decides ties on quantised readings)
    "count_above_mean": lambda x: int((_signs_against_the_exact_mean(x) > 0).sum()),
    "longest_strike_below_mean": lambda x: _longest_run(_signs_against_the_exact_mean(x) < 0),
    "absolute_sum_of_changes": fc.absolute_sum_of_changes,
    "mean_abs_change": fc.mean_abs_change,
    "autocorrelation__lag_1": lambda x: fc.autocorrelation(x, 1),
    "number_peaks__n_1": lambda x: fc.number_peaks(x, 1),
    "sample_entropy": fc.sample_entropy,
}


@pytest.mark.realdata
def test_aarslev_hourly_entity_features_rest_on_its_measured_values(aarslev_month) -> None:
    """Every (era, sensor) of the hourly entity: ``length`` is the measured count (not grid
    rows, 61 % of which are filled) and each value equals tsfresh's on those values."""
    values, mask, eras = aarslev_month["aarslev_celle6_hourly"]
    share = mask.to_numpy().sum() / values.notna().to_numpy().sum()
    assert share > 0.5  # most of its values on the grid are filled (the issue saw 61 %)
    names = [*REFERENCE, 'linear_trend_timewise__attr_"slope"', "measured_values"]
    out = compute_features(
        values, mask, eras, entity="aarslev_celle6_hourly", profile=names, device="cpu"
    )
    got = out.set_index(["level", "era_id", "sensor", "feature"])["value"]
    measured = values.mask(mask)
    checked = 0
    for era in eras[eras["kind"] == "data"].itertuples():
        inside = measured[(measured.index >= era.start) & (measured.index < era.end)]
        for sensor in values.columns:
            own = inside[sensor].dropna()
            key = (era.level, era.era_id, sensor)
            assert got[(*key, "measured_values")] == len(own)
            if len(own) == 0:  # no reading in the era: every feature NaN but the count
                assert np.isnan(got[(*key, "length")])
                continue
            assert got[(*key, "length")] == len(own)
            if len(own) < 3:
                continue
            x = own.to_numpy()
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                for name, reference in REFERENCE.items():
                    want = float(reference(x))
                    np.testing.assert_allclose(
                        got[(*key, name)], want, rtol=1e-9, atol=1e-12, err_msg=f"{key} {name}"
                    )
                    checked += 1
                timed = pd.Series(x, index=own.index.tz_localize(None))
                slope = dict(fc.linear_trend_timewise(timed, [{"attr": "slope"}]))['attr_"slope"']
                np.testing.assert_allclose(
                    got[(*key, 'linear_trend_timewise__attr_"slope"')], slope, rtol=1e-9, atol=1e-12
                )
    assert checked > 1000


@pytest.mark.realdata
@pytest.mark.parametrize("feature_values", typing.get_args(FeatureValues))
def test_where_nothing_was_filled_the_5min_features_are_unchanged(
    knudjepsen_fortnight, feature_values
) -> None:
    """Knud Jepsen's 5-minute loggers: an (era, sensor) without a filled value gives the same
    features as reading the whole grid (the engine before native rates); where something was
    filled they differ."""
    values, mask, eras = knudjepsen_fortnight["kj_no3"]
    profile = "efficient"
    one = compute_features(values, mask, eras, entity="kj_no3", profile=profile, device="cpu")
    other = compute_features(
        values,
        mask,
        eras,
        entity="kj_no3",
        profile=profile,
        device="cpu",
        feature_values=feature_values,
    )
    key = ["level", "era_id", "sensor", "feature"]
    both = one.merge(other, on=key, suffixes=("_measured", "_other"))
    assert len(both) == len(one) == len(other)
    filled = {
        (era.level, era.era_id, sensor)
        for era in eras.itertuples()
        for sensor in values.columns
        if mask[sensor][(mask.index >= era.start) & (mask.index < era.end)].any()
    }
    has_fill = [
        (lv, e, str(s)) in filled
        for lv, e, s in zip(both["level"], both["era_id"], both["sensor"], strict=True)
    ]
    a, b = both["value_measured"].to_numpy(), both["value_other"].to_numpy()
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    clean = ~np.asarray(has_fill)
    assert clean.sum() > 10_000 and same[clean].all()
    if feature_values == "grid":
        assert not same[~clean].all()  # filled values change what the grid reading gives
