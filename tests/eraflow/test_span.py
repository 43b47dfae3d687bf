"""Source spans: bounds and counts from the time columns alone, and the preflight they feed.

The expected sides are computed independently: the real files with the csv module and zoneinfo,
test-written files from the rows the test wrote, the simulator with ``pd.date_range``, and
PostgreSQL with the test's own SQL.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pytest

from eraflow.common.errors import ConfigError, IngestError
from eraflow.config import PipelineConfig, SimulatorSettings
from eraflow.runs.preflight import check_config, check_postgres_source, source_span
from eraflow.stages.ingest import load_mapping, parse_mapping, read_mapping, read_source
from eraflow.stages.ingest.mapping import SourceMapping
from eraflow.stages.ingest.postgres_source import PostgresSourceConfig
from eraflow.stages.ingest.span import (
    EntitySpan,
    SourceSpan,
    check_span,
    clear_scan_cache,
    mapping_span,
    postgres_span,
    scan_source,
    simulator_span,
)
from tests.pg import fresh_database


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# -- the real Knud Jepsen year ----------------------------------------------------------------

KJ_FILES = {  # file -> the entities its rows feed (from the preset's columns)
    "NO3_LAMPEGRP_1.csv": ["kj_no3"],
    "NO4_LAMPEGRP_1.csv": ["kj_no4"],
    "NO3NO4.extra.csv": ["kj_no3", "kj_no4"],
    "NO3-NO4_belysningsgrp.csv": ["kj_no3", "kj_no4"],
}
COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def _to_utc_or_none(text: str, cache: dict[str, datetime | None]) -> datetime | None:
    """A Knud Jepsen stamp in UTC; None for the DST hours the preset drops (by zoneinfo)."""
    if text not in cache:
        wall = datetime(
            int(text[6:10]), int(text[3:5]), int(text[0:2]), int(text[11:13]), int(text[14:16])
        )
        early, late = wall.replace(tzinfo=COPENHAGEN), wall.replace(tzinfo=COPENHAGEN, fold=1)
        skipped = early.astimezone(UTC).astimezone(COPENHAGEN).replace(tzinfo=None) != wall
        repeated = early.utcoffset() != late.utcoffset()
        cache[text] = None if skipped or repeated else early.astimezone(UTC)
    return cache[text]


@pytest.fixture(scope="module")
def kj_files_by_hand(greenhouse_dir: Path) -> dict[str, list[datetime]]:
    """Per file, the UTC time of every row the preset keeps, read with the csv module."""
    cache: dict[str, datetime | None] = {}
    out: dict[str, list[datetime]] = {}
    for name in KJ_FILES:
        with (greenhouse_dir / "knudjepsen" / name).open(encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle, delimiter=";")
            for _ in range(3):
                next(rows)
            stamps = [_to_utc_or_none(row[0], cache) for row in rows if row]
        out[name] = [s for s in stamps if s is not None]
    return out


@pytest.fixture(scope="module")
def kj_by_hand(kj_files_by_hand: dict[str, list[datetime]]) -> dict[str, pd.DatetimeIndex]:
    """Per entity, the UTC times of the rows of every file that feeds it."""
    out: dict[str, list[datetime]] = {"kj_no3": [], "kj_no4": []}
    for name, entities in KJ_FILES.items():
        for entity in entities:
            out[entity] += kj_files_by_hand[name]
    return {entity: pd.DatetimeIndex(times) for entity, times in out.items()}


@pytest.fixture(scope="module")
def kj_span(greenhouse_dir: Path) -> SourceSpan:
    return mapping_span(
        load_mapping("knudjepsen"), greenhouse_dir / "knudjepsen", name="knudjepsen"
    )


@pytest.mark.realdata
def test_knudjepsen_bounds_equal_the_files_read_by_hand(
    kj_span: SourceSpan, kj_by_hand: dict[str, pd.DatetimeIndex]
) -> None:
    assert sorted(kj_span.entities) == ["kj_no3", "kj_no4"]
    for entity, times in kj_by_hand.items():
        part = kj_span.entities[entity]
        assert part.first == times.min() == utc("2015-09-06 22:00")
        assert part.last == times.max() == utc("2016-09-07 22:00")
        assert part.rows == len(times)  # every row, less the 24 dropped DST stamps per file


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2016-01-01", "2016-02-01"),  # winter
        ("2016-03-26", "2016-03-28"),  # across the skipped hour
        ("2015-10-24 12:00", "2015-10-26"),  # across the repeated hour
        ("2016-09-07 21:55", "2016-09-07 22:00"),  # the last stamp but one, alone
    ],
)
def test_knudjepsen_counts_in_a_range_equal_a_count_by_hand(
    greenhouse_dir: Path, kj_by_hand: dict[str, pd.DatetimeIndex], start: str, end: str
) -> None:
    lo, hi = utc(start), utc(end)
    span = mapping_span(
        load_mapping("knudjepsen"),
        greenhouse_dir / "knudjepsen",
        name="knudjepsen",
        start=lo,
        end=hi,
    )
    for entity, times in kj_by_hand.items():
        expected = int(((times >= lo) & (times < hi)).sum())
        assert span.entities[entity].rows == expected > 0


@pytest.mark.realdata
def test_knudjepsen_unknown_entity_and_empty_range_fail_with_the_fix(
    greenhouse_dir: Path,
) -> None:
    root = greenhouse_dir / "knudjepsen"
    unknown = PipelineConfig.build(source="knudjepsen", data_root=root, entities=["kj_no9"])
    with pytest.raises(ConfigError) as caught:
        check_config(unknown)
    assert str(caught.value) == (
        "entities ['kj_no9'] are not in source 'knudjepsen'; it has ['kj_no3', 'kj_no4']: "
        "fix --entities"
    )
    empty = PipelineConfig.build(
        source="knudjepsen", data_root=root, start="2030-01-01", end="2030-02-01"
    )
    with pytest.raises(ConfigError) as caught:
        check_config(empty)
    assert str(caught.value) == (
        "no data in [2030-01-01 00:00 UTC, 2030-02-01 00:00 UTC): source 'knudjepsen' holds "
        "2015-09-06 22:00 .. 2016-09-07 22:00 UTC; choose --start/--end inside it"
    )
    before = PipelineConfig.build(source="knudjepsen", data_root=root, end="2015-09-06 22:00")
    with pytest.raises(ConfigError, match=r"no data in \[the first data, 2015-09-06 22:00 UTC\)"):
        check_config(before)


@pytest.mark.realdata
def test_knudjepsen_partial_overlap_and_chosen_sources_pass(
    greenhouse_dir: Path, kj_files_by_hand: dict[str, list[datetime]]
) -> None:
    root = greenhouse_dir / "knudjepsen"
    check_config(
        PipelineConfig.build(
            source="knudjepsen", data_root=root, start="2016-09-01", end="2017-01-01"
        )
    )
    check_config(
        PipelineConfig.build(
            source="knudjepsen", data_root=root, start="2015-01-01", end="2015-09-07"
        )
    )
    lamps = PipelineConfig.build(
        source="knudjepsen", data_root=root, sources=["kj_lamps"], start="2016-01-01"
    )
    span = source_span(lamps)
    assert span is not None and sorted(span.entities) == ["kj_no3", "kj_no4"]
    by_hand = kj_files_by_hand["NO3-NO4_belysningsgrp.csv"]
    expected = int((pd.DatetimeIndex(by_hand) >= utc("2016-01-01")).sum())
    assert span.entities["kj_no3"].rows == span.entities["kj_no4"].rows == expected


@pytest.mark.realdata
def test_a_real_scan_is_cheap_and_cached(greenhouse_dir: Path) -> None:
    clear_scan_cache()
    config = PipelineConfig.build(
        source="knudjepsen", data_root=greenhouse_dir / "knudjepsen", start="2016-01-01"
    )
    began = time.perf_counter()
    check_config(config)
    cold = time.perf_counter() - began
    began = time.perf_counter()
    check_config(config.model_copy(update={"start": utc("2016-02-01")}))
    cached = time.perf_counter() - began
    assert cold < 5.0 and cached < 1.0, (cold, cached)


@pytest.mark.realdata
def test_aarslev_rows_equal_what_the_reader_reads(greenhouse_dir: Path) -> None:
    mapping = load_mapping("aarslev")
    root = greenhouse_dir / "aarslev"
    for result in read_mapping(mapping, root):
        source = next(s for s in mapping.sources if s.name == result.report.source)
        scan = scan_source(source, root)
        kept = (
            result.report.rows_read
            - result.report.dropped_nonexistent
            - result.report.dropped_ambiguous
        )
        assert sum(len(t) for t in scan.times.values()) == kept, source.name
        frame = result.frame
        for entity, times in scan.times.items():
            own = frame[frame["entity"] == entity]["time"]
            assert pd.Timestamp(int(times[0]), unit="us", tz="UTC") <= own.min()
            assert pd.Timestamp(int(times[-1]), unit="us", tz="UTC") >= own.max()


# -- files written by the test ------------------------------------------------------------------


def one_source(**fields: object) -> SourceMapping:
    base: dict[str, object] = {
        "name": "src",
        "files": ["data.csv"],
        "entity": "house",
        "time": {"columns": ["time"]},
    }
    base.update(fields)
    return parse_mapping({"sources": [base]}).sources[0]


def test_the_scan_is_cached_until_a_file_changes(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("time,air\n2024-01-01 00:00,1\n2024-01-01 00:05,2\n", encoding="utf-8")
    source = one_source()
    first = scan_source(source, tmp_path)
    assert scan_source(source, tmp_path) is first
    assert scan_source(source, str(tmp_path)) is first  # the same files, however named
    with data.open("a", encoding="utf-8") as handle:
        handle.write("2024-01-01 00:10,3\n")
    grown = scan_source(source, tmp_path)
    assert grown is not first
    assert len(grown.times["house"]) == 3
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size
    assert scan_source(source, tmp_path) is not grown
    (tmp_path / "more.csv").write_text("time,air\n2024-02-01 00:00,1\n", encoding="utf-8")
    wider = one_source(files=["*.csv"])
    span = mapping_span(parse_mapping({"sources": [wider.model_dump()]}), tmp_path, name="m")
    assert span.entities["house"].last == utc("2024-02-01")


def test_a_long_file_with_an_entity_column(tmp_path: Path) -> None:
    rows = [
        ("2024-01-01 00:00", "gh1", "t", 1.0),
        ("2024-01-01 00:10", "gh1", "co2", 400.0),
        ("2024-01-02 06:00", "gh1", "t", 2.0),
        ("2023-12-31 23:00", "gh2", "t", 3.0),
        ("2024-01-01 12:00", "gh2", "t", 4.0),
        ("2023-06-01 00:00", "gh3", "junk", 5.0),  # an unmapped sensor: not read at all
        ("2024-01-05 00:00", "gh2", "outside", 6.0),  # mapped to its own entity
    ]
    (tmp_path / "long.csv").write_text(
        "stamp;house;name;val\n" + "".join(f"{t};{h};{n};{v}\n" for t, h, n, v in rows),
        encoding="utf-8",
    )
    source = one_source(
        files=["long.csv"],
        layout="long",
        delimiter=";",
        entity=None,
        entity_column="house",
        sensor_column="name",
        value_column="val",
        time={"columns": ["stamp"], "format": "%Y-%m-%d %H:%M", "timezone": "Europe/Berlin"},
        columns=[
            {"column": "t", "sensor": "air_temp_c"},
            {"column": "co2", "sensor": "co2_ppm"},
            {"column": "outside", "sensor": "outside_temp_c", "entity": "weather"},
        ],
    )
    mapping = parse_mapping({"sources": [source.model_dump()]})
    span = mapping_span(mapping, tmp_path, name="long.toml", start=utc("2024-01-01"))
    berlin = ZoneInfo("Europe/Berlin")

    def when(text: str) -> pd.Timestamp:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=berlin)
        return pd.Timestamp(local.astimezone(UTC))

    assert sorted(span.entities) == ["gh1", "gh2", "weather"]
    assert span.entities["gh1"].first == when("2024-01-01 00:00")
    assert span.entities["gh1"].last == when("2024-01-02 06:00")
    assert span.entities["gh2"].first == when("2023-12-31 23:00")
    assert span.entities["weather"].last == when("2024-01-05 00:00")
    owner = {"t": None, "co2": None, "outside": "weather"}  # junk: unmapped
    expected: dict[str, int] = {}
    for stamp, house, name, _ in rows:
        if name in owner and when(stamp) >= utc("2024-01-01"):
            entity = owner[name] or house
            expected[entity] = expected.get(entity, 0) + 1
    assert expected == {"gh1": 1, "gh2": 1, "weather": 1}
    assert {e: s.rows for e, s in span.entities.items()} == expected
    read = read_source(mapping.sources[0], tmp_path, start=utc("2024-01-01")).frame
    assert read.groupby("entity").size().to_dict() == expected
    with pytest.raises(ConfigError, match=r"\['gh3'\] are not in source 'long.toml'; it has"):
        check_span(span, entities=["gh3"], start=utc("2024-01-01"), end=None)
    late = mapping_span(mapping, tmp_path, name="long.toml", start=utc("2024-01-02"))
    with pytest.raises(ConfigError, match=r"entities \['gh2'\] have no data in"):
        check_span(late, entities=["gh1", "gh2"], start=utc("2024-01-02"), end=None)
    check_span(late, entities=None, start=utc("2024-01-02"), end=None)  # some entity has rows


def test_a_wide_parquet_file_with_an_entity_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "t": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-03 00:00"]),
            "site": ["a", "b", "a"],
            "air": [1.0, 2.0, 3.0],
        }
    )
    frame.to_parquet(tmp_path / "wide.parquet")
    source = one_source(
        files=["*.parquet"],
        format="parquet",
        entity=None,
        entity_column="site",
        time={"columns": ["t"]},
    )
    span = mapping_span(
        parse_mapping({"sources": [source.model_dump()]}),
        tmp_path,
        name="pq",
        end=utc("2024-01-02"),
    )
    assert span.entities["a"].first == utc("2024-01-01") and span.entities["a"].rows == 1
    assert span.entities["a"].last == utc("2024-01-03")
    assert span.entities["b"].rows == 1


def test_a_dst_policy_that_raises_does_not_stop_a_span(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text(
        "time,air\n2024-03-31 01:30,1\n2024-03-31 02:30,2\n2024-03-31 03:30,3\n",
        encoding="utf-8",
    )
    source = one_source(
        time={"columns": ["time"], "timezone": "Europe/Copenhagen", "nonexistent": "raise"}
    )
    scan = scan_source(source, tmp_path)
    assert len(scan.times["house"]) == 3  # the reader refuses 02:30; the span counts it


def test_a_range_the_span_was_not_counted_for_is_refused() -> None:
    span = simulator_span(SimulatorSettings(), start=utc("2024-01-01"), end=utc("2024-01-02"))
    with pytest.raises(ValueError, match="build it for the range it checks"):
        check_span(span, entities=None, start=utc("2024-01-01"), end=None)


# -- the simulator --------------------------------------------------------------------------


def test_the_simulator_span_and_a_range_outside_it() -> None:
    settings = SimulatorSettings(days=42, entities=["sim_a", "sim_b"])
    lo, hi = utc("2024-02-10"), utc("2024-03-01")
    span = simulator_span(settings, start=lo, end=hi)
    minutes = pd.date_range("2024-01-01", periods=42 * 24 * 60, freq="1min", tz="UTC")
    assert span.entities["sim_a"].first == minutes[0]
    assert span.entities["sim_a"].last == minutes[-1]
    assert span.entities["sim_b"].rows == int(((minutes >= lo) & (minutes < hi)).sum()) > 0
    check_span(span, entities=["sim_a"], start=lo, end=hi)  # partial overlap: fine

    outside = PipelineConfig.build(start="2024-03-01", end="2024-04-01")
    with pytest.raises(ConfigError) as caught:
        check_config(outside)
    assert str(caught.value) == (
        "no data in [2024-03-01 00:00 UTC, 2024-04-01 00:00 UTC): the simulator covers "
        "[2024-01-01 00:00 UTC, 2024-02-12 00:00 UTC); choose --start/--end inside it, or "
        "simulate that range: --simulator.start 2024-03-01 --simulator.days 31"
    )
    with pytest.raises(ConfigError, match=r"\['nobody'\] are not simulated"):
        check_config(PipelineConfig.build(entities=["sim_a", "nobody"]))
    check_config(PipelineConfig.build(simulator={"start": "2030-01-01"}, start="2030-01-05"))


# -- PostgreSQL -------------------------------------------------------------------------------

T0 = pd.Timestamp("2024-03-30 22:00", tz="UTC")


@pytest.fixture(scope="module")
def pg() -> Iterator[psycopg.Connection]:
    """A fresh database with a wide, a long and a naive-time sensor table."""
    with fresh_database() as (dsn, _), psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE TABLE wide_src (time timestamptz, entity text, air double precision)")
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO wide_src VALUES (%s, %s, %s)",
                [
                    ((T0 + pd.Timedelta(hours=i * (k + 1))).to_pydatetime(), e, float(i))
                    for k, e in enumerate(["a", "b", "c"])
                    for i in range(10 + k)
                ],
            )
        db.execute("CREATE TABLE long_src (ts timestamptz, house text, name text, val real)")
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO long_src VALUES (%s, %s, %s, %s)",
                [
                    ((T0 + pd.Timedelta(minutes=30 * i)).to_pydatetime(), e, s, 1.0)
                    for e in ("a", "b")
                    for s in ("temp", "junk")
                    for i in range(8 if s == "temp" else 20)
                ],
            )
        db.execute("CREATE TABLE naive_src (stamp timestamp, air double precision)")
        with db.cursor() as cur:
            local = pd.date_range("2024-03-30 20:00", periods=12, freq="1h")
            cur.executemany(
                "INSERT INTO naive_src VALUES (%s, %s)",
                [(t.to_pydatetime(), 1.0) for t in local],
            )
        yield db


def one_row(db: psycopg.Connection, query: str) -> tuple[Any, ...]:
    row = db.execute(query).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.postgres
def test_postgres_span_equals_the_tables_own_min_max_count(pg: psycopg.Connection) -> None:
    lo, hi = T0 + pd.Timedelta(hours=3), T0 + pd.Timedelta(hours=9)
    config = PostgresSourceConfig(table="wide_src")
    span = postgres_span(config, pg, start=lo, end=hi)
    expected = pg.execute(
        "SELECT entity, min(time), max(time), "
        "sum(CASE WHEN time >= %s AND time < %s THEN 1 ELSE 0 END) "
        "FROM wide_src GROUP BY entity ORDER BY entity",
        [lo.to_pydatetime(), hi.to_pydatetime()],
    ).fetchall()
    assert sorted(span.entities) == [r[0] for r in expected] == ["a", "b", "c"]
    for entity, first, last, rows in expected:
        part = span.entities[entity]
        assert (part.first, part.last, part.rows) == (
            pd.Timestamp(first),
            pd.Timestamp(last),
            int(rows),
        )
    whole = postgres_span(config, pg)
    assert whole.rows == one_row(pg, "SELECT count(*) FROM wide_src")[0]


@pytest.mark.postgres
def test_postgres_span_of_a_long_table_keeps_only_mapped_sensors(pg: psycopg.Connection) -> None:
    config = PostgresSourceConfig(
        table="long_src",
        layout="long",
        time_column="ts",
        entity_column="house",
        sensor_column="name",
        value_column="val",
        sensors={"temp": "air_temp_c"},
    )
    span = postgres_span(config, pg)
    first, last, rows = one_row(
        pg, "SELECT min(ts), max(ts), count(*) FROM long_src WHERE house = 'a' AND name = 'temp'"
    )
    assert span.entities["a"] == type(span.entities["a"])(
        pd.Timestamp(first), pd.Timestamp(last), rows
    )


@pytest.mark.postgres
def test_postgres_span_of_naive_local_times(pg: psycopg.Connection) -> None:
    config = PostgresSourceConfig(
        table="naive_src",
        time_column="stamp",
        entity_column=None,
        entity="house",
        timezone="Europe/Copenhagen",
    )
    span = postgres_span(config, pg, start=utc("2024-03-31 00:00"))
    first, last, rows = one_row(
        pg,
        "SELECT min(stamp AT TIME ZONE 'Europe/Copenhagen'), "
        "max(stamp AT TIME ZONE 'Europe/Copenhagen'), "
        "count(*) FILTER (WHERE stamp AT TIME ZONE 'Europe/Copenhagen' >= '2024-03-31 00:00Z') "
        "FROM naive_src",
    )
    part = span.entities["house"]
    assert (part.first, part.last, part.rows) == (pd.Timestamp(first), pd.Timestamp(last), rows)


@pytest.mark.postgres
def test_check_postgres_span_names_the_fix(pg: psycopg.Connection) -> None:
    def config(**fields: object) -> PipelineConfig:
        return PipelineConfig.build(
            source="postgres", source_block="b", postgres_source={"table": "wide_src"}, **fields
        )

    with pytest.raises(ConfigError) as caught:
        check_postgres_source(config(entities=["a", "zz"]), pg)
    assert str(caught.value) == (
        "entities ['zz'] are not in source 'postgres (table wide_src)'; it has "
        "['a', 'b', 'c']: fix --entities"
    )
    with pytest.raises(ConfigError, match=r"no data in \[2030-01-01 00:00 UTC, the last data\)"):
        check_postgres_source(config(start="2030-01-01"), pg)
    span = check_postgres_source(config(end=str(T0 + pd.Timedelta(hours=1))), pg)
    assert span.rows == 3  # one row of each entity before the end


# -- ragged rows and byte-order marks: the scan agrees with the reader ---------------------------

RAGGED = (  # a decimal comma in a ','-separated export, on line 2
    "t,temp,co2,rh\n"
    "2024-03-01 00:00:00,20,07,790.9,69.1\n"
    "2024-03-01 00:05:00,20.5,801,70.2\n"
    "2024-03-01 00:10:00,21.25,812,68.5\n"
)


def ragged_source(**fields: object) -> SourceMapping:
    return one_source(
        time={"columns": ["t"]},
        columns=[
            {"column": "temp", "sensor": "air_temp_c"},
            {"column": "co2", "sensor": "co2_ppm"},
            {"column": "rh", "sensor": "rh_percent"},
        ],
        **fields,
    )


def test_the_scan_refuses_a_ragged_file_at_the_readers_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(RAGGED, encoding="utf-8")
    clear_scan_cache()
    with pytest.raises(IngestError) as scanned:
        scan_source(ragged_source(), tmp_path)
    with pytest.raises(IngestError) as read:
        read_source(ragged_source(), tmp_path)
    assert str(scanned.value).startswith(
        f"{path}: line 2 has 5 fields, the header has 4 (1 such row); "
    )
    assert str(scanned.value) == str(read.value)


def test_the_scan_skips_the_rows_the_reader_skips(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text(RAGGED, encoding="utf-8")
    clear_scan_cache()
    source = ragged_source(on_ragged="skip")
    span = mapping_span(parse_mapping({"sources": [source.model_dump()]}), tmp_path, name="m")
    assert span.entities["house"] == EntitySpan(utc("2024-03-01 00:05"), utc("2024-03-01 00:10"), 2)
    read = read_source(source, tmp_path)
    assert read.report.ragged_rows_skipped == 1
    assert sorted(set(read.frame["time"])) == [utc("2024-03-01 00:05"), utc("2024-03-01 00:10")]


def test_the_scan_reads_a_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(
        b"\xef\xbb\xbftime;air\n2024-03-01 00:00;20,5\n2024-03-01 00:05;21,0\n"
    )
    clear_scan_cache()
    source = one_source(delimiter=";", decimal=",")
    span = mapping_span(parse_mapping({"sources": [source.model_dump()]}), tmp_path, name="m")
    assert span.entities["house"] == EntitySpan(utc("2024-03-01 00:00"), utc("2024-03-01 00:05"), 2)
