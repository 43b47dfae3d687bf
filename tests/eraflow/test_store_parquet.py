"""What is particular to the Parquet store: its partitioned layout, atomic files, locks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eraflow.common.errors import StoreError
from eraflow.store import Key, ParquetStore
from eraflow.store.grid import write_grid
from eraflow.store.parquet import entity_slug

T0 = pd.Timestamp("2024-01-30", tz="UTC")
HOUR = pd.Timedelta("1h")


def wide(entity: str, start: pd.Timestamp, periods: int, sensors: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"time": pd.date_range(start, periods=periods, freq="1h"), "entity": entity}
    )
    for sensor, base in sensors.items():
        frame[sensor] = base + np.arange(periods, dtype=float)
        frame[f"filled__{sensor}"] = False
    return frame


def features(era: int, engine: str = "numpy") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": "a",
            "level": "C",
            "era_id": era,
            "sensor": "s",
            "feature": ["mean", "max"],
            "value": [1.0, 2.0],
            "engine": engine,
            "run_id": "r",
            "config_hash": "h",
        }
    )


def files(root: Path, table: str) -> list[str]:
    return sorted(str(p.relative_to(root / table)) for p in (root / table).rglob("*.parquet"))


def test_grid_is_partitioned_by_entity_and_month(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    write_grid(store, wide("a", T0, 96, {"air_temp_c": 0.0}), start=T0, end=T0 + 96 * HOUR)
    write_grid(store, wide("b/x", T0, 3, {"co2_ppm": 0.0}), start=T0, end=T0 + 3 * HOUR)
    assert files(tmp_path, "grid") == [
        "a/2024-01.parquet",
        "a/2024-02.parquet",
        f"{entity_slug('b/x')}/2024-01.parquet",
    ]
    before = (tmp_path / "grid" / "a" / "2024-01.parquet").stat().st_mtime_ns
    feb = pd.Timestamp("2024-02-01", tz="UTC")
    write_grid(store, wide("a", feb, 24, {"air_temp_c": 5.0}), start=feb, end=feb + 24 * HOUR)
    # the January file was not rewritten: a write touches only its key range's files
    assert (tmp_path / "grid" / "a" / "2024-01.parquet").stat().st_mtime_ns == before


def test_the_folder_reads_whole_with_pandas_exactly_the_current_rows(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    write_grid(store, wide("a", T0, 3, {"air_temp_c": 0.0}), start=T0, end=T0 + 3 * HOUR)
    write_grid(store, wide("b", T0, 3, {"co2_ppm": 400.0}), start=T0, end=T0 + 3 * HOUR)
    write_grid(store, wide("a", T0, 2, {"air_temp_c": 9.0}), start=T0, end=T0 + 3 * HOUR)
    whole = pd.read_parquet(tmp_path / "grid").sort_values(["entity", "time"])
    assert whole[["entity", "sensor", "value"]].to_numpy().tolist() == [
        ["a", "air_temp_c", 9.0],
        ["a", "air_temp_c", 10.0],
        ["b", "co2_ppm", 400.0],
        ["b", "co2_ppm", 401.0],
        ["b", "co2_ppm", 402.0],
    ]


def test_features_are_one_file_per_era_and_stage(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    for era in (5, 6):
        store.replace(
            "features",
            features(era),
            Key("a", {"level": "C", "era_id": [era], "engine": ["numpy"]}),
        )
    store.replace(
        "features",
        features(5, "tsfresh").assign(feature=["x", "y"]),
        Key("a", {"level": "C", "era_id": [5], "engine": ["tsfresh"]}),
    )
    assert files(tmp_path, "features") == [
        "a/C/5-engine.parquet",
        "a/C/5-tsfresh.parquet",
        "a/C/6-engine.parquet",
    ]
    store.delete("features", Key("a", {"level": "C", "era_id": [5]}))
    assert files(tmp_path, "features") == ["a/C/6-engine.parquet"]
    assert pq.read_schema(tmp_path / "features" / "a" / "C" / "6-engine.parquet").names == [
        "entity",
        "level",
        "era_id",
        "sensor",
        "feature",
        "value",
        "engine",
        "run_id",
        "config_hash",
    ]


def test_each_file_holds_its_rows_in_key_order(tmp_path: Path) -> None:
    # one write of shuffled rows over three eras; then a re-write of one era that keeps
    # part of its old rows (the merge path): every file, read as it lies, in key order
    rng = np.random.default_rng(7)
    sensors, names = ["s2", "s10", "a"], ["max", "mean", "b_x", "B"]
    frame = pd.DataFrame(
        [
            {"era_id": e, "sensor": s, "feature": f, "value": float(rng.normal())}
            for e in (3, 1, 2)
            for s in sensors
            for f in names
        ]
    ).assign(entity="a", level="C", engine="numpy", run_id="r", config_hash="h")
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    store = ParquetStore(tmp_path)
    store.replace("features", frame, Key("a", {"level": "C", "era_id": [1, 2, 3]}))
    store.replace(
        "features",
        frame[(frame["era_id"] == 2) & (frame["sensor"] == "a")].assign(value=0.0),
        Key("a", {"level": "C", "era_id": [2], "sensor": ["a"]}),
    )
    for name in files(tmp_path, "features"):
        stored = pq.read_table(tmp_path / "features" / name).to_pandas()
        keys = stored[["sensor", "feature"]].astype(str)
        expected = keys.sort_values(["sensor", "feature"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(keys, expected)
        assert len(stored) == len(sensors) * len(names)


def test_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ParquetStore(tmp_path)
    write_grid(store, wide("a", T0, 5, {"x": 0.0}), start=T0, end=T0 + 5 * HOUR)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        write_grid(store, wide("a", T0, 5, {"x": 99.0}), start=T0, end=T0 + 5 * HOUR)
    monkeypatch.undo()
    assert store.read("grid", Key("a"))["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_grid_rows_outside_the_range_are_refused_before_any_write(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    with pytest.raises(StoreError, match="outside"):
        write_grid(store, wide("a", T0, 5, {"x": 0.0}), start=T0, end=T0 + 2 * HOUR)
    assert not (tmp_path / "grid").exists()


def test_entity_slugs_are_safe_and_distinct() -> None:
    assert entity_slug("kj_no3") == "kj_no3"
    assert "/" not in entity_slug("a/b") and entity_slug("a/b") != entity_slug("a_b")
    assert entity_slug("..") not in {"..", "."} and not entity_slug(".x").startswith(".")
    assert not entity_slug("_x").startswith("_")  # pyarrow would skip such a folder


def test_owners_are_the_names_as_written(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    for entity in ("house 1/NO3", "b"):
        write_grid(store, wide(entity, T0, 2, {"x": 0.0}), start=T0, end=T0 + 2 * HOUR)
    assert store.owners("grid") == ["b", "house 1/NO3"]
    assert store.owners("eras") == []


def test_concurrent_writers_of_one_owner_lose_nothing(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)

    def write(level: int) -> int:
        rows = pd.DataFrame(
            {
                "entity": "a",
                "level": str(level),
                "era_id": range(50),
                "stage": "engine",
                "fingerprint": "f",
                "config_hash": "h",
                "values": 1,
                "run_id": "r",
                "written_at": T0,
            }
        )
        return store.replace("feature_ledger", rows, Key("a", {"level": str(level)}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(write, range(16))) == 16 * 50
    stored = pd.read_parquet(tmp_path / "feature_ledger")
    assert len(stored) == 16 * 50 and stored.groupby("level").size().eq(50).all()


def test_sort_by_key_orders_dictionary_columns_by_their_values() -> None:
    """Chunks with their own dictionaries (other orders, a null) sort as the plain strings."""
    import pyarrow as pa

    from eraflow.store import TABLES
    from eraflow.store.arrow import sort_by_key

    spec = TABLES["features"]
    names = ["b", "a", "c", "a", "c", None, "d", "d"]
    era_ids = [1, 1, 2, 0, 1, 0, 0, 3]
    first = pa.array(names[:4]).dictionary_encode()
    second = pa.DictionaryArray.from_arrays(
        pa.array([0, None, 1, 1], pa.int32()), pa.array(["c", "d"])
    )  # "c", null, "d", "d": its own dictionary, where "c" comes first as "a" does in the first
    data = pa.table(
        {
            "entity": pa.chunked_array([pa.array(["e"] * 4), pa.array(["e"] * 4)]),
            "sensor": pa.chunked_array([first, second]),
            "era_id": pa.chunked_array([pa.array(era_ids[:4]), pa.array(era_ids[4:])]),
        }
    )
    keys = [c for c in spec.key if c in data.column_names]
    assert keys[-1] != "entity" and "sensor" in keys
    got = sort_by_key(spec, data).to_pylist()
    rows = [{"entity": "e", "sensor": s, "era_id": i} for s, i in zip(names, era_ids, strict=True)]

    def order(row: dict[str, object]) -> tuple[tuple[bool, object], ...]:  # nulls last
        return tuple((row[k] is None, row[k] or 0) for k in keys)

    assert got == sorted(rows, key=order)
