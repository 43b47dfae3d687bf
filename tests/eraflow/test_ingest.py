"""Generic ingest: mapped CSV / Parquet / long files, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError, DataError, IngestError
from eraflow.stages.ingest import load_mapping, parse_mapping, read_source
from eraflow.stages.ingest.mapping import SourceMapping


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


# -- rows whose field count is not the header's, byte-order marks, files outside the root -----

RAGGED = (  # the operator's file: a decimal comma in a ','-separated export (line 2)
    "t,temp,co2,rh\n"
    "2024-03-01 00:00:00,20,07,790.9,69.1\n"
    "2024-03-01 00:05:00,20.5,801,70.2\n"
    "2024-03-01 00:10:00,21.25,812,68.5\n"
)
RAGGED_COLUMNS = [
    {"column": "temp", "sensor": "air_temp_c"},
    {"column": "co2", "sensor": "co2_ppm"},
    {"column": "rh", "sensor": "rh_percent"},
]


def ragged_mapping(**fields: object) -> SourceMapping:
    return mapping(time={"columns": ["t"]}, columns=RAGGED_COLUMNS, **fields)


def test_a_row_with_more_fields_than_the_header_is_refused_naming_its_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, RAGGED)
    with pytest.raises(IngestError) as caught:
        read_source(ragged_mapping(), tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 2 has 5 fields, the header has 4 (1 such row); ")
    assert "decimal comma" in message and 'on_ragged = "skip"' in message


def test_on_ragged_skip_skips_and_counts_the_rows_and_keeps_the_good_ones_exact(
    tmp_path: Path,
) -> None:
    write(tmp_path, RAGGED)
    result = read_source(ragged_mapping(on_ragged="skip"), tmp_path)
    assert result.report.ragged_rows_skipped == 1
    assert result.report.rows_read == 2
    got = result.frame.set_index(["sensor", "time"])["value"].to_dict()
    five, ten = (
        pd.Timestamp("2024-03-01 00:05", tz="UTC"),
        pd.Timestamp("2024-03-01 00:10", tz="UTC"),
    )
    assert got == {
        ("air_temp_c", five): 20.5,
        ("air_temp_c", ten): 21.25,
        ("co2_ppm", five): 801.0,
        ("co2_ppm", ten): 812.0,
        ("rh_percent", five): 70.2,
        ("rh_percent", ten): 68.5,
    }


def test_a_short_row_is_refused_at_its_line_as_an_editor_counts_it(tmp_path: Path) -> None:
    # Line 3 is blank, line 4 holds a value with a quoted line break (it ends on line 5), so
    # the short row is the file's 6th line though only its 4th record after the header.
    path = write(
        tmp_path,
        "t;temp;note\n"
        "2024-03-01 00:00:00;20,5;ok\n"
        "\n"
        '2024-03-01 00:05:00;20,6;"two\nlines"\n'
        "2024-03-01 00:10:00;20,7\n"
        "2024-03-01 00:15:00;20,8;ok\n",
    )
    source = mapping(
        delimiter=";",
        decimal=",",
        time={"columns": ["t"]},
        columns=[{"column": "temp", "sensor": "air_temp_c"}],
    )
    with pytest.raises(IngestError) as caught:
        read_source(source, tmp_path)
    assert str(caught.value).startswith(
        f"{path}: line 6 has 2 fields, the header has 3 (1 such row); a row cut short"
    )
    kept = read_source(source.model_copy(update={"on_ragged": "skip"}), tmp_path)
    assert kept.report.ragged_rows_skipped == 1
    assert kept.frame["value"].tolist() == [20.5, 20.6, 20.8]
    assert kept.frame["time"].dt.minute.tolist() == [0, 5, 15]


def test_a_quoted_delimiter_is_one_field_not_a_ragged_row(tmp_path: Path) -> None:
    write(tmp_path, 't,temp,note\n2024-03-01 00:00:00,20.5,"a, b"\n2024-03-01 00:05:00,21,c\n')
    source = mapping(time={"columns": ["t"]}, columns=[{"column": "temp", "sensor": "air_temp_c"}])
    result = read_source(source, tmp_path)
    assert result.frame["value"].tolist() == [20.5, 21.0]
    assert result.report.ragged_rows_skipped == 0


def test_a_file_without_a_header_is_held_to_its_first_rows_width(tmp_path: Path) -> None:
    write(tmp_path, "2024-03-01 00:00,1.5,2.5\n2024-03-01 00:05,3.5\n2024-03-01 00:10,4.5,5.5\n")
    source = mapping(
        header_rows=0,
        time={"columns": [0]},
        columns=[{"index": 1, "sensor": "air_temp_c"}, {"index": 2, "sensor": "co2_ppm"}],
    )
    with pytest.raises(
        IngestError, match=r"line 2 has 2 fields, the first row has 3 \(1 such row\)"
    ):
        read_source(source, tmp_path)
    kept = read_source(source.model_copy(update={"on_ragged": "skip"}), tmp_path).frame
    assert kept[kept["sensor"] == "co2_ppm"]["value"].tolist() == [2.5, 5.5]


def test_a_utf8_file_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(
        b"\xef\xbb\xbft;temp\n2024-03-01 00:00:00;20,5\n2024-03-01 00:05:00;21,0\n"
    )
    source = mapping(
        delimiter=";",
        decimal=",",
        time={"columns": ["t"]},
        columns=[{"column": "temp", "sensor": "air_temp_c"}],
    )
    result = read_source(source, tmp_path)
    assert result.frame["value"].tolist() == [20.5, 21.0]
    assert result.frame["time"].tolist() == [
        pd.Timestamp("2024-03-01 00:00", tz="UTC"),
        pd.Timestamp("2024-03-01 00:05", tz="UTC"),
    ]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("../../etc/*.csv", "has a '..' component"),
        ("exports/../../x.csv", "has a '..' component"),
        ("/etc/*.csv", "is absolute"),
        ("C:\\exports\\*.csv", "is absolute"),
    ],
)
def test_a_files_glob_that_leaves_the_root_is_refused(pattern: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        mapping(files=[pattern])
    message = str(caught.value)
    assert f"source 'src' files: files pattern {pattern!r} {why}" in message
    assert "relative to --data-root" in message


def test_a_symlink_inside_the_root_to_a_file_outside_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    secret = write(outside, "time,air_temp_c\n2024-01-01 00:00,1\n", "secret.csv")
    write(root, "time,air_temp_c\n2024-01-01 00:00,2\n", "data.csv")
    (root / "link.csv").symlink_to(secret)
    with pytest.raises(ConfigError) as caught:
        read_source(mapping(files=["*.csv"]), root)
    message = str(caught.value)
    assert f"matches {root / 'link.csv'}, which resolves to {secret.resolve()}" in message
    assert f"outside the data root {root.resolve()}" in message
    (root / "inside.csv").symlink_to(root / "data.csv")  # a link within the root is fine
    (root / "link.csv").unlink()
    assert read_source(mapping(files=["*.csv"], on_duplicate="first"), root).frame[
        "value"
    ].tolist() == [2.0]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"scale": float("nan")}, "scale = nan is not a finite number"),
        ({"scale": 0.0}, "scale = 0.0 would make every value 0"),
        ({"scale": float("inf")}, "scale = inf is not a finite number"),
        ({"offset": float("-inf")}, "offset = -inf is not a finite number"),
    ],
)
def test_a_scale_or_offset_that_ruins_every_value_is_refused(
    column: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"source 'src' columns\.0\.\w+: {message}"):
        mapping(columns=[{"column": "a", "sensor": "air_temp_c", **column}])


def test_an_unknown_encoding_is_refused_when_the_mapping_loads() -> None:
    with pytest.raises(ConfigError, match="unknown encoding 'utf-99'"):
        mapping(encoding="utf-99")
