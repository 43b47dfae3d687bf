"""Era batches and stable era ids."""

from __future__ import annotations

import pandas as pd
import pytest

from eraflow.stages.batches import (
    EraBatch,
    assign_stable_era_ids,
    batches_for_todo,
    batches_from_eras,
    config_hash,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def eras() -> pd.DataFrame:
    rows = [
        ("e", "A", 0, T0, T0 + pd.Timedelta("2D"), 576),
        ("e", "B", 0, T0, T0 + pd.Timedelta("1D"), 288),
        ("e", "B", 1, T0 + pd.Timedelta("1D"), T0 + pd.Timedelta("2D"), 288),
    ]
    return pd.DataFrame(rows, columns=["entity", "level", "era_id", "start", "end", "rows"])


def test_stable_ids_are_minutes_since_epoch() -> None:
    out = assign_stable_era_ids(eras())
    base = int(T0.timestamp() // 60)
    assert out["era_id"].tolist() == [base, base, base + 24 * 60]


def test_ids_collide_only_below_one_minute_steps() -> None:
    bad = eras()
    bad.loc[2, "start"] = T0 + pd.Timedelta("30s")
    with pytest.raises(ValueError, match="same minute"):
        assign_stable_era_ids(bad)


def test_one_batch_per_entity_and_level() -> None:
    batches = batches_from_eras(assign_stable_era_ids(eras()))
    assert [(b.level, b.eras, b.rows) for b in batches] == [("A", 1, 576), ("B", 2, 576)]
    b = batches[1]
    assert (b.start, b.end) == (T0, T0 + pd.Timedelta("2D"))
    assert b.label == "B/2 e 2024-01-01..2024-01-03"


def test_config_hash_is_stable_and_sensitive() -> None:
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"a": 1}, ["v1"]) != config_hash({"a": 1}, ["v2"])


def test_max_rows_cuts_between_eras_never_inside_one() -> None:
    rows = [100, 100, 250, 50, 50]
    starts = [T0 + pd.Timedelta(hours=i) for i in range(6)]
    table = pd.DataFrame(
        {
            "entity": "e",
            "level": "C",
            "era_id": range(5),
            "start": starts[:5],
            "end": starts[1:],
            "rows": rows,
        }
    )
    batches = batches_from_eras(table, max_rows=200)
    assert [(b.first_era_id, b.last_era_id, b.rows) for b in batches] == [
        (0, 1, 200),
        (2, 2, 250),
        (3, 4, 100),
    ]


def test_todo_batches_hold_only_due_eras_and_never_span_a_kept_one() -> None:
    starts = [T0 + pd.Timedelta(hours=i) for i in range(6)]
    table = pd.DataFrame(
        {
            "entity": "e",
            "level": "C",
            "era_id": range(5),
            "start": starts[:5],
            "end": starts[1:],
            "rows": 12,
        }
    )
    todo = pd.DataFrame(
        {
            "level": "C",
            "era_id": [0, 1, 3, 4, 4],
            "stage": ["engine", "engine", "engine", "engine", "tsfresh"],
        }
    )
    batches = batches_for_todo(table, todo)
    assert [(b.stage, b.first_era_id, b.last_era_id) for b in batches] == [
        ("engine", 0, 1),
        ("engine", 3, 4),
        ("tsfresh", 4, 4),
    ]
    assert batches[2].label.endswith("tsfresh")


def test_a_batch_refuses_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="level"):
        EraBatch(
            entity="e",
            level="Z",
            start=T0,
            end=T0 + pd.Timedelta("1h"),
            eras=1,
            rows=1,
            first_era_id=0,
            last_era_id=0,
        )
    with pytest.raises(ValueError, match="not after"):
        EraBatch(
            entity="e", level="A", start=T0, end=T0, eras=1, rows=1, first_era_id=0, last_era_id=0
        )
