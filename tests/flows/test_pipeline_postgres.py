"""The pipeline from a PostgreSQL source to a PostgreSQL sink, on the real Knud Jepsen data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from blocks.postgres import PostgresConnection, PostgresStoreBlock
from eraflow.runs.load_source import load_frame
from eraflow.runs.scope import read_feature_matrix
from eraflow.stages.ingest import load_mapping, read_mapping
from eraflow.store import Key, ParquetStore, PostgresStore
from flows.pipeline import feature_pipeline
from tests.pg import fresh_database

pytestmark = [pytest.mark.postgres, pytest.mark.realdata, pytest.mark.slow]

START, END = "2015-10-01", "2015-11-01"
SOURCES = ["kj_no3_climate", "kj_no4_climate"]


@pytest.fixture(scope="module")
def loaded_database(greenhouse_dir: Path) -> Iterator[str]:
    """A database whose ``sensor_data`` table holds October 2015 of both compartments."""
    results = read_mapping(
        load_mapping("knudjepsen"),
        greenhouse_dir / "knudjepsen",
        sources=SOURCES,
        start=pd.Timestamp(START, tz="UTC"),
        end=pd.Timestamp(END, tz="UTC"),
    )
    long = pd.concat([r.frame for r in results], ignore_index=True)
    with fresh_database() as (dsn, _), psycopg.connect(dsn) as conn:
        load_frame(conn, long, table="sensor_data", layout="wide")
        yield dsn


def test_postgres_to_postgres_equals_files_to_parquet(
    loaded_database: str, tmp_path: Path, greenhouse_dir: Path
) -> None:
    conninfo = psycopg.conninfo.conninfo_to_dict(loaded_database)
    connection = PostgresConnection(
        host=str(conninfo.get("host", "127.0.0.1")),
        port=int(conninfo.get("port", 5432)),
        database=str(conninfo["dbname"]),
        user=str(conninfo.get("user", "postgres")),
    )
    connection.save("kj-source", overwrite=True)
    PostgresStoreBlock(connection=connection, db_schema="results").save(
        "kj-results", overwrite=True
    )
    params = {
        "source": "postgres",
        "source_block": "kj-source",
        "postgres_source": {"table": "sensor_data", "layout": "wide"},
        "store_block": "eraflow-postgres-store/kj-results",
        "start": START,
        "end": END,
    }
    state = feature_pipeline(**params, return_state=True)
    assert state.is_completed(), state.message
    assert "password" not in state.result().store

    files = feature_pipeline(
        source="knudjepsen",
        data_root=str(greenhouse_dir / "knudjepsen"),
        sources=SOURCES,
        start=START,
        end=END,
        store=str(tmp_path),
        return_state=True,
    )
    assert files.is_completed(), files.message

    parquet = ParquetStore(tmp_path)
    with PostgresStore(loaded_database, schema="results") as store:
        for name in ("grid", "coverage", "eras", "features", "selection"):
            from_postgres = store.read(name).drop(columns=["run_id", "written_at"], errors="ignore")
            from_files = parquet.read(name).drop(columns=["run_id", "written_at"], errors="ignore")
            pd.testing.assert_frame_equal(from_postgres, from_files, check_dtype=False, obj=name)
        assert len(store.read("grid", Key("kj_no3"))) > 31 * 288  # one row per sensor and time
        # the feature matrix, thousands of features wide, from either store: the same frame
        for level in ("A", "B", "C"):
            wide = read_feature_matrix(store, "kj_no3+kj_no4", level)
            assert wide.shape[1] > 1000 if level != "A" else wide.shape[1] > 2
            pd.testing.assert_frame_equal(
                wide, read_feature_matrix(parquet, "kj_no3+kj_no4", level), obj=level
            )
        grid_rows = len(store.read("grid"))

    again = feature_pipeline(**params, return_state=True)  # idempotent re-run of the range
    assert again.is_completed()
    assert again.result().feature_rows == 0
    with PostgresStore(loaded_database, schema="results") as store:
        assert len(store.read("grid")) == grid_rows


def test_parquet_source_to_parquet_store(greenhouse_dir: Path, tmp_path: Path) -> None:
    results = read_mapping(
        load_mapping("knudjepsen"),
        greenhouse_dir / "knudjepsen",
        sources=SOURCES,
        start=pd.Timestamp(START, tz="UTC"),
        end=pd.Timestamp(END, tz="UTC"),
    )
    exports = tmp_path / "exports"
    exports.mkdir()
    pd.concat([r.frame for r in results], ignore_index=True).to_parquet(exports / "kj.parquet")
    mapping = tmp_path / "parquet.toml"
    mapping.write_text(
        '[[sources]]\nname = "kj_parquet"\nfiles = ["*.parquet"]\nformat = "parquet"\n'
        'layout = "long"\nentity_column = "entity"\nsensor_column = "sensor"\n'
        'value_column = "value"\ntime = { columns = ["time"] }\n',
        encoding="utf-8",
    )
    state = feature_pipeline(
        source=str(mapping),
        data_root=str(exports),
        start=START,
        end=END,
        store=str(tmp_path / "from-parquet"),
        selection_levels=["A"],
        return_state=True,
    )
    assert state.is_completed(), state.message
    csv = feature_pipeline(
        source="knudjepsen",
        data_root=str(greenhouse_dir / "knudjepsen"),
        sources=SOURCES,
        start=START,
        end=END,
        selection_levels=["A"],
        store=str(tmp_path / "from-csv"),
        return_state=True,
    )
    assert csv.is_completed(), csv.message
    for table in ("grid", "eras"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "from-parquet" / table),
            pd.read_parquet(tmp_path / "from-csv" / table),
        )
