"""Aggregation onto the grid: per-kind resampling, column-wise merge, ranges, entities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import Catalogue, load_catalogue
from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.aggregate import aggregate

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def long(
    sensor: str, minutes: list[int], values: list[float], entity: str = "e", source: str = "s"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [T0 + pd.Timedelta(minutes=m) for m in minutes],
            "entity": entity,
            "sensor": sensor,
            "value": np.asarray(values, dtype=float),
            "source": source,
        }
    )


def test_continuous_mean_binary_max_categorical_last() -> None:
    frames = [
        long("air_temp_c", [0, 1, 2, 5, 9], [20, 21, 22, 30, 31]),
        long("lamp_status", [0, 3, 6], [0, 1, 0]),
    ]
    grid = aggregate(frames, load_catalogue(), freq="5min").grid.set_index("time")
    assert grid.loc[T0, "air_temp_c"] == pytest.approx(21.0)
    assert grid.loc[T0 + pd.Timedelta("5min"), "air_temp_c"] == pytest.approx(30.5)
    assert grid.loc[T0, "lamp_status"] == 1.0  # on at any time in the bin
    assert grid.loc[T0 + pd.Timedelta("5min"), "lamp_status"] == 0.0


def test_last_for_counters_uses_time_order() -> None:
    frame = long("heat_energy_kwh", [4, 1, 3], [40, 10, 30])
    grid = aggregate([frame], load_catalogue(), freq="5min").grid
    assert grid["heat_energy_kwh"].tolist() == [40.0]


def test_column_wise_merge_keeps_both_sources() -> None:
    a = long("air_temp_c", [0, 5], [20, 21], source="climate")
    b = long("rh_percent", [0, 5], [70, 71], source="extra")
    result = aggregate([a, b], load_catalogue())
    assert result.grid[["air_temp_c", "rh_percent"]].to_numpy().tolist() == [[20, 70], [21, 71]]


def test_shared_sensor_is_averaged_and_counted() -> None:
    a = long("air_temp_c", [0, 5], [20, 22], source="one")
    b = long("air_temp_c", [0], [21], source="two")
    result = aggregate([a, b], load_catalogue())
    assert result.grid["air_temp_c"].tolist() == [20.5, 22.0]
    row = result.report.per_sensor.set_index("sensor").loc["air_temp_c"]
    assert row["multi_source_bins"] == 1


def test_out_of_range_values_are_dropped_and_counted() -> None:
    frame = long("co2_ppm", [0, 1, 5], [0.0, 400.0, 99999.0])
    result = aggregate([frame], load_catalogue(), start=T0, end=T0 + pd.Timedelta("10min"))
    assert result.grid["co2_ppm"].tolist()[0] == 400.0
    assert np.isnan(result.grid["co2_ppm"].iloc[1])
    assert result.report.per_sensor.set_index("sensor").loc["co2_ppm", "dropped_out_of_range"] == 2


def test_entities_are_kept_apart_on_their_own_grid() -> None:
    a = long("air_temp_c", [0, 10], [20, 21], entity="a")
    b = long("air_temp_c", [5], [18], entity="b")
    grid = aggregate([a, b], load_catalogue()).grid
    assert grid.groupby("entity").size().to_dict() == {"a": 3, "b": 1}
    assert grid.query("entity == 'a'")["air_temp_c"].isna().tolist() == [False, True, False]


def test_explicit_range_defines_the_grid() -> None:
    frame = long("air_temp_c", [7], [20])
    result = aggregate([frame], load_catalogue(), start=T0, end=T0 + pd.Timedelta("30min"))
    assert len(result.grid) == 6
    assert result.grid["time"].iloc[0] == T0
    assert result.grid["air_temp_c"].notna().sum() == 1


def test_unknown_sensor_is_kept_and_reported() -> None:
    result = aggregate([long("leaf_wetness", [0], [0.4])], load_catalogue())
    assert result.report.unknown_sensors == ["leaf_wetness"]
    assert result.grid["leaf_wetness"].tolist() == [0.4]


def test_bad_input() -> None:
    cat = load_catalogue()
    with pytest.raises(DataError, match="no data"):
        aggregate([], cat)
    naive = long("x", [0], [1.0]).assign(time=lambda f: f["time"].dt.tz_localize(None))
    with pytest.raises(DataError, match="tz-aware UTC"):
        aggregate([naive], cat)
    with pytest.raises(DataError, match=r"lack column\(s\) \['sensor'\]"):
        aggregate([long("x", [0], [1.0]).drop(columns="sensor")], cat)
    with pytest.raises(DataError, match="empty range"):
        aggregate(
            [long("x", [0], [1.0])], cat, start=T0 + pd.Timedelta("1D"), end=T0 + pd.Timedelta("2D")
        )
    with pytest.raises(ConfigError, match="fixed positive duration"):
        aggregate([long("x", [0], [1.0])], cat, freq="1MS")
    with pytest.raises(DataError, match="valid range"):
        aggregate([long("co2_ppm", [0], [-5.0])], cat)


def test_native_interval_is_declared_or_the_median_spacing_of_the_source() -> None:
    """Reported per (entity, sensor): a 5-min logger, an hourly one with a gap, a declared one."""
    five = list(range(0, 240, 5))  # 48 readings, every 5 min
    hourly = [0, 60, 120, 240, 300, 360]  # one missed reading: spacings 60, 60, 120, 60, 60
    frames = [
        long("air_temp_c", five, [20.0] * len(five)),
        long("rh_percent", hourly, [70.0] * len(hourly)),
        long("co2_ppm", hourly, [400.0] * len(hourly)),
    ]
    base = load_catalogue()
    specs = {name: base.get(name) for name in base.names}
    specs["co2_ppm"] = specs["co2_ppm"].model_copy(
        update={"native_interval": pd.Timedelta("30min")}
    )
    catalogue = Catalogue(specs, base.greenhouse)
    report = aggregate(frames, catalogue, freq="10min").report.per_sensor.set_index("sensor")
    assert report.at["air_temp_c", "native_interval"] == pd.Timedelta("5min")  # median 5
    assert report.at["rh_percent", "native_interval"] == pd.Timedelta("1h")  # median of 60 x4, 120
    assert report.at["co2_ppm", "native_interval"] == pd.Timedelta("30min")
    assert report["interval_from"].to_dict() == {
        "air_temp_c": "source",
        "co2_ppm": "catalogue",
        "rh_percent": "source",
    }
    assert report["slower_than_grid"].to_dict() == {
        "air_temp_c": False,
        "co2_ppm": True,
        "rh_percent": True,
    }
