"""Generic ingest: mapped CSV / Parquet / long files, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.errors import ConfigError, DataError, IngestError
from eraflow.ingest import load_mapping, parse_mapping, read_source
from eraflow.ingest.mapping import SourceMapping


def mapping(**fields: object) -> SourceMapping:
    base: dict[str, object] = {
        "name": "src",
        "files": ["data.csv"],
        "entity": "house",
        "time": {"columns": ["time"]},
    }
    base.update(fields)
    return parse_mapping({"sources": [base]}).sources[0]


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_wide_csv_identity_mapping(tmp_path: Path) -> None:
    write(
        tmp_path,
        "time,air_temp_c,co2_ppm\n2024-01-01 00:00,20.5,410\n"
        "2024-01-01 00:05,,415\n2024-01-01 00:10,21.0,\n",
    )
    result = read_source(mapping(), tmp_path)
    frame = result.frame
    assert list(frame.columns) == ["time", "entity", "sensor", "value", "source"]
    assert result.report.rows_read == 3
    assert result.report.values == 4  # two empty cells are absent rows
    air = frame[frame["sensor"] == "air_temp_c"]
    assert air["time"].tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 00:10", tz="UTC"),
    ]
    assert air["value"].tolist() == [20.5, 21.0]


def test_knudjepsen_style_file_with_num_error(tmp_path: Path) -> None:
    # The Knud Jepsen layout: ';', three header rows, decimal comma, quoted local times, #NUM!.
    write(
        tmp_path,
        '"";"mål temp";"CO2"\r\n"";"NORRING:Afd 3";"NORRING:Afd 3"\r\n'
        '"";"°C";"ppm"\r\n'
        '"07-01-2016 00:00:00";20,3;#NUM!\r\n"07-01-2016 00:05:00";"";412,5\r\n',
    )
    m = mapping(
        delimiter=";",
        decimal=",",
        header_rows=3,
        na_values=["", "#NUM!"],
        time={"columns": [0], "format": "%d-%m-%Y %H:%M:%S", "timezone": "Europe/Copenhagen"},
        columns=[
            {"index": 1, "column": "mål temp", "sensor": "air_temp_c"},
            {"index": 2, "sensor": "co2_ppm"},
        ],
    )
    frame = read_source(m, tmp_path).frame.set_index(["sensor", "time"])["value"]
    # CET (UTC+1) in January; #NUM! and the empty cell are missing values, not errors.
    assert frame[("air_temp_c", pd.Timestamp("2016-01-06 23:00", tz="UTC"))] == 20.3
    assert frame[("co2_ppm", pd.Timestamp("2016-01-06 23:05", tz="UTC"))] == 412.5
    assert len(frame) == 2


def test_long_csv_with_sensor_mapping(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ts,gh,name,val\n2024-01-01T00:00:00Z,a,T,20\n2024-01-01T00:00:00Z,b,T,18\n"
        "2024-01-01T00:00:00Z,a,junk,1\n",
    )
    m = mapping(
        layout="long",
        entity=None,
        entity_column="gh",
        sensor_column="name",
        value_column="val",
        time={"columns": ["ts"]},
        columns=[{"column": "T", "sensor": "air_temp_c"}],
    )
    result = read_source(m, tmp_path)
    assert result.report.unmapped_columns == ["junk"]
    got = result.frame.set_index("entity")["value"].to_dict()
    assert got == {"a": 20.0, "b": 18.0}
    assert set(result.frame["sensor"]) == {"air_temp_c"}


def test_parquet_wide_source(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=4, freq="5min", tz="UTC")
    pd.DataFrame({"time": times, "rh_percent": [70.0, np.nan, 72.0, 73.0]}).to_parquet(
        tmp_path / "x.parquet"
    )
    m = mapping(files=["*.parquet"], format="parquet")
    frame = read_source(m, tmp_path).frame
    assert frame["value"].tolist() == [70.0, 72.0, 73.0]
    assert frame["time"].iloc[-1] == times[-1]


def test_range_filter_is_half_open(tmp_path: Path) -> None:
    write(tmp_path, "time,x\n2024-01-01 00:00,1\n2024-01-01 00:05,2\n2024-01-01 00:10,3\n")
    frame = read_source(
        mapping(),
        tmp_path,
        start=pd.Timestamp("2024-01-01 00:05", tz="UTC"),
        end=pd.Timestamp("2024-01-01 00:10", tz="UTC"),
    ).frame
    assert frame["value"].tolist() == [2.0]


def test_scale_and_offset(tmp_path: Path) -> None:
    write(tmp_path, "time,tempF\n2024-01-01 00:00,212\n")
    m = mapping(
        columns=[{"column": "tempF", "sensor": "air_temp_c", "scale": 5 / 9, "offset": -160 / 9}]
    )
    assert read_source(m, tmp_path).frame["value"].iloc[0] == pytest.approx(100.0)


def test_wrong_delimiter_is_named(tmp_path: Path) -> None:
    write(tmp_path, "time;a;b\n2024-01-01 00:00;1;2\n")
    with pytest.raises(IngestError, match=r"delimiter ','.*looks ';'-separated"):
        read_source(mapping(columns=[{"column": "a", "sensor": "a"}]), tmp_path)


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="format"):
        mapping(format="xlsx")


def test_missing_time_column(tmp_path: Path) -> None:
    write(tmp_path, "when,a\n2024-01-01 00:00,1\n")
    with pytest.raises(IngestError, match="time column 'time' not found"):
        read_source(mapping(), tmp_path)


def test_unparseable_timestamp_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "time,a\n2024-01-01 00:00,1\nyesterday,2\n")
    with pytest.raises(IngestError, match=r"line 3: timestamp 'yesterday' does not parse"):
        read_source(mapping(time={"columns": ["time"], "format": "%Y-%m-%d %H:%M"}), tmp_path)


def test_empty_timestamp_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "time,a\n2024-01-01 00:00,1\n,2\n")
    with pytest.raises(IngestError, match="line 3 has no timestamp"):
        read_source(mapping(), tmp_path)


def test_duplicate_timestamps_within_a_source(tmp_path: Path) -> None:
    write(tmp_path, "time,a\n2024-01-01 00:00,1\n2024-01-01 00:00,3\n")
    with pytest.raises(DataError, match=r"2 rows share a timestamp.*2024-01-01 00:00:00\+00:00"):
        read_source(mapping(), tmp_path)
    merged = read_source(mapping(on_duplicate="mean"), tmp_path)
    assert merged.frame["value"].tolist() == [2.0]
    assert merged.report.duplicates_merged == 1


def test_duplicates_across_files_of_one_source(tmp_path: Path) -> None:
    write(tmp_path, "time,a\n2024-01-01 00:00,1\n", "a1.csv")
    write(tmp_path, "time,a\n2024-01-01 00:00,2\n", "a2.csv")
    with pytest.raises(DataError, match="share a timestamp"):
        read_source(mapping(files=["a*.csv"]), tmp_path)


def test_unsorted_input_comes_back_sorted(tmp_path: Path) -> None:
    write(tmp_path, "time,a\n2024-01-01 00:10,3\n2024-01-01 00:00,1\n2024-01-01 00:05,2\n")
    assert read_source(mapping(), tmp_path).frame["value"].tolist() == [1.0, 2.0, 3.0]


def test_non_numeric_column_is_named(tmp_path: Path) -> None:
    write(tmp_path, "time,a\n2024-01-01 00:00,hot\n2024-01-01 00:05,cold\n")
    with pytest.raises(IngestError, match=r"\(a\) is not numeric: e.g. 'hot'"):
        read_source(mapping(), tmp_path)


def test_a_stray_bad_cell_is_counted_not_fatal(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-01 00:{m:02d},{m}\n" for m in range(0, 50, 5))
    write(tmp_path, "time,a\n" + rows + "2024-01-01 00:50,n/a\n")
    result = read_source(mapping(), tmp_path)
    assert result.report.non_numeric_values == {"data.csv:a": 1}
    assert result.report.values == 10


def test_changed_export_header_is_detected(tmp_path: Path) -> None:
    write(tmp_path, "time,a,b\n2024-01-01 00:00,1,2\n")
    m = mapping(columns=[{"index": 1, "column": "b", "sensor": "x"}])
    with pytest.raises(IngestError, match="has the export changed"):
        read_source(m, tmp_path)


def test_ambiguous_name_needs_an_index(tmp_path: Path) -> None:
    write(tmp_path, "time,FD,FD\n2024-01-01 00:00,1,2\n")
    with pytest.raises(IngestError, match=r"'FD' is ambiguous \(positions \[1, 2\]\)"):
        read_source(mapping(columns=[{"column": "FD", "sensor": "x"}]), tmp_path)


def test_no_matching_file(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"no file matches 'nothing-\*.csv'"):
        read_source(mapping(files=["nothing-*.csv"]), tmp_path)


def test_mapping_validation_messages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        mapping(time={"columns": ["t"], "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="set 'entity'"):
        mapping(entity=None)
    with pytest.raises(ConfigError, match="needs 'sensor_column' and 'value_column'"):
        mapping(layout="long")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]\nname=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_mapping(bad)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_mapping(tmp_path / "absent.toml")


def test_json_readings(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[{"uuid": "u1", "Readings": [[1704067200000, 1.5], [1704067500000, 2.5]]}]',
        "s.json",
    )
    m = mapping(
        files=["s.json"],
        format="json-readings",
        layout="long",
        sensor_column="uuid",
        value_column="value",
        time={"columns": ["time"], "unit": "ms"},
        columns=[{"column": "u1", "sensor": "radiation_w_m2"}],
    )
    frame = read_source(m, tmp_path).frame
    assert frame["time"].tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 00:05", tz="UTC"),
    ]
    assert frame["value"].tolist() == [1.5, 2.5]
    write(tmp_path, '{"not": "a list"}', "s.json")
    with pytest.raises(IngestError, match="not a JSON list"):
        read_source(m, tmp_path)
