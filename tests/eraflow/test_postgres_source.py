"""Reading sensor tables from a real PostgreSQL: wide and long layouts, filters, hostile names."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from eraflow.common.errors import ConfigError, DataError, IngestError
from eraflow.stages.ingest import LONG_COLUMNS
from eraflow.stages.ingest.postgres_source import PostgresSourceConfig, read_postgres
from tests.pg import fresh_database

pytestmark = pytest.mark.postgres

T0 = pd.Timestamp("2024-03-30 22:00", tz="UTC")
TIMES = pd.date_range(T0, periods=12, freq="1h")
HOSTILE = 'x"; DROP TABLE y; --'


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    """A fresh database with a wide, a long and a naive-time source table."""
    with fresh_database() as (dsn, _), psycopg.connect(dsn, autocommit=True) as db:
        _fill(db)
        yield db


def _fill(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE y (id int)")
    db.execute(
        sql.SQL(
            "CREATE TABLE wide_src (time timestamptz, entity text, air double "
            "precision, co2 integer, lamp boolean, note text, {} real)"
        ).format(sql.Identifier(HOSTILE))
    )
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO wide_src VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    t.to_pydatetime(),
                    e,
                    None if i == 3 else 20.0 + i + k,
                    400 + i,
                    i % 2 == 0,
                    "n",
                    0.5 * i,
                )
                for k, e in enumerate(["a", "b", "c"])
                for i, t in enumerate(TIMES)
            ],
        )
    db.execute("CREATE SCHEMA src")
    db.execute(
        "CREATE TABLE src.long_src (ts timestamptz, house text, name text, val real, extra text)"
    )
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO src.long_src VALUES (%s, %s, %s, %s, 'x')",
            [
                (t.to_pydatetime(), e, s, float(i) + (100 if s == "co2" else 0))
                for e in ("a", "b")
                for s in ("temp", "co2", "junk")
                for i, t in enumerate(TIMES)
            ],
        )
    db.execute("CREATE TABLE naive_src (stamp timestamp, air double precision)")
    with db.cursor() as cur:
        local = pd.date_range("2024-03-31 00:00", periods=6, freq="30min")  # DST: 02:00 skipped
        cur.executemany(
            "INSERT INTO naive_src VALUES (%s, %s)",
            [(t.to_pydatetime(), float(i)) for i, t in enumerate(local)],
        )


def expected_wide(entities: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    rows = []
    for k, entity in enumerate(["a", "b", "c"]):
        for i, t in enumerate(TIMES):
            if entity in entities and start <= t < end:
                if i != 3:
                    rows.append((t, entity, "air", 20.0 + i + k))
                rows.append((t, entity, "co2", 400.0 + i))
                rows.append((t, entity, HOSTILE, 0.5 * i))
    frame = pd.DataFrame(rows, columns=["time", "entity", "sensor", "value"])
    return frame.sort_values(["entity", "sensor", "time"]).reset_index(drop=True)


def test_wide_table_with_range_and_entity_filters(conn: psycopg.Connection) -> None:
    config = PostgresSourceConfig(table="wide_src", name="pg")
    start, end = TIMES[2], TIMES[8]
    result = read_postgres(config, conn, start=start, end=end, entities=["a", "c"])
    frame = result.frame
    assert frame.columns.tolist() == LONG_COLUMNS
    assert str(frame["time"].dtype) == "datetime64[us, UTC]"
    assert frame["entity"].dtype == "string" and frame["value"].dtype == "float64"
    assert (frame["source"] == "pg").all()
    want = expected_wide(["a", "c"], start, end)
    pd.testing.assert_frame_equal(frame.drop(columns="source"), want, check_dtype=False)
    # numeric columns are read by default; lamp (bool) and note (text) are reported, not read
    assert result.report.sensors == sorted(["air", "co2", HOSTILE])
    assert set(result.report.unmapped_columns) == {"lamp", "note"}
    assert result.report.values == len(want) and result.report.entities == ["a", "c"]


def test_wide_table_with_a_column_mapping_and_quoted_names(conn: psycopg.Connection) -> None:
    config = PostgresSourceConfig(
        table="public.wide_src",
        columns={"air": "air_temp_c", "lamp": "lamp_status", HOSTILE: "odd"},
    )
    frame = read_postgres(config, conn, entities=["b"]).frame
    lamp = frame[frame["sensor"] == "lamp_status"]["value"].tolist()
    assert lamp == [1.0, 0.0] * 6
    assert frame[frame["sensor"] == "odd"]["value"].tolist() == [0.5 * i for i in range(12)]
    assert conn.execute("SELECT to_regclass('y')").fetchone() == ("y",)


def test_long_table_with_names_and_sensor_mapping(conn: psycopg.Connection) -> None:
    config = PostgresSourceConfig(
        table="src.long_src",
        layout="long",
        time_column="ts",
        entity_column="house",
        sensor_column="name",
        value_column="val",
        sensors={"temp": "air_temp_c", "co2": "co2_ppm"},
    )
    result = read_postgres(config, conn, start=TIMES[1], end=TIMES[4], entities=["b"])
    frame = result.frame
    assert sorted(frame["sensor"].unique()) == ["air_temp_c", "co2_ppm"]
    assert frame[frame["sensor"] == "co2_ppm"]["value"].tolist() == [101.0, 102.0, 103.0]
    assert frame["time"].min() == TIMES[1] and frame["time"].max() == TIMES[3]
    assert (frame["entity"] == "b").all()
    everything = read_postgres(config.model_copy(update={"sensors": None}), conn).frame
    assert len(everything) == 2 * 3 * 12


def test_naive_times_are_localised_and_constant_entity(conn: psycopg.Connection) -> None:
    config = PostgresSourceConfig(
        table="naive_src",
        time_column="stamp",
        entity_column=None,
        entity="gh1",
        timezone="Europe/Copenhagen",
    )
    frame = read_postgres(config, conn).frame
    assert (frame["entity"] == "gh1").all() and len(frame) == 6
    assert frame["time"].iloc[0] == pd.Timestamp("2024-03-30 23:00", tz="UTC")
    later = read_postgres(config, conn, start=pd.Timestamp("2024-03-31 00:00", tz="UTC")).frame
    assert later["value"].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert read_postgres(config, conn, entities=["other"]).frame.empty


def test_hostile_or_wrong_names_never_execute(conn: psycopg.Connection) -> None:
    with pytest.raises(ConfigError, match=r"schema\.table"):
        PostgresSourceConfig.parse({"table": "x; drop table y"})
    with pytest.raises(ValueError, match=r"schema\.table"):
        PostgresSourceConfig(table="y; DROP TABLE y")
    # a column name is quoted, never spliced: it is looked up and reported as absent
    config = PostgresSourceConfig(table="wide_src", columns={"air; DROP TABLE y": "x"})
    with pytest.raises(IngestError, match="no column"):
        read_postgres(config, conn)
    with pytest.raises(IngestError, match="does not exist"):
        read_postgres(PostgresSourceConfig(table="nope"), conn)
    with pytest.raises(IngestError, match="not numeric"):
        read_postgres(PostgresSourceConfig(table="wide_src", columns={"note": "n"}), conn)
    with pytest.raises(ConfigError, match="exactly one"):
        PostgresSourceConfig.parse({"table": "t", "entity": "a"})
    assert conn.execute("SELECT count(*) FROM y").fetchone() == (0,)


def test_duplicates_follow_the_policy(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE dup_src (time timestamptz, entity text, v double precision)")
    conn.execute(
        "INSERT INTO dup_src VALUES (%s, 'a', 1), (%s, 'a', 3)",
        [T0.to_pydatetime(), T0.to_pydatetime()],
    )
    with pytest.raises(DataError, match="on_duplicate"):
        read_postgres(PostgresSourceConfig(table="dup_src"), conn)
    result = read_postgres(PostgresSourceConfig(table="dup_src", on_duplicate="mean"), conn)
    assert result.frame["value"].tolist() == [2.0] and result.report.duplicates_merged == 1


def test_streams_in_small_blocks_and_accepts_a_dsn(conn: psycopg.Connection) -> None:
    config = PostgresSourceConfig(table="wide_src", block_bytes=4096)
    blocks = read_postgres(config, conn).frame
    dsn = conn.info.dsn
    whole = read_postgres(config.model_copy(update={"block_bytes": 1 << 22}), dsn).frame
    pd.testing.assert_frame_equal(blocks, whole)
    assert len(whole) == 3 * (12 + 11 + 12) and not np.isnan(whole["value"]).any()
