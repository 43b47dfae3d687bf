"""The Parquet store: round trips, idempotent range replace, schema growth, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.errors import StoreError
from eraflow.store import ParquetStore
from eraflow.store.parquet import entity_slug

T0 = pd.Timestamp("2024-01-30", tz="UTC")


def grid(entity: str, start: pd.Timestamp, periods: int, value: float,
         sensors: tuple[str, ...] = ("air_temp_c",)) -> pd.DataFrame:
    frame = pd.DataFrame({"time": pd.date_range(start, periods=periods, freq="1h"),
                          "entity": entity})
    for sensor in sensors:
        frame[sensor] = value + np.arange(periods, dtype=float)
        frame[f"filled__{sensor}"] = False
    return frame


def test_round_trip_across_months(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    g = grid("a", T0, 96, 10.0)  # 30 Jan .. 2 Feb: two month files
    assert store.write_grid(g, start=T0, end=T0 + pd.Timedelta("96h")) == 96
    assert len(list((tmp_path / "grid" / "a").glob("*.parquet"))) == 2
    back = store.read_grid(entity="a")
    pd.testing.assert_frame_equal(back, g.astype({"entity": "string"}).assign(
        time=g["time"].astype("datetime64[us, UTC]")), check_dtype=False)
    whole = pd.read_parquet(tmp_path / "grid")
    assert len(whole) == 96


def test_rewriting_a_range_replaces_only_that_range(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_grid(grid("a", T0, 96, 0.0), start=T0, end=T0 + pd.Timedelta("96h"))
    store.write_grid(grid("b", T0, 96, 0.0), start=T0, end=T0 + pd.Timedelta("96h"))
    mid = T0 + pd.Timedelta("24h")
    store.write_grid(grid("a", mid, 24, 1000.0), start=mid, end=mid + pd.Timedelta("24h"))
    store.write_grid(grid("a", mid, 24, 1000.0), start=mid, end=mid + pd.Timedelta("24h"))
    a = store.read_grid(entity="a").set_index("time")["air_temp_c"]
    assert len(a) == 96  # no duplicates, no loss
    assert a.loc[mid] == 1000.0 and a.loc[T0] == 0.0
    assert a.loc[mid + pd.Timedelta("24h")] == 48.0
    assert store.read_grid(entity="b")["air_temp_c"].max() == 95.0  # other entity untouched


def test_rewriting_with_fewer_rows_deletes_the_stale_ones(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_grid(grid("a", T0, 10, 0.0), start=T0, end=T0 + pd.Timedelta("10h"))
    store.write_grid(grid("a", T0, 4, 5.0), start=T0, end=T0 + pd.Timedelta("10h"))
    assert store.read_grid(entity="a")["air_temp_c"].tolist() == [5.0, 6.0, 7.0, 8.0]


def test_new_sensor_columns_keep_the_dataset_readable_whole(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_grid(grid("a", T0, 3, 0.0), start=T0, end=T0 + pd.Timedelta("3h"))
    later = T0 + pd.Timedelta("10D")
    store.write_grid(grid("b", later, 3, 0.0, sensors=("co2_ppm",)), start=later,
                     end=later + pd.Timedelta("3h"))
    whole = pd.read_parquet(tmp_path / "grid")
    assert {"air_temp_c", "co2_ppm", "filled__co2_ppm"} <= set(whole.columns)
    assert whole.query("entity == 'a'")["co2_ppm"].isna().all()


def test_grid_rows_outside_the_range_are_refused(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    with pytest.raises(StoreError, match="outside"):
        store.write_grid(grid("a", T0, 5, 0.0), start=T0, end=T0 + pd.Timedelta("2h"))
    assert not (tmp_path / "grid").exists()


def test_failed_write_leaves_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    store = ParquetStore(tmp_path)
    store.write_grid(grid("a", T0, 5, 0.0), start=T0, end=T0 + pd.Timedelta("5h"))

    def broken(self: pd.DataFrame, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write_grid(grid("a", T0, 5, 99.0), start=T0, end=T0 + pd.Timedelta("5h"))
    monkeypatch.undo()
    assert store.read_grid(entity="a")["air_temp_c"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_keyed_table_replace(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    eras = pd.DataFrame({"entity": "a", "level": ["A", "A", "B"], "era_id": [0, 1, 0],
                         "start": [T0, T0 + pd.Timedelta("1D"), T0]})
    store.write_table("eras", eras, entity="a")
    store.write_table("eras", eras.iloc[:1].assign(era_id=7), entity="a",
                      replace_where={"level": "A", "start": (T0, T0 + pd.Timedelta("12h"))})
    back = store.read_table("eras", entity="a").sort_values(["level", "era_id"])
    assert back[["level", "era_id"]].to_numpy().tolist() == [["A", 1], ["A", 7], ["B", 0]]
    with pytest.raises(StoreError, match="another entity"):
        store.write_table("eras", eras, entity="b")
    with pytest.raises(StoreError, match="unknown table"):
        store.read_table("nope")


def test_entity_slugs_are_safe_and_distinct() -> None:
    assert entity_slug("kj_no3") == "kj_no3"
    assert "/" not in entity_slug("a/b") and entity_slug("a/b") != entity_slug("a_b")
    assert entity_slug("..") not in {"..", "."}


def test_concurrent_writers_of_one_file_lose_nothing(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = ParquetStore(tmp_path)

    def write(level: int) -> int:
        rows = pd.DataFrame({"entity": "a", "level": str(level), "era_id": range(50),
                             "value": float(level)})
        return store.write_table("features", rows, entity="a", replace_where={"level": str(level)})

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(write, range(16))) == 16 * 50
    stored = pd.read_parquet(tmp_path / "features")
    assert len(stored) == 16 * 50
    assert stored.groupby("level").size().eq(50).all()


def test_membership_condition_replaces_only_those_rows(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    rows = pd.DataFrame({"entity": "a", "level": "A", "era_id": [1, 1, 1],
                         "engine": ["numpy", "tsfresh", "cupy"], "value": [1.0, 2.0, 3.0]})
    store.write_table("features", rows, entity="a")
    store.write_table("features", rows.iloc[:1].assign(value=9.0), entity="a",
                      replace_where={"level": "A", "engine": ["numpy", "cupy"]})
    back = store.read_table("features", entity="a").sort_values("engine")
    assert back[["engine", "value"]].to_numpy().tolist() == [["numpy", 9.0], ["tsfresh", 2.0]]


def test_keyed_tables_stay_readable_whole_when_columns_differ(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_table("feature_matrix", pd.DataFrame({"entity": "a", "era_id": [1],
                                                      "x__mean": [1.0]}), entity="a")
    store.write_table("feature_matrix", pd.DataFrame({"entity": "b", "era_id": [2],
                                                      "y__mean": [2.0]}), entity="b")
    whole = pd.read_parquet(tmp_path / "feature_matrix").sort_values("entity")
    assert list(whole.columns) == ["entity", "era_id", "x__mean", "y__mean"]
    assert whole["x__mean"].tolist()[0] == 1.0 and np.isnan(whole["y__mean"].tolist()[0])
    assert whole["y__mean"].tolist()[1] == 2.0


def test_has_rows(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    assert not store.has_rows("features", entity="a", where={"level": "A"})
    store.write_table("features", pd.DataFrame({"entity": "a", "level": "A", "era_id": [5],
                                                "engine": "numpy"}), entity="a")
    assert store.has_rows("features", entity="a", where={"level": "A", "era_id": (5, 6),
                                                         "engine": ["numpy", "cupy"]})
    assert not store.has_rows("features", entity="a", where={"level": "A", "era_id": (6, 9)})
