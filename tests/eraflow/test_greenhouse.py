"""Greenhouse features: every formula against values computed by hand.

The hand values use plain NumPy/pandas and the literal constants of the packaged catalogue
(checked first), never the code under test; the real-data checks read the raw Knud Jepsen
CSV files themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.common.errors import ConfigError
from eraflow.config import FeatureOptions
from eraflow.runs.feature_store import engine_config_hash
from eraflow.stages.features import FEATURE_COLUMNS, feature_registry
from eraflow.stages.greenhouse import (
    GREENHOUSE_FEATURES,
    daily_values,
    definition_digest,
    derived_signals,
    greenhouse_features,
    parse_greenhouse_name,
    saturation_vapour_pressure_kpa,
    vapour_pressure_deficit_kpa,
)

# The packaged constants, as literals (test_packaged_constants checks them).
PAR_SHARE, UMOL_PER_J, TRANSMISSION = 0.47, 4.57, 0.7
BASE_C, AMBIENT_PPM, BAND = 10.0, 420.0, (0.4, 1.2)
DAY_W_M2, MIN_DAY_COVERAGE = 10.0, 0.8
STEP_S = 300.0  # the 5-min grid
CONSTANTS = load_catalogue().greenhouse


def grid(days: float, start: str = "2024-03-04", **columns: object) -> pd.DataFrame:
    """A 5-min UTC grid of ``days`` with the given columns (scalars or arrays)."""
    index = pd.date_range(start, periods=int(days * 288), freq="5min", tz="UTC", name="time")
    return pd.DataFrame(
        {k: np.broadcast_to(np.asarray(v, dtype=float), len(index)) for k, v in columns.items()},
        index=index,
    ).copy()


def eras_of(*bounds: tuple[str, str], level: str = "A") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "level": level,
            "era_id": range(len(bounds)),
            "start": [pd.Timestamp(a, tz="UTC") for a, _ in bounds],
            "end": [pd.Timestamp(b, tz="UTC") for _, b in bounds],
        }
    )


def table(values: pd.DataFrame, eras: pd.DataFrame, constants=CONSTANTS, **kw) -> pd.Series:
    out = greenhouse_features(
        values, kw.pop("fill_mask", None), eras, entity="gh", constants=constants, **kw
    )
    return out.set_index(["era_id", "sensor", "feature"])["value"]


def daily(stat: str) -> str:
    return f'stat_"{stat}"'


# ---- the catalogue ---------------------------------------------------------------------------
def test_packaged_constants() -> None:
    c = CONSTANTS
    assert (c.par_share, c.umol_per_joule, c.transmission) == (PAR_SHARE, UMOL_PER_J, TRANSMISSION)
    assert (c.base_temp_c, c.co2_ambient_ppm, c.vpd_band_kpa) == (BASE_C, AMBIENT_PPM, BAND)
    assert (c.day_radiation_w_m2, c.min_day_coverage) == (DAY_W_M2, MIN_DAY_COVERAGE)
    assert (c.svp_a_kpa, c.svp_b, c.svp_c_c) == (0.6108, 17.27, 237.3)
    assert c.lamp_power_w_m2 is None and c.day_timezone == "UTC"
    assert c.par_per_radiation == pytest.approx(PAR_SHARE * UMOL_PER_J * TRANSMISSION)


def test_derived_signals_are_declared_with_their_inputs() -> None:
    cat = load_catalogue()
    everything = grid(
        1,
        radiation_w_m2=100,
        air_temp_c=20,
        rh_percent=70,
        co2_ppm=800,
        pipe_temp_1_c=40,
        pipe_temp_2_c=30,
        lamp_status=1,
        energy_price_eur_mwh=50,
    )
    priced = CONSTANTS.model_copy(update={"lamp_power_w_m2": 50.0})
    derived = derived_signals(everything, priced)
    assert set(derived.frame.columns) == {
        "par_umol_m2_s",
        "vpd_kpa",
        "temp_above_base_c",
        "co2_above_ambient_ppm",
        "pipe_1_minus_air_c",
        "pipe_2_minus_air_c",
        "lamp_cost_eur_m2_h",
    }
    for name in derived.frame.columns:
        spec = cat.get(name)
        assert name in cat and spec.unit and spec.derived_from, name
        assert set(derived.inputs[name]) <= set(spec.derived_from), name
        assert all(i in cat for i in spec.derived_from)
    # measured beats derived: the first of derived_from
    measured = derived_signals(everything.assign(light_umol=5.0, vpd_hpa=3.0), priced)
    assert measured.inputs["par_umol_m2_s"] == ("light_umol",)
    assert measured.inputs["vpd_kpa"] == ("vpd_hpa",)
    assert measured.frame["vpd_kpa"].iloc[0] == pytest.approx(0.3)


def test_user_catalogue_overrides_constants_and_the_engine_hash(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text("[greenhouse]\ntransmission = 0.6\nlamp_power_w_m2 = 55.0\n")
    mine = load_catalogue(site).greenhouse
    assert (mine.transmission, mine.lamp_power_w_m2, mine.par_share) == (0.6, 55.0, PAR_SHARE)
    assert definition_digest(mine) != definition_digest(CONSTANTS)
    options = FeatureOptions()
    assert engine_config_hash(options, "5min", site) != engine_config_hash(options, "5min", None)
    assert engine_config_hash(options, "5min", None) == engine_config_hash(options, "5min", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vpd_band_kpa = [1.2, 0.4]", "0 <= low < high"),
        ("transmission = 1.5", "transmission"),
        ('day_timezone = "Mars/Olympus"', "not a time zone"),
        ("colour = 1", "colour"),
    ],
)
def test_bad_constants_are_refused(tmp_path: Path, text: str, message: str) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f"[greenhouse]\n{text}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_catalogue(site)
    assert str(caught.value).startswith(f"{site}: [greenhouse] is invalid")


# ---- names -----------------------------------------------------------------------------------
def test_names_round_trip_and_never_collide_with_the_engine() -> None:
    engine = set(feature_registry())
    columns = [f.column for f in GREENHOUSE_FEATURES]
    assert len(columns) == len(set(columns))
    for f in GREENHOUSE_FEATURES:
        back = parse_greenhouse_name(f.name)
        assert back == f.spec and back.name == f.name and dict(back.params) == dict(f.spec.params)
        assert f.spec.calculator not in engine, f.name
        sensor, feature = f.column.split("__", 1)
        assert (sensor, feature) == (f.sensor, f.name)
        assert f.unit
    assert parse_greenhouse_name('daily_light_integral__stat_"mean"').params == {"stat": "mean"}
    with pytest.raises(ConfigError, match="unknown greenhouse calculator"):
        parse_greenhouse_name("mean")
    with pytest.raises(ConfigError, match="not a greenhouse feature"):
        parse_greenhouse_name('daily_light_integral__stat_"median"')


# ---- formulas, by hand -----------------------------------------------------------------------
def test_vpd_at_25_c_and_60_percent_is_fao56s_1_27_kpa() -> None:
    # FAO-56 (Allen et al. 1998), Annex 2 table 2.3: e°(25 °C) = 3.168 kPa
    assert saturation_vapour_pressure_kpa(np.array([25.0]), CONSTANTS)[0] == pytest.approx(
        3.168, abs=5e-4
    )
    vpd = vapour_pressure_deficit_kpa(np.array([25.0]), np.array([60.0]), CONSTANTS)[0]
    assert round(vpd, 2) == 1.27
    assert vpd == pytest.approx(0.6108 * math.exp(17.27 * 25 / (25 + 237.3)) * 0.4)


def test_constant_radiation_gives_a_known_daily_light_integral() -> None:
    values = grid(2, radiation_w_m2=100.0)
    got = table(values, eras_of(("2024-03-04", "2024-03-06"), ("2024-03-04", "2024-03-04 12:00")))
    dli = 100.0 * PAR_SHARE * UMOL_PER_J * TRANSMISSION * 86_400 / 1e6  # 12.99 mol/m²/d
    assert dli == pytest.approx(12.99, abs=0.01)
    for stat in ("mean", "min", "max"):
        assert got[(0, "par_umol_m2_s", f"daily_light_integral__{daily(stat)}")] == pytest.approx(
            dli
        )
    assert got[(0, "par_umol_m2_s", "light_integral")] == pytest.approx(2 * dli)
    assert got[(0, "radiation_w_m2", "radiation_sum")] == pytest.approx(2 * 8.64)  # MJ/m²
    # half a day: the total is half a day's, the mean is per day, no whole day for min/max
    assert got[(1, "par_umol_m2_s", "light_integral")] == pytest.approx(dli / 2)
    assert got[(1, "par_umol_m2_s", f"daily_light_integral__{daily('mean')}")] == pytest.approx(dli)
    assert np.isnan(got[(1, "par_umol_m2_s", f"daily_light_integral__{daily('max')}")])
    # measured PAR inside is taken as it is
    measured = table(values.assign(light_umol=200.0), eras_of(("2024-03-04", "2024-03-05")))
    assert measured[(0, "par_umol_m2_s", "light_integral")] == pytest.approx(200 * 0.0864)


def test_nan_rows_scale_integrals_by_the_valid_share() -> None:
    rad = np.full(2 * 288, 100.0)
    rad[::2] = np.nan  # day 1: half valid
    rad[288:] = 100.0
    rad[288 : 288 + 70] = np.nan  # day 2: 218/288 = 76 % valid, under min_day_coverage
    got = table(grid(2, radiation_w_m2=rad), eras_of(("2024-03-04", "2024-03-06")))
    dli = 100.0 * PAR_SHARE * UMOL_PER_J * TRANSMISSION * 0.0864
    valid = (144 + 218) / 576
    assert got[(0, "par_umol_m2_s", "valid_share")] == pytest.approx(valid)
    assert got[(0, "par_umol_m2_s", "measured_share")] == pytest.approx(valid)
    assert got[(0, "par_umol_m2_s", "light_integral")] == pytest.approx(2 * dli)
    # day 1 at 50 % and day 2 at 76 % are both below 80 %: no whole day
    assert np.isnan(got[(0, "par_umol_m2_s", f"daily_light_integral__{daily('min')}")])


def test_missing_inputs_stay_missing_in_every_derived_signal() -> None:
    # a NaN input is never a 0 (below base, ambient or air): it leaves the valid share
    half = np.where(np.arange(288) < 144, np.nan, 1.0)
    values = grid(
        1,
        radiation_w_m2=100.0 * half,
        air_temp_c=5.0 * half,
        rh_percent=60.0,
        co2_ppm=400.0 * half,
        pipe_temp_1_c=4.0,
        lamp_status=0.0 * half,
    )
    derived = derived_signals(values, CONSTANTS).frame
    assert (derived.isna().sum() == 144).all(), derived.isna().sum()
    got = table(values, eras_of(("2024-03-04", "2024-03-05")))
    shares = got.xs("valid_share", level="feature")
    assert (shares == 0.5).all(), shares


def test_filled_values_count_as_valid_but_not_measured() -> None:
    values = grid(1, radiation_w_m2=100.0)
    mask = pd.DataFrame(False, index=values.index, columns=values.columns)
    mask.iloc[:72, 0] = True
    got = table(values, eras_of(("2024-03-04", "2024-03-05")), fill_mask=mask)
    assert got[(0, "par_umol_m2_s", "valid_share")] == 1.0
    assert got[(0, "par_umol_m2_s", "measured_share")] == pytest.approx(0.75)


def test_day_night_difference_and_degree_days() -> None:
    hour = np.arange(288) / 12.0
    light = (hour >= 6) & (hour < 18)
    values = grid(
        1, radiation_w_m2=np.where(light, 300.0, 0.0), air_temp_c=np.where(light, 24.0, 18.0)
    )
    got = table(values, eras_of(("2024-03-04", "2024-03-05")))
    assert got[(0, "air_temp_c", "day_mean_temperature")] == pytest.approx(24.0)
    assert got[(0, "air_temp_c", "night_mean_temperature")] == pytest.approx(18.0)
    assert got[(0, "air_temp_c", "day_night_difference")] == pytest.approx(6.0)
    assert got[(0, "air_temp_c", f"daily_mean_temperature__{daily('mean')}")] == pytest.approx(21.0)
    # 12 h at 14 °C and 12 h at 8 °C above a 10 °C base: (14 x 12 + 8 x 12) / 24 = 11 °C·d
    assert got[(0, "temp_above_base_c", "degree_days")] == pytest.approx(11.0)
    # the integration method counts the warm hours of a day whose mean is at the base
    cool = grid(1, air_temp_c=np.where(light, 15.0, 5.0))
    assert table(cool, eras_of(("2024-03-04", "2024-03-05")))[
        (0, "temp_above_base_c", "degree_days")
    ] == pytest.approx(2.5)
    # lamps make a dark row day
    lit = values.assign(lamp_status=np.where(hour >= 20, 1.0, 0.0))
    lit_got = table(lit, eras_of(("2024-03-04", "2024-03-05")))
    assert lit_got[(0, "air_temp_c", "day_mean_temperature")] == pytest.approx(
        (24.0 * 144 + 18.0 * 48) / 192
    )
    assert lit_got[(0, "lamp_status", "lamp_hours")] == pytest.approx(4.0)


def test_vpd_band_co2_heating_lamps_and_cost() -> None:
    hour = np.arange(288) / 12.0
    rh = np.where(hour < 6, 95.0, np.where(hour < 12, 70.0, 30.0))  # 6 h, 6 h, 12 h
    values = grid(
        1,
        air_temp_c=25.0,
        rh_percent=rh,
        co2_ppm=np.where((hour >= 8) & (hour < 11), 820.0, 400.0),
        pipe_temp_1_c=np.where(hour < 2, 40.0, 15.0),
        lamp_status=np.where(hour < 4, 1.0, 0.0),
        energy_price_eur_mwh=np.where(hour < 2, 100.0, 300.0),
    )
    constants = CONSTANTS.model_copy(update={"lamp_power_w_m2": 50.0})
    got = table(values, eras_of(("2024-03-04", "2024-03-05")), constants=constants)
    es = 0.6108 * math.exp(17.27 * 25 / 262.3)
    vpd = es * (1 - rh / 100)
    assert got[(0, "vpd_kpa", 'vpd__stat_"mean"')] == pytest.approx(vpd.mean())
    assert got[(0, "vpd_kpa", 'vpd__stat_"min"')] == pytest.approx(es * 0.05)
    assert got[(0, "vpd_kpa", 'vpd__stat_"max"')] == pytest.approx(es * 0.70)
    assert got[(0, "vpd_kpa", "hours_below_band")] == pytest.approx(6.0)  # 0.16 kPa (0.95 in)
    assert got[(0, "vpd_kpa", "hours_above_band")] == pytest.approx(12.0)  # 2.22 kPa
    assert got[(0, "vpd_kpa", f"daily_hours_outside_band__{daily('max')}")] == pytest.approx(18.0)
    assert got[(0, "co2_above_ambient_ppm", "co2_dose")] == pytest.approx(400.0 * 3)
    assert got[(0, "co2_above_ambient_ppm", "enrichment_hours")] == pytest.approx(3.0)
    # pipe below air does not count: 2 h at 15 °C above the 25 °C air
    assert got[(0, "pipe_1_minus_air_c", "heating_degree_hours")] == pytest.approx(30.0)
    assert got[(0, "lamp_status", "lamp_hours")] == pytest.approx(4.0)
    # 50 W/m² for 2 h at 100 EUR/MWh and 2 h at 300: (0.1 + 0.3) kWh/m² x ... = 0.04 EUR/m²
    assert got[(0, "lamp_cost_eur_m2_h", "energy_cost")] == pytest.approx(
        0.05 * 2 * 0.1 + 0.05 * 2 * 0.3
    )
    # families whose inputs are absent are not computed
    assert "par_umol_m2_s" not in set(got.index.get_level_values("sensor"))
    assert ("air_temp_c", "day_night_difference") not in set(got.droplevel(0).index)
    no_price = table(values, eras_of(("2024-03-04", "2024-03-05")))  # no lamp power declared
    assert "lamp_cost_eur_m2_h" not in set(no_price.index.get_level_values("sensor"))


def test_days_follow_the_day_timezone_and_its_dst() -> None:
    # 2016-03-27 in Copenhagen has 23 hours (22:00 UTC on the 26th .. 22:00 UTC on the 27th)
    values = grid(3, start="2016-03-26", radiation_w_m2=100.0)
    local = CONSTANTS.model_copy(update={"day_timezone": "Europe/Copenhagen"})
    days = daily_values(values, local)
    column = "radiation_w_m2__daily_radiation_sum"
    assert [str(d.date()) for d in days.index] == ["2016-03-27", "2016-03-28"]
    assert days[column].tolist() == pytest.approx([100 * 23 * 3600 / 1e6, 100 * 86_400 / 1e6])
    utc_days = daily_values(values, CONSTANTS)
    assert len(utc_days) == 3 and utc_days[column].tolist() == pytest.approx([8.64] * 3)


def test_output_contract() -> None:
    values = grid(2, radiation_w_m2=100.0, air_temp_c=20.0)
    eras = eras_of(("2024-03-04", "2024-03-05"), ("2024-03-05", "2024-03-06"), level="B")
    out = greenhouse_features(values, None, eras, entity="gh", constants=CONSTANTS)
    assert tuple(out.columns) == FEATURE_COLUMNS
    assert set(out["engine"]) == {"greenhouse"} and set(out["level"]) == {"B"}
    assert not out.duplicated(["era_id", "sensor", "feature"]).any()
    assert out["era_id"].tolist() == sorted(out["era_id"])  # era by era
    again = greenhouse_features(values, None, eras, entity="gh", constants=CONSTANTS)
    pd.testing.assert_frame_equal(out, again)
    # an era outside the grid has NaN everywhere
    empty = table(values, eras_of(("2030-01-01", "2030-01-02")))
    assert empty.isna().all()


def test_report_shows_the_days_in_a_table_and_a_plot(tmp_path: Path) -> None:
    from eraflow.runs.report import (
        DAILY_DEGREE_DAYS,
        DAILY_LIGHT,
        greenhouse_summary,
        write_report,
    )
    from eraflow.runs.summary import RunSummary

    hour = np.arange(3 * 288) % 288 / 12.0
    values = grid(
        3, radiation_w_m2=np.where((hour >= 6) & (hour < 18), 200.0, 0.0), air_temp_c=20.0
    )
    days = daily_values(values, CONSTANTS).reset_index().assign(entity="gh")
    dli = 200 * PAR_SHARE * UMOL_PER_J * TRANSMISSION * 12 * 3600 / 1e6
    assert days[DAILY_LIGHT].tolist() == pytest.approx([dli] * 3)
    assert days[DAILY_DEGREE_DAYS].tolist() == pytest.approx([10.0] * 3)
    shown = greenhouse_summary(days)
    assert shown.iloc[0]["whole days"] == 3
    assert shown.iloc[0]["degree days sum [°C·d]"] == pytest.approx(30.0)
    summary = RunSummary(
        kind="pipeline",
        run_id="r1",
        start=values.index[0],
        end=values.index[-1],
        entities=["gh"],
        grid_rows=len(values),
        store=str(tmp_path),
    )
    page = write_report(summary, {"greenhouse": days}, tmp_path, base_temp_c=BASE_C)
    html = page.read_text(encoding="utf-8")
    assert "Greenhouse days" in html and "data:image/png;base64," in html
    assert (tmp_path / "r1" / "greenhouse-days.png").stat().st_size > 5_000


# ---- real data: Knud Jepsen compartment 3, read from the raw CSV ---------------------------------
def read_export(path: Path, names: list[str]) -> pd.DataFrame:
    """A raw export as the README of shared/ describes it: local time, decimal comma."""
    raw = pd.read_csv(path, sep=";", decimal=",", skiprows=3, header=None, encoding="utf-8")
    raw.columns = ["time", *names]
    local = pd.to_datetime(raw["time"], format="%d-%m-%Y %H:%M:%S")
    raw["time"] = local.dt.tz_localize("Europe/Copenhagen", ambiguous="NaT", nonexistent="NaT")
    return raw.dropna(subset=["time"]).set_index("time").tz_convert("UTC")


@pytest.fixture(scope="module")
def knud_jepsen_days(greenhouse_dir: Path) -> pd.DataFrame:
    """Two UTC days of 2016-02 (lamps on some nights) with RH from the extra file."""
    folder = greenhouse_dir / "knudjepsen"
    climate = read_export(
        folder / "NO3_LAMPEGRP_1.csv",
        ["air_temp_c", "outside_temp_c", "radiation_w_m2", "co2_ppm", "curtain_1_percent",
         "curtain_2_percent", "lamp_status", "humidity_deficit_g_m3", "pipe_temp_1_c",
         "pipe_temp_2_c"],
    )  # fmt: skip
    extra = read_export(
        folder / "NO3NO4.extra.csv",
        ["hd3", "rh_percent", "lee3", "wind3", "hd4", "rh4", "lee4", "wind4"],
    )
    start, end = pd.Timestamp("2016-02-01", tz="UTC"), pd.Timestamp("2016-02-03", tz="UTC")
    frame = climate.join(extra[["rh_percent"]], how="left").loc[start : end - pd.Timedelta("1ns")]
    frame = frame.drop(columns=["co2_ppm"]).astype(float)  # CO2 reads 0 (a dead sensor)
    frame.index.name = "time"
    assert len(frame) == 576 and frame.notna().all().all()
    return frame


@pytest.mark.realdata
def test_knud_jepsen_days_by_hand(knud_jepsen_days: pd.DataFrame) -> None:
    v = knud_jepsen_days
    eras = eras_of(
        ("2016-02-01", "2016-02-02"), ("2016-02-02", "2016-02-03"), ("2016-02-01", "2016-02-03")
    )
    got = table(v, eras)
    hours = STEP_S / 3600
    per_day = []
    for era, (a, b) in enumerate([("2016-02-01", "2016-02-02"), ("2016-02-02", "2016-02-03")]):
        d = v.loc[pd.Timestamp(a, tz="UTC") : pd.Timestamp(b, tz="UTC") - pd.Timedelta("1ns")]
        t, rad, lamp = d["air_temp_c"], d["radiation_w_m2"], d["lamp_status"]
        dli = (rad * PAR_SHARE * UMOL_PER_J * TRANSMISSION).sum() * STEP_S / 1e6
        is_day = (rad > DAY_W_M2) | (lamp > 0.5)
        vpd = 0.6108 * np.exp(17.27 * t / (t + 237.3)) * (1 - d["rh_percent"] / 100)
        hand = {
            ("par_umol_m2_s", "light_integral"): dli,
            ("radiation_w_m2", "radiation_sum"): rad.sum() * STEP_S / 1e6,
            ("temp_above_base_c", "degree_days"): np.maximum(t - BASE_C, 0).sum() * STEP_S / 86_400,
            ("air_temp_c", f"daily_mean_temperature__{daily('mean')}"): t.mean(),
            ("air_temp_c", "day_mean_temperature"): t[is_day].mean(),
            ("air_temp_c", "night_mean_temperature"): t[~is_day].mean(),
            ("air_temp_c", "day_night_difference"): t[is_day].mean() - t[~is_day].mean(),
            ("vpd_kpa", 'vpd__stat_"mean"'): vpd.mean(),
            ("vpd_kpa", 'vpd__stat_"max"'): vpd.max(),
            ("vpd_kpa", "hours_below_band"): (vpd < BAND[0]).sum() * hours,
            ("vpd_kpa", "hours_above_band"): (vpd > BAND[1]).sum() * hours,
            ("pipe_1_minus_air_c", "heating_degree_hours"): np.maximum(
                d["pipe_temp_1_c"] - t, 0
            ).sum()
            * hours,
            ("pipe_2_minus_air_c", "heating_degree_hours"): np.maximum(
                d["pipe_temp_2_c"] - t, 0
            ).sum()
            * hours,
            ("lamp_status", "lamp_hours"): (lamp > 0.5).sum() * hours,
        }
        for (sensor, feature), value in hand.items():
            assert got[(era, sensor, feature)] == pytest.approx(value, rel=1e-9), (sensor, feature)
        per_day.append(hand)
    # a sensible winter day in Denmark: a few mol/m²/d, lamps some hours, warm pipes
    assert 0.1 < per_day[0][("par_umol_m2_s", "light_integral")] < 10
    assert per_day[0][("lamp_status", "lamp_hours")] > 0
    # the two-day era: totals add up, the daily statistics are over its two whole days
    for (sensor, feature), name in [
        (("par_umol_m2_s", "light_integral"), "daily_light_integral"),
        (("temp_above_base_c", "degree_days"), "daily_degree_days"),
        (("lamp_status", "lamp_hours"), "daily_lamp_hours"),
    ]:
        days = [h[(sensor, feature)] for h in per_day]
        assert got[(2, sensor, feature)] == pytest.approx(sum(days), rel=1e-9)
        assert got[(2, sensor, f"{name}__{daily('mean')}")] == pytest.approx(np.mean(days))
        assert got[(2, sensor, f"{name}__{daily('min')}")] == pytest.approx(min(days))
        assert got[(2, sensor, f"{name}__{daily('max')}")] == pytest.approx(max(days))
    # the report's days are the same numbers
    report_days = daily_values(v, CONSTANTS)
    assert report_days["par_umol_m2_s__daily_light_integral"].tolist() == pytest.approx(
        [h[("par_umol_m2_s", "light_integral")] for h in per_day]
    )
