"""The small store reads a flow needs, as tasks or functions.

Flows only compose: they never read the store themselves. Stores are opened through
:mod:`tasks.resources`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from eraflow.config import StoreOptions
from eraflow.runs.report import grid_rows_stored
from eraflow.runs.scope import entities_with_data
from eraflow.store import Key
from tasks._common import retry_transient
from tasks.resources import store_session


def describe_store(store: StoreOptions) -> str:
    """Where results go, for people (a folder, or a DSN without its password)."""
    with store_session(store) as opened:
        return opened.describe()


@task(
    name="backfill-entities",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
def backfill_entities(
    store: StoreOptions, entities: list[str] | None, start: pd.Timestamp, end: pd.Timestamp
) -> list[str]:
    """The entities the store holds grid data for in [start, end): a backfill's scope."""
    with store_session(store) as opened:
        return entities_with_data(opened, start, end, among=entities)


def stored_grid_rows(
    store: StoreOptions, entities: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> int:
    """Grid rows stored for ``entities`` over the UTC days of [start, end) (a summary count)."""
    with store_session(store) as opened:
        return grid_rows_stored(opened, entities, start, end)


def ledger_rows(store: StoreOptions, entities: Sequence[str], run_id: str) -> dict[str, int]:
    """Feature values run ``run_id`` wrote per stage, from the feature ledger (a row per era).

    How a parent learns what its children on the pools computed.
    """
    totals = {"engine": 0, "tsfresh": 0}
    with store_session(store) as opened:
        for entity in entities:
            ledger = opened.read(
                "feature_ledger", Key(entity), columns=["stage", "values", "run_id"]
            )
            mine = ledger[ledger["run_id"] == run_id]
            for stage, values in mine.groupby("stage")["values"].sum().items():
                totals[str(stage)] = totals.get(str(stage), 0) + int(values)
    return totals
