"""Reading one era batch's slice from the store: the shared first step of the era tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from eraflow.batches import EraBatch
from eraflow.config import PipelineConfig
from eraflow.errors import DataError
from eraflow.grid import entity_frames
from eraflow.store import ResultStore
from tasks.store import store_session

BatchSlice = tuple[ResultStore, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]


@contextmanager
def read_batch(batch: EraBatch, config: PipelineConfig) -> Iterator[BatchSlice]:
    """The open store, the batch's grid values and fill mask, its eras, and its live sensors.

    Sensors with no value at all in the slice (another entity's sensor, a dead one) are left
    out: they would only yield NaN features, and the coverage table already reports them.
    """
    with store_session(config) as store:
        grid = store.read_grid(entity=batch.entity, start=batch.start, end=batch.end)
        frames = entity_frames(grid)
        if batch.entity not in frames:
            raise DataError(f"no stored grid for {batch.entity} in [{batch.start}, {batch.end})")
        values, fill_mask = frames[batch.entity]
        eras = store.read_table("eras", entity=batch.entity)
        eras = eras[(eras["level"] == batch.level)
                    & eras["era_id"].between(batch.first_era_id, batch.last_era_id)]
        sensors = [s for s in values.columns if values[s].notna().any()]
        yield store, values, fill_mask, eras, sensors
