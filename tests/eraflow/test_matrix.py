"""The matrix a modeller gets: missing-value policies (hand cases) and the sklearn transformer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from eraflow.common.errors import ConfigError, DataError
from eraflow.runs.modelling import EraFeatures
from eraflow.runs.scope import (
    SelectionSettings,
    read_era_times,
    read_feature_matrix,
    select_scope,
)
from eraflow.stages.matrix import MissingValues, apply_missing, fit_missing, handle_missing
from eraflow.store import Key, ParquetStore

NAN, INF = np.nan, np.inf


def matrix() -> pd.DataFrame:
    """Four eras of one entity (era_id out of time order on purpose) and four features."""
    index = pd.MultiIndex.from_tuples(
        [("e", "C", 10), ("e", "C", 30), ("e", "C", 20), ("e", "C", 40)],
        names=["entity", "level", "era_id"],
    )
    return pd.DataFrame(
        {
            "a": [1.0, 3.0, NAN, 5.0],  # one gap (25 %)
            "b": [NAN, NAN, NAN, 2.0],  # 75 % missing
            "c": [INF, 1.0, 1.0, 4.0],  # inf counts as missing
            "d": [1.0, 2.0, 3.0, 4.0],  # complete
        },
        index=index,
    )


def test_keep_returns_the_values_as_stored() -> None:
    pd.testing.assert_frame_equal(handle_missing(matrix(), MissingValues("keep")), matrix())


def test_drop_keeps_only_complete_features_by_default() -> None:
    got = handle_missing(matrix(), MissingValues("drop"))
    assert got.columns.tolist() == ["d"]
    # with a share: features missing on at most 25 % of the eras stay, gaps and all
    some = handle_missing(matrix(), MissingValues("drop", max_missing=0.25))
    assert some.columns.tolist() == ["a", "c", "d"]
    assert np.isnan(some["a"].iloc[2]) and np.isinf(some["c"].iloc[0])


def test_median_fills_gaps_and_drops_features_missing_on_most_eras() -> None:
    got = handle_missing(matrix(), MissingValues("median"))
    assert got.columns.tolist() == ["a", "c", "d"]  # b: 75 % > 50 %
    assert got["a"].tolist() == [1.0, 3.0, 3.0, 5.0]  # median of 1, 3, 5
    assert got["c"].tolist() == [1.0, 1.0, 1.0, 4.0]  # median of 1, 1, 4
    assert np.isfinite(got.to_numpy()).all()


def test_neighbours_interpolate_in_time_order_within_the_entity() -> None:
    got = handle_missing(matrix(), MissingValues("neighbours"))
    # in era order 10, 20, 30, 40: a = 1, ?, 3, 5 -> the gap at 20 is (1 + 3) / 2
    assert got.loc[("e", "C", 20), "a"] == 2.0
    # c = inf, 1, 1, 4 in order 10, 20(1.0), 30(1.0), 40: the first era takes the nearest, 1
    assert got.loc[("e", "C", 10), "c"] == 1.0
    assert got.index.equals(matrix().index)  # rows stay in the caller's order


def test_mask_columns_mark_imputed_cells() -> None:
    got = handle_missing(matrix(), MissingValues("median", mask=True))
    assert got.columns.tolist() == ["a", "c", "d", "a__missing", "c__missing"]
    assert got["a__missing"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert got["c__missing"].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_fitted_on_some_eras_applied_to_others() -> None:
    """Medians and kept features come from the fitted eras only (no leakage in a CV)."""
    full = matrix()
    fitted = fit_missing(full.iloc[[0, 1]], MissingValues("median"))
    assert fitted.columns == ["a", "c", "d"]  # b has no value there; c misses 50 %, kept
    out = apply_missing(full.iloc[[2, 3]], fitted)
    assert out["a"].tolist() == [2.0, 5.0]  # median of the fitted 1 and 3, not of 1, 3, 5


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"policy": "mean"}, "choose one of"),
        ({"max_missing": 1.5}, "share in [0, 1]"),
        ({"policy": "drop", "mask": True}, "median or neighbours"),
    ],
)
def test_bad_options_name_the_fix(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        MissingValues(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def stored(tmp_path: Path) -> ParquetStore:
    """One entity's 10 level-C eras with two features, one gap, selected and stored."""
    store = ParquetStore(tmp_path / "store")
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    starts = [t0 + pd.Timedelta(days=i) for i in range(10)]
    ids = [int((s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1min")) for s in starts]
    store.replace(
        "eras",
        pd.DataFrame(
            {
                "entity": "a",
                "level": "C",
                "era_id": ids,
                "start": starts,
                "end": [s + pd.Timedelta(days=1) for s in starts],
                "rows": 288,
                "method": "pelt",
                "signals": "x",
                "score": 1.0,
                "fingerprint": "f",
                "coverage": 1.0,
                "kind": "data",
                "regime": pd.array([pd.NA] * 10, dtype="Int64"),
            }
        ),
        Key("a"),
    )
    x = [0.0, 1.0, NAN, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    w = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    rows = [("a", "C", e, "x", "v", v) for e, v in zip(ids, x, strict=True)]
    rows += [("a", "C", e, "y", "w", v) for e, v in zip(ids, w, strict=True)]
    long = pd.DataFrame(rows, columns=["entity", "level", "era_id", "sensor", "feature", "value"])
    store.replace("features", long.assign(engine="numpy", run_id="r", config_hash="h"), Key("a"))
    select_scope(
        store,
        "a",
        ["a"],
        "C",
        settings=SelectionSettings(),
        step=pd.Timedelta("5min"),
        run_id="r",
    )
    return store


def test_transformer_maps_eras_to_their_rows_with_training_medians(stored: ParquetStore) -> None:
    eras = read_era_times(stored, "a", "C").reset_index()
    features = EraFeatures(stored, "a", "C").fit(eras.iloc[5:])  # x's median there: 7
    out = features.transform(eras.iloc[:5])
    assert out.columns.tolist() == ["x__v", "y__w"]
    assert out["x__v"].tolist() == [0.0, 1.0, 7.0, 3.0, 4.0]
    assert features.get_feature_names_out().tolist() == ["x__v", "y__w"]
    # the same from a store folder, and after sklearn's clone
    folder = EraFeatures(stored.root, "a", "C")
    pd.testing.assert_frame_equal(
        clone(folder).fit_transform(eras), read_feature_matrix(stored, "a", "C")
    )


def test_transformer_in_a_pipeline_with_a_cross_validation(stored: ParquetStore) -> None:
    eras = read_era_times(stored, "a", "C").reset_index()
    raw = read_feature_matrix(stored, "a", "C", missing=MissingValues("keep"))
    target = 2.0 * raw["y__w"].to_numpy() + 1.0  # a target the features explain exactly
    model = make_pipeline(EraFeatures(stored, "a", "C"), LinearRegression())
    scores = cross_val_score(model, eras, target, cv=KFold(2), scoring="r2")
    assert scores == pytest.approx([1.0, 1.0])


def test_transformer_names_eras_it_does_not_hold(stored: ParquetStore) -> None:
    eras = read_era_times(stored, "a", "C").reset_index()
    features = EraFeatures(stored, "a", "C").fit(eras)
    with pytest.raises(DataError, match="not in the stored matrix"):
        features.transform(eras.assign(era_id=eras["era_id"] + 1))
