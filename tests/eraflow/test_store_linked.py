"""Selection and feature matrix as one commit: replace_many / read_many on both stores.

The Parquet store keeps the two tables as one version behind a link switched at once; its
folders still read whole with pandas. Expected values are written out here by hand.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eraflow.common.errors import StoreError
from eraflow.runs.scope import read_feature_matrix
from eraflow.store import Key, ParquetStore, ResultStore
from eraflow.store.tables import FEATURE_MATRIX, SELECTION
from tests.pg import fresh_database

T0 = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta("1D")


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
    with PostgresStore(dsn, schema=f"l_{uuid.uuid4().hex[:8]}") as opened:
        yield opened


def pair(
    scope: str, level: str, names: list[str], base: float, entities: tuple[str, ...] = ("a",)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A selection keeping ``names``; a matrix of 3 eras per entity (base + 10 column + era)."""
    selection = pd.DataFrame(
        {
            "scope": scope,
            "level": level,
            "feature": names,
            "kept": True,
            "reason": "kept",
            "position": range(len(names)),
            "run_id": f"run-{base:g}",
        }
    )
    rows = []
    for entity in entities:
        for era in range(3):
            rows.append(
                (
                    scope,
                    entity,
                    level,
                    era,
                    T0 + era * DAY,
                    T0 + (era + 1) * DAY,
                    np.array([base + 10 * c + era for c in range(len(names))]),
                )
            )
    matrix = pd.DataFrame(rows, columns=FEATURE_MATRIX.names)
    return selection, matrix


def commit(store: ResultStore, scope: str, level: str, names: list[str], base: float) -> list[int]:
    selection, matrix = pair(scope, level, names, base)
    key = Key(scope, {"level": level})
    return store.replace_many([("selection", selection, key), ("feature_matrix", matrix, key)])


def test_replace_many_commits_both_and_read_many_reads_them(store: ResultStore) -> None:
    assert commit(store, "a", "C", ["x__mean", "y__max"], 1.0) == [2, 3]
    assert commit(store, "a", "B", ["z__min"], 5.0) == [1, 3]
    selection, matrix = store.read_many(
        [("selection", Key("a", {"level": "C"})), ("feature_matrix", Key("a", {"level": "C"}))]
    )
    assert selection["feature"].tolist() == ["x__mean", "y__max"]
    assert [v.tolist() for v in matrix["values"]] == [[1.0, 11.0], [2.0, 12.0], [3.0, 13.0]]
    wide = read_feature_matrix(store, "a", "C")
    assert wide.columns.tolist() == ["x__mean", "y__max"]
    assert wide["y__max"].tolist() == [11.0, 12.0, 13.0]
    # a delete through replace_many (None) removes both, and only that level
    key = Key("a", {"level": "C"})
    assert store.replace_many([("selection", None, key), ("feature_matrix", None, key)]) == [2, 3]
    assert store.read("selection", Key("a"))["level"].tolist() == ["B"]
    assert store.read("feature_matrix", Key("a"))["level"].astype(str).tolist() == ["B"] * 3


def test_a_refused_part_writes_neither_table(store: ResultStore) -> None:
    commit(store, "a", "C", ["x__mean"], 1.0)
    selection, matrix = pair("a", "C", ["q__new"], 7.0)
    key = Key("a", {"level": "C"})
    outside = matrix.assign(level="B")  # rows outside the key range
    with pytest.raises(StoreError, match="outside the key"):
        store.replace_many([("selection", selection, key), ("feature_matrix", outside, key)])
    with pytest.raises(StoreError, match="twice"):
        store.replace_many([("selection", selection, key), ("selection", selection, key)])
    assert read_feature_matrix(store, "a", "C")["x__mean"].tolist() == [1.0, 2.0, 3.0]


def test_a_matrix_out_of_step_with_its_selection_is_named_not_a_shape_error(
    store: ResultStore,
) -> None:
    selection, _ = pair("a", "C", ["x__mean", "y__max"], 1.0)
    _, matrix = pair("a", "C", ["x__mean"], 1.0)
    key = Key("a", {"level": "C"})
    store.replace("selection", selection, key)  # written apart, as before this commit existed
    store.replace("feature_matrix", matrix, key)
    with pytest.raises(StoreError, match=r"out of step \(2 kept features, \[1\] values per era"):
        read_feature_matrix(store, "a", "C")


def test_parquet_linked_folders_read_whole_with_pandas_and_leave_one_version(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path)
    commit(store, "a", "C", ["x__mean"], 1.0)
    commit(store, "b", "C", ["y__max", "z__min"], 2.0)
    commit(store, "a", "C", ["w__std"], 3.0)  # replaces scope a's level C
    assert os.readlink(tmp_path / "selection") == ".scoped/current/selection"
    assert os.readlink(tmp_path / "feature_matrix") == ".scoped/current/feature_matrix"
    whole = pd.read_parquet(tmp_path / "selection").sort_values(["scope", "feature"])
    assert whole[["scope", "feature"]].to_numpy().tolist() == [
        ["a", "w__std"],
        ["b", "y__max"],
        ["b", "z__min"],
    ]
    values = pd.read_parquet(tmp_path / "feature_matrix")
    assert len(values) == 6 and sorted(values["scope"].astype(str).unique()) == ["a", "b"]
    assert sorted(v[0] for v in values["values"]) == [2.0, 3.0, 3.0, 4.0, 4.0, 5.0]
    versions = sorted(p.name for p in (tmp_path / ".scoped").iterdir())
    assert versions == [".lock", "current", os.readlink(tmp_path / ".scoped" / "current")]
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert store.owners("selection") == ["a", "b"]


def test_parquet_replace_many_of_unlinked_tables_is_refused(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    with pytest.raises(StoreError, match="only for the linked tables"):
        store.replace_many([("eras", None, Key("a")), ("selection", None, Key("a"))])


def test_a_store_written_before_linked_tables_is_converted_on_its_next_write(
    tmp_path: Path,
) -> None:
    # the layout of earlier versions: real folders, files written in place
    selection, matrix = pair("old", "C", ["x__mean"], 1.0)
    for spec, frame, name in (
        (SELECTION, selection, "old/C.parquet"),
        (FEATURE_MATRIX, matrix, "old/a/C.parquet"),
    ):
        path = tmp_path / spec.name / name
        path.parent.mkdir(parents=True)
        (tmp_path / spec.name / "old" / ".owner").write_text("old")
        # written before selection had an ``eras`` column: the file lacks it
        columns = [f for f in spec.schema if f.name in frame.columns]
        data = pa.Table.from_pandas(frame[[f.name for f in columns]], preserve_index=False)
        pq.write_table(data.cast(pa.schema(columns)), path)
    store = ParquetStore(tmp_path)
    assert read_feature_matrix(store, "old", "C")["x__mean"].tolist() == [1.0, 2.0, 3.0]
    assert store.read("selection", Key("old"))["eras"].isna().all()  # unknown, still readable
    commit(store, "new", "C", ["y__max"], 5.0)
    assert (tmp_path / "selection").is_symlink() and (tmp_path / "feature_matrix").is_symlink()
    assert read_feature_matrix(store, "old", "C")["x__mean"].tolist() == [1.0, 2.0, 3.0]
    assert read_feature_matrix(store, "new", "C")["y__max"].tolist() == [5.0, 6.0, 7.0]
    assert sorted(pd.read_parquet(tmp_path / "selection")["scope"]) == ["new", "old"]
    assert sorted(p.name for p in (tmp_path / ".scoped").iterdir() if p.name.startswith("v-"))
    assert len([p for p in (tmp_path / ".scoped").iterdir() if p.name.startswith(".trash")]) == 0


def test_readers_never_see_one_commits_names_over_anothers_values(tmp_path: Path) -> None:
    """A writer commits pairs whose names and values both carry the commit's number."""
    store = ParquetStore(tmp_path)
    commit(store, "s", "C", ["f0__a", "f0__b"], 0.0)
    stop = threading.Event()
    seen: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def write() -> None:
        for k in range(1, 40):
            commit(store, "s", "C", [f"f{k}__a", f"f{k}__b"], 1000.0 * k)
        stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                wide = read_feature_matrix(ParquetStore(tmp_path), "s", "C")
                name = wide.columns[0]
                seen.append((name, float(wide.iloc[0, 0])))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(seen) > 5
    for name, value in seen:  # names of commit k always over values of commit k
        assert value == 1000.0 * int(name[1 : name.index("__")]), (name, value)


def test_a_copied_store_reads_and_writes_on_its_own(tmp_path: Path) -> None:
    """``shutil.copytree`` follows the links: the copy has plain folders, then converts."""
    import shutil

    store = ParquetStore(tmp_path / "one")
    commit(store, "a", "C", ["x__mean"], 1.0)
    commit(store, "a", "C", ["x__mean"], 2.0)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    copy = ParquetStore(tmp_path / "two")
    assert read_feature_matrix(copy, "a", "C")["x__mean"].tolist() == [2.0, 3.0, 4.0]
    commit(copy, "a", "C", ["y__max"], 7.0)
    assert read_feature_matrix(copy, "a", "C")["y__max"].tolist() == [7.0, 8.0, 9.0]
    assert read_feature_matrix(store, "a", "C")["x__mean"].tolist() == [2.0, 3.0, 4.0]
    assert len(pd.read_parquet(tmp_path / "two" / "selection")) == 1
    assert sorted(p.name for p in (tmp_path / "two" / ".scoped").iterdir())[:2] == [
        ".lock",
        "current",
    ]


def test_a_conversion_killed_before_a_folder_was_linked_loses_nothing(tmp_path: Path) -> None:
    """The state a kill leaves between moving a plain folder away and linking it."""
    store = ParquetStore(tmp_path)
    commit(store, "a", "C", ["x__mean"], 1.0)
    (tmp_path / "selection").unlink()  # the link is not made yet; the version holds the rows
    assert read_feature_matrix(store, "a", "C")["x__mean"].tolist() == [1.0, 2.0, 3.0]
    commit(store, "b", "C", ["y__max"], 5.0)  # the next commit links it again
    assert os.readlink(tmp_path / "selection") == ".scoped/current/selection"
    assert sorted(pd.read_parquet(tmp_path / "selection")["scope"]) == ["a", "b"]
    assert read_feature_matrix(store, "a", "C")["x__mean"].tolist() == [1.0, 2.0, 3.0]
