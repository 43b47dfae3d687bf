"""Selection per scope: the compact level matrix, scoped writes, the wide matrix (both stores)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.runs.scope import (
    SelectionSettings,
    entities_with_data,
    read_era_times,
    read_feature_matrix,
    read_level_matrix,
    scope_name,
    select_scope,
)
from eraflow.store import Key, ParquetStore, ResultStore
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

    with PostgresStore(
        request.getfixturevalue("pg_dsn"), schema=f"s_{uuid.uuid4().hex[:8]}"
    ) as opened:
        yield opened


def fill(store: ResultStore, entity: str, n_eras: int, seed: int) -> pd.DataFrame:
    """Eras and random features of one entity at level C; returns the long features."""
    rng = np.random.default_rng(seed)
    starts = [T0 + i * DAY for i in range(n_eras)]
    ids = [int((s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1min")) for s in starts]
    eras = pd.DataFrame(
        {
            "entity": entity,
            "level": "C",
            "era_id": ids,
            "start": starts,
            "end": [s + DAY for s in starts],
            "rows": 288,
            "method": "pelt",
            "signals": "x",
            "score": 1.0,
            "fingerprint": "f",
            "coverage": 1.0,
            "kind": "data",
            "regime": pd.array([pd.NA] * n_eras, dtype="Int64"),
        }
    )
    store.replace("eras", eras, Key(entity))
    base = rng.normal(size=n_eras)
    rows = []
    for i, era in enumerate(ids):
        rows += [
            (entity, "C", era, "x", "mean", base[i]),
            (entity, "C", era, "x", "double", 2 * base[i] + 1),  # |r| = 1 with mean
            (entity, "C", era, "y", "noise", rng.normal()),
            (entity, "C", era, "y", "const", 3.0),
        ]
    long = pd.DataFrame(
        rows, columns=["entity", "level", "era_id", "sensor", "feature", "value"]
    ).assign(engine="numpy", run_id="r", config_hash="h")
    store.replace("features", long, Key(entity))
    return long


def test_level_matrix_equals_a_pandas_pivot_of_the_long_rows(store: ResultStore) -> None:
    long = pd.concat([fill(store, "a", 6, 1), fill(store, "b", 4, 2)])
    matrix = read_level_matrix(store, ["a", "b"], "C")
    reference = long.assign(column=long["sensor"] + "__" + long["feature"]).pivot_table(
        index=["entity", "level", "era_id"], columns="column", values="value"
    )
    got = matrix.frame()
    assert got.columns.tolist() == sorted(reference.columns)
    pd.testing.assert_frame_equal(got, reference.loc[got.index, got.columns], check_names=False)
    assert matrix.eras["entity"].tolist() == ["a"] * 6 + ["b"] * 4


def test_level_matrix_with_late_columns_and_eras_without_features(store: ResultStore) -> None:
    """Columns first seen in a later batch widen the matrix; an era with no features is no row."""
    a = fill(store, "a", 5, 3)
    b = fill(store, "b", 3, 4)
    late_era = int(b["era_id"].max())
    extra = pd.DataFrame(
        [("b", "C", late_era, "z", f"late_{k:02d}", float(k)) for k in range(40)],
        columns=["entity", "level", "era_id", "sensor", "feature", "value"],
    ).assign(engine="numpy", run_id="r", config_hash="h")
    b = pd.concat([b, extra], ignore_index=True)
    store.replace("features", b, Key("b"))
    bare = int(a["era_id"].min())  # drop every feature of a's first era
    a = a[a["era_id"] != bare]
    store.replace("features", a, Key("a"))
    long = pd.concat([a, b], ignore_index=True)
    matrix = read_level_matrix(store, ["a", "b"], "C")
    reference = long.assign(column=long["sensor"] + "__" + long["feature"]).pivot_table(
        index=["entity", "level", "era_id"], columns="column", values="value"
    )
    got = matrix.frame()
    assert got.shape == (4 + 3, 4 + 40)
    assert bare not in matrix.eras.loc[matrix.eras["entity"] == "a", "era_id"].tolist()
    assert got.columns.tolist() == sorted(reference.columns)
    pd.testing.assert_frame_equal(got, reference.loc[got.index, got.columns], check_names=False)


def test_one_scope_never_deletes_anothers_rows(store: ResultStore) -> None:
    fill(store, "a", 12, 3)
    fill(store, "b", 12, 4)
    settings = SelectionSettings()
    both = select_scope(
        store,
        scope_name(["b", "a"]),
        ["a", "b"],
        "C",
        settings=settings,
        step=pd.Timedelta("5min"),
        run_id="r1",
    )
    alone = select_scope(
        store, "a", ["a"], "C", settings=settings, step=pd.Timedelta("5min"), run_id="r2"
    )
    assert both == {"eras": 24, "features": 4, "kept": 2}
    assert alone == {"eras": 12, "features": 4, "kept": 2}
    selection = store.read("selection", Key("a+b"))
    reasons = dict(zip(selection["feature"], selection["reason"], strict=True))
    # by hand: x__double is x__mean's linear image (|r| = 1), y__const is constant;
    # ties of completeness break by name, so x__double (d < m) is kept and x__mean dropped
    assert reasons["y__const"].startswith("constant")
    assert reasons["x__mean"].startswith("correlated with x__double")
    assert selection.loc[selection["kept"], "feature"].tolist() == ["x__double", "y__noise"]
    wide = read_feature_matrix(store, "a+b", "C")
    assert wide.shape == (24, 2) and wide.columns.tolist() == ["x__double", "y__noise"]
    assert (wide.dtypes == "float64").all()  # the era times are apart, never among the values
    times = read_era_times(store, "a+b", "C")
    assert times.index.equals(wide.index) and times.columns.tolist() == ["start", "end"]
    assert times["start"].tolist() == [T0 + i * DAY for i in range(12)] * 2
    assert len(read_feature_matrix(store, "a", "C")) == 12  # the other scope is intact
    features = store.read("features", Key("b"))
    b_double = features[features["feature"] == "double"].sort_values("era_id")["value"]
    np.testing.assert_array_equal(
        read_feature_matrix(store, "a+b", "C", entity="b")["x__double"].to_numpy(),
        b_double.to_numpy(),
    )


def test_entities_with_data_reads_the_coverage(store: ResultStore) -> None:
    for entity, day in (("a", T0), ("b", T0 + 10 * DAY)):
        store.replace(
            "coverage",
            pd.DataFrame(
                {
                    "entity": [entity],
                    "sensor": "x",
                    "day": [day],
                    "rows": 288,
                    "measured": 288,
                    "filled": 0,
                    "missing": 0,
                    "longest_gap_rows": 0,
                }
            ),
            Key(entity),
        )
    assert entities_with_data(store, T0, T0 + 2 * DAY) == ["a"]
    assert entities_with_data(store, T0, T0 + 20 * DAY) == ["a", "b"]
    assert entities_with_data(store, T0, T0 + 20 * DAY, among=["b"]) == ["b"]


def test_column_codes_agree_across_batches_sharing_or_not_their_dictionaries() -> None:
    """Batches repeating a dictionary reuse its codes; a new dictionary maps to the same names."""
    import pyarrow as pa

    from eraflow.runs.scope import _column_codes

    sensors, features = pa.array(["t", "rh"]), pa.array(["mean", "max"])

    def batch(s: list[int], f: list[int], s_dict=sensors, f_dict=features):
        return (
            pa.DictionaryArray.from_arrays(pa.array(s, pa.int32()), s_dict),
            pa.DictionaryArray.from_arrays(pa.array(f, pa.int32()), f_dict),
        )

    code_of: dict[str, int] = {}
    known: dict = {}
    first = _column_codes(*batch([0, 1], [1, 0]), code_of, known)  # t__max, rh__mean
    second = _column_codes(*batch([1, 0, 0], [1, 1, 0]), code_of, known)  # rh__max, t__max, t__mean
    third = _column_codes(
        *batch([0, 1], [0, 0], pa.array(["rh", "co2"]), pa.array(["max"])), code_of, known
    )  # rh__max, co2__max: other dictionaries
    name = {code: n for n, code in code_of.items()}
    assert [name[c] for c in first] == ["t__max", "rh__mean"]
    assert [name[c] for c in second] == ["rh__max", "t__max", "t__mean"]
    assert [name[c] for c in third] == ["rh__max", "co2__max"]
    assert len(code_of) == 5 and len(known) == 2
