"""Era batches and stable era ids."""

from __future__ import annotations

import pandas as pd
import pytest

from eraflow.batches import assign_stable_era_ids, batches_from_eras, config_hash

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def eras() -> pd.DataFrame:
    rows = [("e", "A", 0, T0, T0 + pd.Timedelta("2D"), 576),
            ("e", "B", 0, T0, T0 + pd.Timedelta("1D"), 288),
            ("e", "B", 1, T0 + pd.Timedelta("1D"), T0 + pd.Timedelta("2D"), 288)]
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


def test_era_id_window_covers_every_era_starting_inside_the_batch() -> None:
    from eraflow.batches import era_id_window

    batch = batches_from_eras(assign_stable_era_ids(eras()))[1]
    low, high = era_id_window(batch)
    base = int(T0.timestamp() // 60)
    assert (low, high) == (base, base + 2 * 24 * 60)


def test_fingerprint_changes_with_inner_boundaries() -> None:
    table = assign_stable_era_ids(eras())
    moved = table.copy()
    moved.loc[2, "start"] = T0 + pd.Timedelta("20h")
    moved.loc[1, "end"] = T0 + pd.Timedelta("20h")
    moved = assign_stable_era_ids(moved)
    a = batches_from_eras(table, fingerprint="grid")[1]
    b = batches_from_eras(moved, fingerprint="grid")[1]
    assert (a.start, a.end, a.eras, a.rows) == (b.start, b.end, b.eras, b.rows)
    assert a.fingerprint != b.fingerprint
    assert batches_from_eras(table)[1].fingerprint == ""  # no grid fingerprint: no caching
