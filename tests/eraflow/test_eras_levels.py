"""detect_eras: the eras table contract, nesting, determinism, bad input, config, plot."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.eras import (
    ERA_COLUMNS,
    EraConfig,
    EraWarning,
    LevelConfig,
    SignalDataError,
    UnknownSignalError,
    default_signals,
    detect_eras,
    plot_eras,
    standardise,
)

STEP = pd.Timedelta("5min")


def _greenhouse(days: int = 28, seed: int = 7) -> pd.DataFrame:
    """A seeded greenhouse-like grid: daily cycles, two regime shifts, a gap, a flat CO2."""
    n = days * 288
    idx = pd.date_range("2016-03-01", periods=n, freq="5min", tz="UTC", name="time")
    rng = np.random.default_rng(seed)
    hour = (np.arange(n) % 288) / 12.0
    day = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)
    regime = np.where(np.arange(n) < n // 3, 0.0, np.where(np.arange(n) < 2 * n // 3, 1.0, -0.5))
    values = pd.DataFrame(
        {
            "air_temp_c": 19.0 + 4.0 * day + 2.0 * regime + rng.normal(0, 0.3, n),
            "co2_ppm": np.full(n, 400.0),
            "rh_percent": 80.0 - 15.0 * day - 5.0 * regime + rng.normal(0, 1.5, n),
            "radiation_w_m2": 500.0 * day * (1.0 + 0.3 * regime) + rng.normal(0, 5, n).clip(0),
            "pipe_temp_1_c": 45.0 - 10.0 * day + 8.0 * regime + rng.normal(0, 1.0, n),
            "outside_temp_c": 5.0 + 6.0 * day + rng.normal(0, 0.5, n),
            "lamp_status": (day < 0.1).astype(float),
        },
        index=idx,
    )
    values.iloc[2000:2300, :3] = np.nan  # a long gap the gap-filler left open
    return values


@pytest.fixture(scope="module")
def greenhouse() -> pd.DataFrame:
    return _greenhouse()


@pytest.fixture(scope="module")
def eras(greenhouse: pd.DataFrame) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EraWarning)
        return detect_eras(greenhouse, entity="sim/1")


def _bounds(table: pd.DataFrame, level: str) -> set[pd.Timestamp]:
    return set(table.loc[table["level"] == level, "start"])


def test_table_contract(greenhouse: pd.DataFrame, eras: pd.DataFrame) -> None:
    assert tuple(eras.columns) == ERA_COLUMNS
    assert eras["era_id"].dtype == np.int64
    assert eras["rows"].dtype == np.int64
    assert eras["score"].dtype == np.float64
    assert str(eras["start"].dt.tz) == "UTC"
    assert str(eras["end"].dt.tz) == "UTC"
    assert set(eras["entity"]) == {"sim/1"}
    assert eras["signals"].iloc[0] == "air_temp_c,rh_percent,radiation_w_m2,pipe_temp_1_c"
    for level in ("A", "B", "C"):
        lv = eras[eras["level"] == level].reset_index(drop=True)
        assert lv["era_id"].tolist() == list(range(len(lv)))
        assert lv["start"].iloc[0] == greenhouse.index[0]
        assert lv["end"].iloc[-1] == greenhouse.index[-1] + STEP
        assert (lv["start"].iloc[1:].to_numpy() == lv["end"].iloc[:-1].to_numpy()).all()
        assert lv["rows"].sum() == len(greenhouse)
        assert ((lv["end"] - lv["start"]) == lv["rows"] * STEP).all()
        assert np.isnan(lv["score"].iloc[0])
        assert (lv["score"].iloc[1:] > 0).all()  # every kept boundary lowers the cost
    assert set(eras.loc[eras["level"] == "C", "method"]) == {"pelt-normal"}
    assert set(eras.loc[eras["level"] == "A", "method"]) == {"op-normal"}


def test_levels_are_nested_and_coarser(eras: pd.DataFrame) -> None:
    a, b, c = (_bounds(eras, lv) for lv in ("A", "B", "C"))
    assert a <= b <= c
    assert len(a) <= len(b) <= len(c)
    assert len(c) > len(b) > 1  # the cases are not trivially nested
    sizes = eras.groupby("level")["rows"].min()
    assert sizes["B"] >= 288  # 1 day of 5-minute rows
    assert sizes["C"] >= 36  # 3 hours


def test_regime_shifts_are_found(greenhouse: pd.DataFrame, eras: pd.DataFrame) -> None:
    n = len(greenhouse)
    for row in (n // 3, 2 * n // 3):
        shift = greenhouse.index[row]
        nearest = min(abs(t - shift) for t in _bounds(eras, "B"))
        assert nearest <= pd.Timedelta("1D")


def test_deterministic(greenhouse: pd.DataFrame, eras: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EraWarning)
        again = detect_eras(greenhouse.copy(), entity="sim/1")
    pd.testing.assert_frame_equal(eras, again)


def test_bocpd_method_is_nested(greenhouse: pd.DataFrame) -> None:
    cfg = EraConfig(method="bocpd", signals=("air_temp_c", "rh_percent", "pipe_temp_1_c"))
    table = detect_eras(greenhouse, entity="sim/1", config=cfg)
    a, b, c = (_bounds(table, lv) for lv in ("A", "B", "C"))
    assert a <= b <= c
    assert len(c) > 1
    assert set(table.loc[table["level"] == "C", "method"]) == {"bocpd"}
    assert table["signals"].iloc[0] == "air_temp_c,rh_percent,pipe_temp_1_c"


def test_l2_model_and_explicit_penalty(greenhouse: pd.DataFrame) -> None:
    loose = EraConfig(
        model="l2", signals=("air_temp_c",), level_c=LevelConfig(penalty_scale=1, pen=50.0)
    )
    tight = EraConfig(
        model="l2", signals=("air_temp_c",), level_c=LevelConfig(penalty_scale=1, pen=5000.0)
    )
    n_loose = (detect_eras(greenhouse, entity="e", config=loose)["level"] == "C").sum()
    n_tight = (detect_eras(greenhouse, entity="e", config=tight)["level"] == "C").sum()
    assert n_loose > n_tight >= 1


def test_too_short_series_is_one_era_per_level(greenhouse: pd.DataFrame) -> None:
    table = detect_eras(greenhouse.iloc[:10], entity="e", config=EraConfig(signals=("air_temp_c",)))
    assert table.groupby("level").size().to_dict() == {"A": 1, "B": 1, "C": 1}
    assert (table["rows"] == 10).all()


def test_constant_signal_is_one_era(greenhouse: pd.DataFrame) -> None:
    table = detect_eras(greenhouse, entity="e", config=EraConfig(signals=("co2_ppm",)))
    assert table.groupby("level").size().to_dict() == {"A": 1, "B": 1, "C": 1}
    assert table["signals"].iloc[0] == "co2_ppm"


def test_default_signals_skip_constant_and_all_nan(greenhouse: pd.DataFrame) -> None:
    values = greenhouse.assign(rh_percent=np.nan)
    with pytest.warns(EraWarning) as record:
        table = detect_eras(values, entity="e")
    messages = " ".join(str(w.message) for w in record)
    assert "rh_percent" in messages
    assert "co2_ppm" in messages
    assert table["signals"].iloc[0] == "air_temp_c,radiation_w_m2,pipe_temp_1_c"


def test_named_all_nan_signal_is_an_error(greenhouse: pd.DataFrame) -> None:
    values = greenhouse.assign(rh_percent=np.nan)
    with pytest.raises(SignalDataError, match="rh_percent"):
        detect_eras(values, entity="e", config=EraConfig(signals=("air_temp_c", "rh_percent")))


def test_unknown_signal_is_a_config_error(greenhouse: pd.DataFrame) -> None:
    with pytest.raises(UnknownSignalError, match="'air_temperature'") as info:
        detect_eras(greenhouse, entity="e", config=EraConfig(signals=("air_temperature",)))
    assert isinstance(info.value, ConfigError)
    with pytest.raises(UnknownSignalError, match="no default era signal"):
        detect_eras(greenhouse[["outside_temp_c"]], entity="e")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda v: v.iloc[:0], "no rows"),
        (lambda v: v.tz_localize(None), "tz-aware"),
        (lambda v: v.drop(v.index[5]), "regular grid"),
        (lambda v: v.iloc[::-1], "sorted"),
    ],
)
def test_bad_frames_are_data_errors(greenhouse: pd.DataFrame, mutate, match: str) -> None:
    with pytest.raises(DataError, match=match):
        detect_eras(mutate(greenhouse), entity="e")


def test_standardise_handles_constant_and_binary_columns() -> None:
    x = np.column_stack([np.full(100, 5.0), (np.arange(100) % 10 == 0).astype(float)])
    z = standardise(x, scaling="robust")
    assert np.all(np.isfinite(z))
    assert np.all(z[:, 0] == 0.0)
    assert z[:, 1].std() == pytest.approx(1.0)  # IQR is 0: falls back to the std


def test_default_signals_pick_one_per_group() -> None:
    cols = [
        "outside_temp_c",
        "air_temp_c",
        "co2_ppm",
        "rh_percent",
        "par_umol",
        "pipe_temp_2_c",
        "pipe_temp_1_c",
        "lamp_status",
        "curtain_1_percent",
    ]
    assert default_signals(cols) == [
        "air_temp_c",
        "co2_ppm",
        "rh_percent",
        "par_umol",
        "pipe_temp_2_c",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "rbf"},
        {"method": "dynp"},
        {"signals": ()},
        {"signals": "air_temp_c"},
        {"signals": ("a", "a")},
        {"detect_step": "soon"},
        {"variance_floor": 0.0},
        {"detect_step": "-1h"},
        {"level_b": "1D"},
    ],
)
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        EraConfig(**kwargs)


def test_level_config_min_rows() -> None:
    assert LevelConfig(penalty_scale=1.0, min_duration="1D").min_rows(STEP) == 288
    assert LevelConfig(penalty_scale=1.0, min_duration="7min").min_rows(STEP) == 2
    assert LevelConfig(penalty_scale=1.0, min_size=5).min_rows(STEP) == 5
    with pytest.raises(ConfigError):
        LevelConfig(penalty_scale=0.0)
    with pytest.raises(ConfigError, match="positive"):
        LevelConfig(penalty_scale=1.0, min_duration="-1h")
    with pytest.raises(TypeError):
        EraConfig("air_temp_c")  # type: ignore[misc]  # keyword-only


def test_plot_writes_png(greenhouse: pd.DataFrame, eras: pd.DataFrame, tmp_path: Path) -> None:
    out = plot_eras(
        greenhouse, eras, signals=["air_temp_c", "pipe_temp_1_c"], path=tmp_path / "p" / "eras.png"
    )
    assert out == tmp_path / "p" / "eras.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
    with pytest.raises(UnknownSignalError):
        plot_eras(greenhouse, eras, signals=["nope"], path=tmp_path / "x.png")


def test_min_durations_follow_the_grid_step(greenhouse: pd.DataFrame) -> None:
    coarse = greenhouse.resample("10min").mean()
    table = detect_eras(
        coarse, entity="e", config=EraConfig(signals=("air_temp_c", "pipe_temp_1_c"))
    )
    sizes = table.groupby("level")["rows"].min()
    assert sizes["B"] >= 144  # 1 day of 10-minute rows
    assert sizes["A"] >= 7 * 144 or (table["level"] == "A").sum() == 1
    last = table[table["level"] == "C"]["end"].iloc[-1]
    assert last == coarse.index[-1] + pd.Timedelta("10min")


def test_grid_resolution_level_c_equals_ruptures_pelt() -> None:
    """detect_step=None: level C is exact PELT over every grid row, as ruptures finds it."""
    import math

    import ruptures as rpt

    signals = ["air_temp_c", "rh_percent", "pipe_temp_1_c"]
    values = _greenhouse(days=6).interpolate(method="time")
    config = EraConfig(signals=tuple(signals), model="l2", scaling="zscore", detect_step=None)
    eras = detect_eras(values, entity="g", config=config)
    x = values[signals].to_numpy()
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    pen = config.level_c.penalty_scale * len(signals) * math.log(len(z))
    expected = rpt.Pelt(model="l2", min_size=36, jump=1).fit(z).predict(pen=pen)
    level_c = eras[eras["level"] == "C"]
    assert (level_c["rows"].cumsum()).tolist() == expected
    assert len(expected) > 3
