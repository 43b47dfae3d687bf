"""The PostgreSQL store against a real server: round trips, idempotence, atomicity, secrets."""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest

from eraflow.errors import ConfigError, StoreError
from eraflow.store.base import ResultStore
from eraflow.store.parquet import ParquetStore
from eraflow.store.pg_schema import LATEST_VERSION, MIGRATIONS, applied_versions, migrate
from eraflow.store.postgres import (
    PostgresConnectionError,
    PostgresStore,
    split_password,
    stored_name,
)
from tests.pg import fresh_database

pytestmark = pytest.mark.postgres

T0 = pd.Timestamp("2024-01-30", tz="UTC")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    """A fresh database for this module, dropped afterwards."""
    with fresh_database() as (dsn, _):
        yield dsn


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresStore]:
    """A store in its own schema, so tests never see each other's rows."""
    with PostgresStore(pg_dsn, schema=f"t_{uuid.uuid4().hex[:8]}") as opened:
        yield opened


def grid(entity: str, start: pd.Timestamp, periods: int, value: float,
         sensors: tuple[str, ...] = ("air_temp_c",)) -> pd.DataFrame:
    frame = pd.DataFrame({"time": pd.date_range(start, periods=periods, freq="1h"),
                          "entity": entity})
    for sensor in sensors:
        frame[sensor] = value + np.arange(periods, dtype=float)
        frame[f"filled__{sensor}"] = np.arange(periods) % 3 == 1
    return frame


def features(entity: str, n_eras: int, value: float) -> pd.DataFrame:
    rows = [(entity, "A", era, sensor, feat, value + era, "numpy", "run-1", "abc")
            for era in range(n_eras) for sensor in ("air_temp_c", "co2_ppm")
            for feat in ("mean", "quantile__q_0.25")]
    return pd.DataFrame(rows, columns=["entity", "level", "era_id", "sensor", "feature",
                                       "value", "engine", "run_id", "config_hash"])


def eras(entity: str) -> pd.DataFrame:
    return pd.DataFrame({
        "entity": entity, "level": ["A", "A", "B"], "era_id": [0, 1, 0],
        "start": [T0, T0 + pd.Timedelta("1D"), T0],
        "end": [T0 + pd.Timedelta("1D"), T0 + pd.Timedelta("2D"), T0 + pd.Timedelta("2D")],
        "rows": [288, 288, 576], "method": "pelt", "signals": [["air_temp_c"], ["a", "b"], []],
        "score": [1.5, np.nan, 0.25]})


def test_is_a_result_store_and_migrates_once(store: PostgresStore, pg_dsn: str) -> None:
    assert isinstance(store, ResultStore)
    conn = store.connection()
    assert applied_versions(conn, store.schema) == [m.version for m in MIGRATIONS]
    assert migrate(conn, store.schema) == []  # idempotent
    again = PostgresStore(pg_dsn, schema=store.schema)
    assert applied_versions(again.connection(), store.schema)[-1] == LATEST_VERSION
    again.close()


def test_grid_round_trip_matches_parquet(store: PostgresStore, tmp_path: object) -> None:
    g = pd.concat([grid("b", T0, 30, 5.0, ("co2_ppm",)),
                   grid("a", T0, 48, 10.0, ("air_temp_c", "co2_ppm"))], ignore_index=True)
    g["filled__air_temp_c"] = g["filled__air_temp_c"].fillna(False).astype(bool)
    g.loc[3, "co2_ppm"] = np.nan
    end = T0 + pd.Timedelta("48h")
    assert store.write_grid(g, start=T0, end=end) == 78
    parquet = ParquetStore(str(tmp_path))
    parquet.write_grid(g, start=T0, end=end)
    for entity in ("a", "b"):
        pd.testing.assert_frame_equal(store.read_grid(entity=entity),
                                      parquet.read_grid(entity=entity))
    pd.testing.assert_frame_equal(store.read_grid(), parquet.read_grid())
    part = store.read_grid(entity="a", start=T0 + pd.Timedelta("2h"), end=T0 + pd.Timedelta("5h"))
    assert part["time"].tolist() == list(pd.date_range(T0 + pd.Timedelta("2h"), periods=3,
                                                       freq="1h"))
    assert store.read_grid(entity="nobody").columns.tolist() == ["time", "entity"]


def test_rewriting_a_range_twice_is_idempotent(store: PostgresStore) -> None:
    store.write_grid(grid("a", T0, 96, 0.0), start=T0, end=T0 + pd.Timedelta("96h"))
    store.write_grid(grid("b", T0, 96, 0.0), start=T0, end=T0 + pd.Timedelta("96h"))
    mid = T0 + pd.Timedelta("24h")
    store.write_grid(grid("a", mid, 24, 1000.0), start=mid, end=mid + pd.Timedelta("24h"))
    first = store.read_grid()
    store.write_grid(grid("a", mid, 24, 1000.0), start=mid, end=mid + pd.Timedelta("24h"))
    pd.testing.assert_frame_equal(store.read_grid(), first)
    a = first[first["entity"] == "a"].set_index("time")["air_temp_c"]
    assert len(a) == 96 and a.loc[mid] == 1000.0 and a.loc[T0] == 0.0
    assert a.loc[mid + pd.Timedelta("24h")] == 48.0
    assert first.query("entity == 'b'")["air_temp_c"].max() == 95.0

    store.write_table("features", features("a", 3, 1.0), entity="a")
    before = store.read_table("features")
    store.write_table("features", features("a", 3, 1.0), entity="a")
    pd.testing.assert_frame_equal(store.read_table("features"), before)
    assert len(before) == 12


def test_fewer_rows_delete_the_stale_ones(store: PostgresStore) -> None:
    store.write_grid(grid("a", T0, 10, 0.0), start=T0, end=T0 + pd.Timedelta("10h"))
    store.write_grid(grid("a", T0, 4, 5.0), start=T0, end=T0 + pd.Timedelta("10h"))
    assert store.read_grid(entity="a")["air_temp_c"].tolist() == [5.0, 6.0, 7.0, 8.0]


def test_grid_rows_outside_the_range_are_refused(store: PostgresStore) -> None:
    with pytest.raises(StoreError, match="outside"):
        store.write_grid(grid("a", T0, 5, 0.0), start=T0, end=T0 + pd.Timedelta("2h"))


def test_failure_after_the_delete_rolls_everything_back(
        store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write_table("features", features("a", 2, 1.0), entity="a")
    store.write_grid(grid("a", T0, 5, 0.0), start=T0, end=T0 + pd.Timedelta("5h"))
    before = store.read_table("features")

    def broken(*args: object, **kwargs: object) -> None:
        raise psycopg.errors.DataError("injected failure after the delete")

    monkeypatch.setattr(PostgresStore, "_insert_from_stage", broken)
    with pytest.raises(StoreError, match="rolled back"):
        store.write_table("features", features("a", 2, 99.0), entity="a")
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read_table("features"), before)

    bad = grid("a", T0, 5, 99.0)
    bad = pd.concat([bad, bad.iloc[:1]], ignore_index=True)  # duplicate key: fails at INSERT
    with pytest.raises(StoreError, match="rolled back"):
        store.write_grid(bad, start=T0, end=T0 + pd.Timedelta("5h"))
    assert store.read_grid(entity="a")["air_temp_c"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_null_in_a_key_column_fails_mid_batch_and_keeps_old_rows(store: PostgresStore) -> None:
    store.write_table("eras", eras("a"), entity="a")
    broken = eras("a").assign(level=["A", None, "B"], score=7.0)
    with pytest.raises(StoreError, match="level"):
        store.write_table("eras", broken, entity="a")
    assert store.read_table("eras", entity="a")["score"].tolist()[:1] == [1.5]


def test_eras_round_trip_and_keyed_replace(store: PostgresStore) -> None:
    e = eras("a")
    store.write_table("eras", e, entity="a")
    back = store.read_table("eras", entity="a")
    pd.testing.assert_frame_equal(back, e, check_dtype=False)
    assert back["signals"].tolist() == [["air_temp_c"], ["a", "b"], []]
    store.write_table("eras", e.iloc[:1].assign(era_id=7), entity="a",
                      replace_where={"level": "A", "start": (T0, T0 + pd.Timedelta("12h"))})
    back = store.read_table("eras", entity="a")
    assert back[["level", "era_id"]].to_numpy().tolist() == [["A", 1], ["A", 7], ["B", 0]]
    with pytest.raises(StoreError, match="another entity"):
        store.write_table("eras", e, entity="b")
    with pytest.raises(StoreError, match="unknown table"):
        store.read_table("nope")
    with pytest.raises(StoreError, match="no column"):
        store.write_table("eras", e, entity="a", replace_where={"nope": 1})


def test_features_round_trip_and_upsert_by_key(store: PostgresStore) -> None:
    f = features("a", 2, 1.0)
    f.loc[0, "value"] = np.nan
    store.write_table("features", f, entity="a", replace_where={"level": "A"})
    store.write_table("features", features("b", 1, 5.0), entity="b")
    back = store.read_table("features", entity="a")
    pd.testing.assert_frame_equal(back, f, check_dtype=False)
    # a partial write with no replace_where of those rows upserts by key, never duplicates
    update = features("a", 1, 50.0).iloc[:2]
    store.write_table("features", update, entity="a", replace_where={"era_id": 99})
    back = store.read_table("features", entity="a")
    assert len(back) == 8 and back["value"].iloc[1] == 50.0
    assert len(store.read_table("features", entity="b")) == 4


def test_membership_condition_replaces_only_those_rows(store: PostgresStore) -> None:
    rows = pd.DataFrame({"entity": "m", "level": "A", "era_id": 1, "sensor": "s",
                         "feature": ["mean", "median", "maximum"], "value": [1.0, 2.0, 3.0],
                         "engine": ["numpy", "tsfresh", "cupy"], "run_id": "r",
                         "config_hash": "h"})
    store.write_table("features", rows, entity="m")
    store.write_table("features", rows.iloc[:1].assign(value=9.0), entity="m",
                      replace_where={"level": "A", "engine": ["numpy", "cupy"]})
    back = store.read_table("features", entity="m").sort_values("engine")
    assert back[["engine", "value"]].to_numpy().tolist() == [["numpy", 9.0], ["tsfresh", 2.0]]
    assert store.has_rows("features", entity="m", where={"era_id": (1, 2), "engine": ["numpy"]})
    assert not store.has_rows("features", entity="m", where={"engine": ["cupy"]})
    assert not store.has_rows("features", entity="nobody")

def test_coverage_selection_matrix_created_from_dtypes(store: PostgresStore) -> None:
    coverage = pd.DataFrame({
        "entity": "a", "sensor": ["air_temp_c", "co2_ppm"], "rows": [10, 10],
        "measured_share": [0.9, np.nan], "longest_gap": [pd.Timedelta("15min"), pd.NaT],
        "all_missing": [False, True], "start": T0, "end": T0 + pd.Timedelta("1D")})
    store.write_table("coverage", coverage, entity="a", replace_where={"start": T0})
    store.write_table("coverage", coverage, entity="a", replace_where={"start": T0})
    pd.testing.assert_frame_equal(store.read_table("coverage"), coverage, check_dtype=False)
    assert store.read_table("coverage")["longest_gap"].iloc[0] == pd.Timedelta("15min")

    selection = pd.DataFrame({"feature": ["x__mean", "x__max"], "kept": [True, False],
                              "reason": ["", "correlated with x__mean"]})
    store.write_table("selection", selection, entity="a")
    back = store.read_table("selection", entity="a")
    assert back.columns.tolist() == ["entity", "feature", "kept", "reason"]
    pd.testing.assert_frame_equal(back.drop(columns="entity"), selection, check_dtype=False)

    long_name = 'air_temp_c__change_quantiles__f_agg_"mean"__isabs_False__qh_0.2__ql_0.0'
    assert len(long_name) > 63 and stored_name(long_name) != long_name
    matrix = pd.DataFrame({"entity": "a", "level": ["A", "A"], "era_id": [0, 1],
                           "air_temp_c__mean": [1.0, 2.0], long_name: [0.5, np.nan]})
    store.write_table("feature_matrix", matrix, entity="a")
    pd.testing.assert_frame_equal(store.read_table("feature_matrix"), matrix, check_dtype=False)
    grown = matrix.assign(co2_ppm__mean=[3.0, 4.0])  # a new column is added, old rows kept
    store.write_table("feature_matrix", grown.iloc[:1], entity="a", replace_where={"era_id": 0})
    back = store.read_table("feature_matrix").sort_values("era_id")
    assert back["co2_ppm__mean"].isna().tolist() == [False, True]
    assert store.read_table("feature_matrix", entity="zzz").empty


def test_pickles_without_the_connection(store: PostgresStore) -> None:
    store.write_grid(grid("a", T0, 3, 0.0), start=T0, end=T0 + pd.Timedelta("3h"))
    clone = pickle.loads(pickle.dumps(store))
    assert len(clone.read_grid(entity="a")) == 3
    clone.close()


def test_hostile_schema_names_are_quoted(pg_dsn: str) -> None:
    hostile = 'x"; DROP TABLE y; --'
    with PostgresStore(pg_dsn, schema=hostile) as s:
        s.write_grid(grid("a", T0, 2, 0.0), start=T0, end=T0 + pd.Timedelta("2h"))
        assert len(s.read_grid()) == 2
    with pytest.raises(ConfigError, match="schema name"):
        PostgresStore(pg_dsn, schema="x" * 64)


def test_password_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture,
                                               pg_dsn: str) -> None:
    secret = "s3cr3t-P4ssw0rd"
    caplog.set_level(logging.DEBUG)
    conninfo, password = split_password(f"postgresql://postgres:{secret}@127.0.0.1:1/x"
                                        "?connect_timeout=2")
    assert password == secret and secret not in conninfo
    with pytest.raises(PostgresConnectionError) as info:
        PostgresStore(f"postgresql://postgres:{secret}@127.0.0.1:1/x?connect_timeout=2")
    assert secret not in str(info.value) and "127.0.0.1:1" in str(info.value)
    with pytest.raises(ConfigError) as bad:
        split_password(f"host=h password={secret} port")
    assert secret not in str(bad.value)
    # trust auth ignores the password: connecting with one works, and it is still not shown
    with PostgresStore(pg_dsn, password=secret, schema="pw") as s:
        s.write_table("selection", pd.DataFrame({"feature": ["f"], "kept": [True]}), entity="a")
        assert secret not in repr(s) and secret not in s.describe()
        assert secret not in repr(s.connection())
    assert secret not in caplog.text
