"""One contract for both stores (Parquet folder, real PostgreSQL): read, replace, delete by key.

Each test runs on both stores; expected values are written out by hand here, never read
back from the code under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import StoreError
from eraflow.store import Key, ParquetStore, Range, ResultStore
from eraflow.store.grid import read_entity_grid, write_grid
from tests.pg import fresh_database

T0 = pd.Timestamp("2024-01-30", tz="UTC")
HOUR = pd.Timedelta("1h")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


@pytest.fixture(params=["parquet", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStore]:
    if request.param == "parquet":
        yield ParquetStore(tmp_path / "store")
        return
    from eraflow.store.postgres import PostgresStore

    dsn = request.getfixturevalue("pg_dsn")
    with PostgresStore(dsn, schema=f"t_{uuid.uuid4().hex[:8]}") as opened:
        yield opened


def wide(entity: str, start: pd.Timestamp, periods: int, sensors: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"time": pd.date_range(start, periods=periods, freq="1h"), "entity": entity}
    )
    for sensor, base in sensors.items():
        frame[sensor] = base + np.arange(periods, dtype=float)
        frame[f"filled__{sensor}"] = np.arange(periods) % 3 == 1
    return frame


def features(entity: str, level: str, eras: list[int], engine: str, value: float) -> pd.DataFrame:
    names = ("mean", "quantile__q_0.25") if engine != "tsfresh" else ("fft_x", "cwt_y")
    rows = [
        (entity, level, era, sensor, feat, value + era, engine, "run-1", "h")
        for era in eras
        for sensor in ("air_temp_c", "co2_ppm")
        for feat in names
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "entity",
            "level",
            "era_id",
            "sensor",
            "feature",
            "value",
            "engine",
            "run_id",
            "config_hash",
        ],
    )


def test_is_a_result_store(store: ResultStore) -> None:
    assert isinstance(store, ResultStore)
    assert store.describe()


def test_grid_round_trip_keeps_each_entity_to_its_own_sensors(store: ResultStore) -> None:
    both = pd.concat(
        [
            wide("a", T0, 6, {"air_temp_c": 10.0, "co2_ppm": 400.0}),
            wide("b", T0, 6, {"vpd_hpa": 1.0}),
        ],
        ignore_index=True,
    )
    assert write_grid(store, both, start=T0, end=T0 + 6 * HOUR) == 12
    values, mask = read_entity_grid(store, "b", step=HOUR)
    assert values.columns.tolist() == ["vpd_hpa"]  # never a's sensors (all NaN for b)
    assert values["vpd_hpa"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert mask["vpd_hpa"].tolist() == [False, True, False, False, True, False]
    values, _ = read_entity_grid(store, "a", step=HOUR, start=T0 + 2 * HOUR, end=T0 + 4 * HOUR)
    assert values.columns.tolist() == ["air_temp_c", "co2_ppm"]
    assert values["co2_ppm"].tolist() == [402.0, 403.0]
    assert values.index.tolist() == [T0 + 2 * HOUR, T0 + 3 * HOUR]
    assert store.owners("grid") == ["a", "b"]


def test_replacing_a_range_keeps_what_lies_outside(store: ResultStore) -> None:
    write_grid(store, wide("a", T0, 72, {"air_temp_c": 0.0}), start=T0, end=T0 + 72 * HOUR)
    write_grid(store, wide("b", T0, 72, {"air_temp_c": 0.0}), start=T0, end=T0 + 72 * HOUR)
    mid = T0 + 24 * HOUR
    write_grid(store, wide("a", mid, 4, {"air_temp_c": 1000.0}), start=mid, end=mid + 24 * HOUR)
    values, _ = read_entity_grid(store, "a", step=HOUR)
    a = values["air_temp_c"]
    # 4 new rows, 20 rows of the replaced day gone (NaN in the regular frame), the rest kept
    assert a.loc[T0] == 0.0 and a.loc[mid] == 1000.0 and a.loc[mid + 3 * HOUR] == 1003.0
    assert a.loc[mid + 4 * HOUR : mid + 23 * HOUR].isna().all()
    assert a.loc[mid + 24 * HOUR] == 48.0 and len(a) == 72
    b, _ = read_entity_grid(store, "b", step=HOUR)
    assert b["air_temp_c"].tolist() == list(np.arange(72.0))


def test_rewriting_the_same_rows_is_idempotent(store: ResultStore) -> None:
    f = features("a", "C", [10, 20], "numpy", 1.0)
    key = Key("a", {"level": "C", "era_id": [10, 20], "engine": ["numpy", "cupy"]})
    assert store.replace("features", f, key) == 8
    first = store.read("features", Key("a"))
    store.replace("features", f, key)
    pd.testing.assert_frame_equal(store.read("features", Key("a")), first)
    assert len(first) == 8 and first["value"].tolist()[:4] == [11.0, 11.0, 11.0, 11.0]


def test_replace_touches_only_its_key_range(store: ResultStore) -> None:
    store.replace(
        "features",
        features("a", "C", [1, 2], "numpy", 0.0),
        Key("a", {"level": "C", "engine": ["numpy"]}),
    )
    store.replace(
        "features",
        features("a", "C", [1, 2], "tsfresh", 50.0),
        Key("a", {"level": "C", "engine": ["tsfresh"]}),
    )
    store.replace("features", features("a", "B", [1], "numpy", 0.0), Key("a", {"level": "B"}))
    store.replace("features", features("b", "C", [1], "numpy", 0.0), Key("b"))
    # era 2's engine rows are replaced by nothing; era 1, tsfresh, level B and b stay
    store.replace(
        "features",
        features("a", "C", [1], "numpy", 100.0),
        Key("a", {"level": "C", "era_id": [1, 2], "engine": ["numpy"]}),
    )
    back = store.read("features", Key("a", {"level": "C"}))
    counts = back.groupby(["era_id", "engine"]).size().to_dict()
    assert counts == {(1, "numpy"): 4, (1, "tsfresh"): 4, (2, "tsfresh"): 4}
    assert back.loc[back["engine"] == "numpy", "value"].tolist() == [101.0] * 4
    assert len(store.read("features", Key("a", {"level": "B"}))) == 4
    assert len(store.read("features", Key("b"))) == 4


def test_delete_by_key_and_range(store: ResultStore) -> None:
    store.replace("features", features("a", "C", [1, 2, 3], "numpy", 0.0), Key("a"))
    assert store.delete("features", Key("a", {"level": "C", "era_id": [2]})) == 4
    left = store.read("features", Key("a"))
    assert sorted(set(left["era_id"])) == [1, 3]
    write_grid(store, wide("a", T0, 10, {"x": 0.0}), start=T0, end=T0 + 10 * HOUR)
    assert store.delete("grid", Key("a", {"time": Range(T0 + 2 * HOUR, T0 + 5 * HOUR)})) == 3
    values, _ = read_entity_grid(store, "a", step=HOUR)
    assert values["x"].isna().tolist() == [False, False, True, True, True] + [False] * 5


def test_rows_outside_the_key_are_refused_before_any_write(store: ResultStore) -> None:
    store.replace("features", features("a", "C", [1], "numpy", 0.0), Key("a"))
    with pytest.raises(StoreError, match="outside the key range"):
        store.replace(
            "features", features("a", "C", [1, 2], "numpy", 9.0), Key("a", {"era_id": [1]})
        )
    with pytest.raises(StoreError, match="outside the key range"):
        store.replace("features", features("b", "C", [1], "numpy", 9.0), Key("a"))
    dup = features("a", "C", [1], "numpy", 9.0)
    with pytest.raises(StoreError, match="duplicate keys"):
        store.replace("features", pd.concat([dup, dup]), Key("a"))
    with pytest.raises(StoreError, match="no column"):
        store.read("features", Key("a", {"nope": 1}))
    with pytest.raises(StoreError, match="unknown table"):
        store.read("nope")
    assert store.read("features", Key("a"))["value"].tolist() == [1.0] * 4


def test_eras_round_trip_with_nullable_columns(store: ResultStore) -> None:
    eras = pd.DataFrame(
        {
            "entity": "a",
            "level": ["A", "B"],
            "era_id": [28_401_120, 28_401_120],
            "start": [T0, T0],
            "end": [T0 + 48 * HOUR, T0 + 24 * HOUR],
            "rows": [576, 288],
            "method": "op-normal",
            "signals": "air_temp_c,co2_ppm",
            "score": [np.nan, 2.5],
            "fingerprint": ["f1", "f2"],
            "coverage": [0.5, 1.0],
            "kind": "data",
            "regime": pd.array([pd.NA, 3], dtype="Int64"),
        }
    )
    store.replace("eras", eras, Key("a"))
    back = store.read("eras", Key("a"))
    assert back["regime"].tolist()[1] == 3 and back["regime"].isna().tolist() == [True, False]
    assert back["score"].isna().tolist() == [True, False]
    assert back["end"].tolist() == [T0 + 48 * HOUR, T0 + 24 * HOUR]
    assert back["signals"].tolist() == ["air_temp_c,co2_ppm"] * 2
    only_b = store.read("eras", Key("a", {"level": "B"}), columns=["era_id", "fingerprint"])
    assert only_b.columns.tolist() == ["era_id", "fingerprint"]
    assert only_b["fingerprint"].tolist() == ["f2"]


def test_feature_matrix_holds_thousands_of_values_per_era(store: ResultStore) -> None:
    values = [np.linspace(0, 1, 5000), np.r_[np.nan, np.inf, -np.inf, 1 / 3, np.zeros(4996)]]
    rows = pd.DataFrame(
        {
            "scope": "kj",
            "entity": "a",
            "level": "C",
            "era_id": [1, 2],
            "start": [T0, T0 + HOUR],
            "end": [T0 + HOUR, T0 + 2 * HOUR],
            "values": values,
        }
    )
    store.replace("feature_matrix", rows, Key("kj", {"level": "C"}))
    back = store.read("feature_matrix", Key("kj", {"level": "C", "entity": "a"}))
    np.testing.assert_array_equal(back["values"].iloc[0], values[0])
    assert np.isnan(back["values"].iloc[1][0]) and back["values"].iloc[1][1] == np.inf
    assert back["values"].iloc[1][2] == -np.inf and back["values"].iloc[1][3] == 1 / 3


def test_batches_stream_the_same_rows(store: ResultStore) -> None:
    store.replace("features", features("a", "C", list(range(30)), "numpy", 0.0), Key("a"))
    batches = list(
        store.read_batches(
            "features", Key("a", {"era_id": Range(5, 10)}), columns=["era_id", "value"]
        )
    )
    ids = sorted(int(i) for b in batches for i in b.column(0).to_pylist())
    assert ids == sorted([5, 6, 7, 8, 9] * 4)


def test_lock_is_exclusive_per_owner(store: ResultStore) -> None:
    import threading
    import time

    order: list[str] = []

    def hold(name: str, owner: str) -> None:
        with store.lock(owner):
            order.append(f"{name}+")
            time.sleep(0.3)
            order.append(f"{name}-")

    first = threading.Thread(target=hold, args=("x", "a"))
    first.start()
    time.sleep(0.1)
    other = threading.Thread(target=hold, args=("z", "b"))  # another owner: not blocked
    second = threading.Thread(target=hold, args=("y", "a"))
    other.start()
    second.start()
    for thread in (first, second, other):
        thread.join()
    assert order.index("x-") < order.index("y+")  # same owner waits
    assert order.index("z+") < order.index("x-")  # another owner did not
