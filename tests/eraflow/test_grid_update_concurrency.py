"""Two adjacent range writes at once fill the gap between them as one write fills it.

Each write reads the other side's stored margin, gap-fills with it and writes back; without the
entity's lock held from that read to the write, both could read before either wrote and leave
the gap across their common edge open. Real stores, real threads, many rounds.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.runs.grid_update import recount_coverage, write_entity_range
from eraflow.store import Key, ParquetStore, Range, ResultStore
from eraflow.store.grid import read_entity_grid
from tests.pg import fresh_database

T0 = pd.Timestamp("2024-01-01", tz="UTC")
STEP = pd.Timedelta("5min")
CAT = load_catalogue()
SERIES = [20.0] * 10 + [np.nan] * 4 + [24.0] * 10  # a 20 min gap (fillable: <= 30 min)
EXPECTED = [20.0] * 10 + [20.8, 21.6, 22.4, 23.2] + [24.0] * 10  # linear, by hand
CUT = T0 + 12 * STEP  # the common edge falls inside the gap
END = T0 + 24 * STEP


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


def raw(values: list[float], start: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.date_range(start, periods=len(values), freq=STEP),
            "entity": "e",
            "air_temp_c": np.array(values, dtype=float),
        }
    )


def race(stores: tuple[ResultStore, ResultStore]) -> None:
    """Write [T0, CUT) and [CUT, END) from two threads released at the same instant."""
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(store: ResultStore, rows: pd.DataFrame, low: pd.Timestamp, high: pd.Timestamp):
        try:
            start.wait()
            write_entity_range(
                store, rows, entity="e", catalogue=CAT, freq="5min", start=low, end=high
            )
            recount_coverage(store, "e", freq="5min", start=low, end=high)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(stores[0], raw(SERIES[:12], T0), T0, CUT)),
        threading.Thread(target=write, args=(stores[1], raw(SERIES[12:], CUT), CUT, END)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def check(store: ResultStore, round_: int) -> None:
    values, mask = read_entity_grid(store, "e", step=STEP)
    np.testing.assert_allclose(values["air_temp_c"].to_numpy(), EXPECTED, err_msg=str(round_))
    assert mask["air_temp_c"].tolist() == [False] * 10 + [True] * 4 + [False] * 10
    coverage = store.read("coverage", Key("e"))
    assert coverage[["rows", "measured", "filled", "missing"]].to_numpy().tolist() == [
        [24, 20, 4, 0]
    ], round_


def clear(store: ResultStore) -> None:
    store.delete("grid", Key("e", {"time": Range(None, None)}))
    store.delete("coverage", Key("e"))


def test_adjacent_parquet_writes_at_once_fill_the_boundary_gap(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    for round_ in range(40):
        race((store, store))
        check(store, round_)
        clear(store)


@pytest.mark.postgres
def test_adjacent_postgres_writes_at_once_fill_the_boundary_gap(pg_dsn: str) -> None:
    from eraflow.store.postgres import PostgresStore

    schema = f"g_{uuid.uuid4().hex[:8]}"
    with PostgresStore(pg_dsn, schema=schema) as one, PostgresStore(pg_dsn, schema=schema) as two:
        for round_ in range(15):
            race((one, two))
            check(one, round_)
            clear(one)
