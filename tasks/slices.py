"""Reading one era batch's slice from the store: the shared first step of the era tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from eraflow.common.errors import DataError
from eraflow.common.grid import grid_step
from eraflow.config import StoreOptions
from eraflow.stages.batches import EraBatch
from eraflow.store import Key, Range, ResultStore
from eraflow.store.grid import read_entity_grid
from tasks.resources import store_session


@dataclass
class BatchSlice:
    """The open store, the batch's grid values and fill mask, its eras, its live sensors."""

    store: ResultStore
    values: pd.DataFrame
    fill_mask: pd.DataFrame
    eras: pd.DataFrame
    sensors: list[str]

    @property
    def fingerprints(self) -> dict[int, str]:
        """era_id → the data fingerprint the features are computed on."""
        return dict(zip(self.eras["era_id"].astype(int), self.eras["fingerprint"], strict=True))


@contextmanager
def read_batch(batch: EraBatch, store: StoreOptions, freq: str) -> Iterator[BatchSlice]:
    """The batch's slice; sensors with no value at all in it are left out (NaN features)."""
    with store_session(store) as opened:
        eras = opened.read(
            "eras",
            Key(
                batch.entity,
                {"level": batch.level, "era_id": Range(batch.first_era_id, batch.last_era_id + 1)},
            ),
        )
        if eras.empty:  # another run re-segmented the entity: its eras are that run's work
            empty = pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
            yield BatchSlice(opened, empty, empty, eras, [])
            return
        values, fill_mask = read_entity_grid(
            opened,
            batch.entity,
            step=grid_step(freq),
            start=eras["start"].min(),
            end=eras["end"].max(),
        )
        if values.empty:
            raise DataError(f"no stored grid for {batch.entity} in [{batch.start}, {batch.end})")
        sensors = [s for s in values.columns if values[s].notna().any()]
        yield BatchSlice(opened, values, fill_mask, eras, sensors)
