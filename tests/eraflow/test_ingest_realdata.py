"""Ingest of the real Danish exports, checked against values read by hand from the raw files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.stages.aggregate import aggregate
from eraflow.stages.ingest import IngestResult, load_mapping, read_mapping

pytestmark = pytest.mark.realdata


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def value_at(result: IngestResult, sensor: str, time: str, entity: str | None = None) -> float:
    frame = result.frame
    hit = frame[(frame["sensor"] == sensor) & (frame["time"] == utc(time))]
    if entity is not None:
        hit = hit[hit["entity"] == entity]
    assert len(hit) == 1, f"{sensor} at {time}: {len(hit)} rows"
    return float(hit["value"].iloc[0])


@pytest.fixture(scope="module")
def knudjepsen(greenhouse_dir: Path) -> dict[str, IngestResult]:
    results = read_mapping(load_mapping("knudjepsen"), greenhouse_dir / "knudjepsen")
    return {r.report.source: r for r in results}


@pytest.fixture(scope="module")
def aarslev(greenhouse_dir: Path) -> dict[str, IngestResult]:
    results = read_mapping(load_mapping("aarslev"), greenhouse_dir / "aarslev")
    return {r.report.source: r for r in results}


def test_knudjepsen_row_counts_and_range(knudjepsen: dict[str, IngestResult]) -> None:
    no3 = knudjepsen["kj_no3_climate"]
    # 2015-09-07 00:00 .. 2016-09-08 00:00 local, every 5 min: 367 days * 288 + 1 rows.
    assert no3.report.rows_read == 367 * 288 + 1 == 105697
    # The skipped DST hour (12 rows) and the once-written repeated hour (12 rows) are dropped.
    assert no3.report.dropped_nonexistent == 12
    assert no3.report.dropped_ambiguous == 12
    # First row: 07-09-2015 00:00 CEST = 2015-09-06 22:00 UTC; the last non-empty row is
    # "06-09-2016 10:45:00" CEST (the file ends with empty rows).
    assert no3.report.first_time == utc("2015-09-06 22:00")
    assert no3.report.last_time == utc("2016-09-06 08:45")
    air = no3.frame[no3.frame["sensor"] == "air_temp_c"]
    assert air["time"].is_monotonic_increasing and air["time"].is_unique
    assert str(no3.frame["time"].dt.tz) == "UTC"


def test_knudjepsen_first_rows_by_hand(knudjepsen: dict[str, IngestResult]) -> None:
    no3 = knudjepsen["kj_no3_climate"]
    # "07-09-2015 00:00:00";20,3;8,42;0;0;96,9;100;0;3,12;43,19;31,19
    expected = {
        "air_temp_c": 20.3,
        "outside_temp_c": 8.42,
        "radiation_w_m2": 0.0,
        "co2_ppm": 0.0,
        "curtain_1_percent": 96.9,
        "curtain_2_percent": 100.0,
        "lamp_status": 0.0,
        "humidity_deficit_g_m3": 3.12,
        "pipe_temp_1_c": 43.19,
        "pipe_temp_2_c": 31.19,
    }
    for sensor, value in expected.items():
        assert value_at(no3, sensor, "2015-09-06 22:00") == pytest.approx(value, abs=1e-12)
    # "07-09-2015 00:05:00";20,3;8,4;0;0;96,9;100;0;3,1;43,81;31
    assert value_at(no3, "pipe_temp_1_c", "2015-09-06 22:05") == pytest.approx(43.81)
    assert value_at(no3, "outside_temp_c", "2015-09-06 22:05") == pytest.approx(8.4)
    # The last non-empty row leaves lamp status empty: "06-09-2016 10:45:00";22,09;18,8;518,91
    assert value_at(no3, "radiation_w_m2", "2016-09-06 08:45") == pytest.approx(518.91)
    lamp = no3.frame[(no3.frame["sensor"] == "lamp_status")]
    assert utc("2016-09-06 08:45") not in set(lamp["time"])


def test_knudjepsen_dst_spring_forward(knudjepsen: dict[str, IngestResult]) -> None:
    air = knudjepsen["kj_no3_climate"].frame.query("sensor == 'air_temp_c'").set_index("time")
    # 27-03-2016 01:55 CET = 00:55 UTC (20,51); the file's 02:00-02:55 never happened;
    # 03:00 CEST = 01:00 UTC (20,69). In UTC the series is continuous.
    assert air.loc[utc("2016-03-27 00:55"), "value"] == pytest.approx(20.51)
    assert air.loc[utc("2016-03-27 01:00"), "value"] == pytest.approx(20.69)
    window = air.loc[utc("2016-03-26 23:00") : utc("2016-03-27 03:00")].index
    assert (window[1:] - window[:-1] == pd.Timedelta("5min")).all()


def test_knudjepsen_dst_fall_back(knudjepsen: dict[str, IngestResult]) -> None:
    air = knudjepsen["kj_no3_climate"].frame.query("sensor == 'air_temp_c'").set_index("time")
    # 25-10-2015 01:55 CEST = 2015-10-24 23:55 UTC (22,2); 03:00 CET = 02:00 UTC (22,2, then
    # 03:05 -> 22,11). The single 02:xx hour could be either clock: it is dropped, not guessed.
    assert air.loc[utc("2015-10-24 23:55"), "value"] == pytest.approx(22.2)
    assert air.loc[utc("2015-10-25 02:05"), "value"] == pytest.approx(22.11)
    inside = air.loc[utc("2015-10-25 00:00") : utc("2015-10-25 01:55")]
    assert inside.empty


def test_knudjepsen_merge_keeps_every_value(knudjepsen: dict[str, IngestResult]) -> None:
    climate = knudjepsen["kj_no3_climate"].frame
    extra = knudjepsen["kj_extra"].frame
    extra = extra[extra["entity"] == "kj_no3"]
    start, end = utc("2015-10-01"), utc("2015-12-01")
    grid = aggregate([climate, extra], load_catalogue(), start=start, end=end).grid
    grid = grid.set_index("time")
    catalogue = load_catalogue()
    for frame in (climate, extra):
        part = frame[(frame["time"] >= start) & (frame["time"] < end)]
        for sensor, rows in part.groupby("sensor"):
            spec = catalogue.get(sensor)
            low = -np.inf if spec.valid_min is None else spec.valid_min
            high = np.inf if spec.valid_max is None else spec.valid_max
            rows = rows[(rows["value"] >= low) & (rows["value"] <= high)]
            merged = grid.loc[rows["time"], sensor]
            assert merged.notna().all(), f"{sensor}: a non-null source value was lost"
            if sensor != "humidity_deficit_g_m3":
                np.testing.assert_array_equal(merged.to_numpy(), rows["value"].to_numpy())
    # The shared sensor is the mean of both sources where both have it.
    both = climate[climate["sensor"] == "humidity_deficit_g_m3"].merge(
        extra[extra["sensor"] == "humidity_deficit_g_m3"], on="time"
    )
    both = both[(both["time"] >= start) & (both["time"] < end)]
    np.testing.assert_allclose(
        grid.loc[both["time"], "humidity_deficit_g_m3"].to_numpy(),
        (both["value_x"] + both["value_y"]).to_numpy() / 2,
    )
    # Columns unique to each source are all present on the same rows.
    assert {"air_temp_c", "rh_percent", "vent_lee_percent", "pipe_temp_1_c"} <= set(grid.columns)


def test_knudjepsen_extra_splits_compartments(knudjepsen: dict[str, IngestResult]) -> None:
    extra = knudjepsen["kj_extra"]
    # "08-09-2015 00:00:00";3,1;82;0;0;3,5;81;0;0  (CEST -> 2015-09-07 22:00 UTC)
    assert value_at(extra, "rh_percent", "2015-09-07 22:00", "kj_no3") == 82.0
    assert value_at(extra, "rh_percent", "2015-09-07 22:00", "kj_no4") == 81.0
    assert value_at(extra, "humidity_deficit_g_m3", "2015-09-07 22:00", "kj_no4") == 3.5
    lamps = knudjepsen["kj_lamps"]
    assert set(lamps.frame.query("entity == 'kj_no4'")["sensor"]) == {
        "lamp_group_1",
        "lamp_group_2",
    }


def test_aarslev_cells_with_a_real_dst_gap(aarslev: dict[str, IngestResult]) -> None:
    cell5 = aarslev["aarslev_celle5"]
    assert cell5.report.dropped_nonexistent == 0  # the cell files skip 02:xx themselves
    assert cell5.report.unmapped_columns == ["Celle 5:"]  # two unnamed columns, reported
    # 2014-03-01;00:00:00;"20.8953" (CET) -> 2014-02-28 23:00 UTC
    assert value_at(cell5, "air_temp_c", "2014-02-28 23:00") == pytest.approx(20.8953)
    # 01:50 CET -> 00:50 UTC ("21.0999"), then 03:00 CEST -> 01:00 UTC ("21.1669"): 10 min.
    assert value_at(cell5, "air_temp_c", "2014-03-30 00:50") == pytest.approx(21.0999)
    assert value_at(cell5, "air_temp_c", "2014-03-30 01:00") == pytest.approx(21.1669)


def test_aarslev_decimal_comma_month(aarslev: dict[str, IngestResult]) -> None:
    cell6 = aarslev["aarslev_celle6"]
    # output-2014-04: first row "20.8098", then decimal commas: "20,9742" at 00:10 CEST.
    assert value_at(cell6, "air_temp_c", "2014-03-31 22:00") == pytest.approx(20.8098)
    assert value_at(cell6, "air_temp_c", "2014-03-31 22:10") == pytest.approx(20.9742)
    assert cell6.report.non_numeric_values == {}


def test_aarslev_hourly_weather_and_streams(aarslev: dict[str, IngestResult]) -> None:
    hourly = aarslev["aarslev_mortensdudata"]
    # 2014-01-01 00:00,2014-01-01 00:59,73.8,620.3,0.0,7.7,9.3 (CET -> 2013-12-31 23:00 UTC)
    assert value_at(hourly, "rh_percent", "2013-12-31 23:00") == 73.8
    assert value_at(hourly, "co2_ppm", "2013-12-31 23:00") == 620.3
    assert value_at(hourly, "air_temp_c", "2013-12-31 23:00") == 7.7
    assert hourly.report.dropped_nonexistent == 1  # 2014-03-30 02:00 is written but never was
    weather = aarslev["aarslev_weather"]
    # 1390518000000;-4.250;0.000;0.000;-3.864  (unix ms = UTC)
    assert value_at(weather, "outside_temp_c", "2014-01-23 23:00") == -3.864
    streams = aarslev["aarslev_streams_jan_feb"]
    assert value_at(streams, "radiation_w_m2", "2014-01-23 23:00") == pytest.approx(6.19761e-08)
