"""Era batches: the small, picklable references that feature work is mapped over.

Tasks exchange these instead of DataFrames (Dask pickles every parameter, and Prefect's
cache keys choke on frames); each task reads its own slice from the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator


class EraBatch(BaseModel):
    """A set of consecutive eras of one entity and level, covering [start, end)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    entity: str
    level: str
    start: pd.Timestamp
    end: pd.Timestamp
    eras: int
    rows: int
    first_era_id: int
    last_era_id: int
    fingerprint: str = ""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> pd.Timestamp:
        """Accept ISO strings too: batches travel to pool deployments as JSON."""
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")

    @property
    def label(self) -> str:
        """Readable run-name label: ``A/12 kj_no3 2015-10-03..2015-10-09``."""
        return f"{self.level}/{self.eras} {self.entity} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}"


def grid_fingerprint(values: pd.DataFrame, fill_mask: pd.DataFrame | None = None) -> str:
    """A content hash of an entity's grid slice (values, mask, times): the cache's data key."""
    parts = [pd.util.hash_pandas_object(values, index=True).to_numpy()]
    if fill_mask is not None:
        parts.append(pd.util.hash_pandas_object(fill_mask, index=False).to_numpy())
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.tobytes())
    digest.update(",".join(map(str, values.columns)).encode())
    return digest.hexdigest()[:16]


def batches_from_eras(eras: pd.DataFrame, fingerprint: str = "") -> list[EraBatch]:
    """One batch per (entity, level), in time order (the planner may split them further)."""
    out = []
    for (entity, level), part in eras.groupby(["entity", "level"], sort=True):
        part = part.sort_values("start")
        # The key of a batch's cached features must change when its inner boundaries move.
        bounds = pd.util.hash_pandas_object(part[["era_id", "start", "end"]], index=False)
        digest = hashlib.sha256(fingerprint.encode() + bounds.to_numpy().tobytes())
        out.append(EraBatch(
            entity=str(entity), level=str(level), start=part["start"].min(),
            end=part["end"].max(), eras=len(part), rows=int(part["rows"].sum()),
            first_era_id=int(part["era_id"].min()), last_era_id=int(part["era_id"].max()),
            fingerprint=digest.hexdigest()[:16] if fingerprint else "",
        ))
    return out


def config_hash(settings: dict[str, object], versions: Iterable[str] = ()) -> str:
    """A short stable hash of the settings that shaped a result (for the features table)."""
    payload = json.dumps({"settings": settings, "versions": sorted(versions)}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


ERA_ID_UNIT = pd.Timedelta("1min")


def assign_stable_era_ids(eras: pd.DataFrame) -> pd.DataFrame:
    """Replace positional era ids by whole minutes since the Unix epoch of each era's start.

    Eras of one (entity, level) never overlap, so the start identifies an era; deriving the id
    from it keeps ids unique across backfill chunks and stable across re-runs of a range
    (a positional 0, 1, 2, ... would collide between chunks and shift when a range is re-run).
    """
    out = eras.copy()
    starts = pd.DatetimeIndex(out["start"]).tz_convert("UTC")
    epoch = pd.Timestamp(0, tz="UTC")
    out["era_id"] = ((starts - epoch) // ERA_ID_UNIT).astype("int64")
    if out.duplicated(["entity", "level", "era_id"]).any():
        raise ValueError("two eras of one level start in the same minute: grid step < 1 min")
    return out


def era_id_window(batch: EraBatch) -> tuple[int, int]:
    """Era ids (start minutes) of every era that starts inside the batch's [start, end).

    Replacing by this window, not by the batch's first/last ids, also removes stored eras of an
    older segmentation that no longer exist.
    """
    epoch = pd.Timestamp(0, tz="UTC")
    return (int((batch.start - epoch) // ERA_ID_UNIT),
            int((batch.end - epoch + ERA_ID_UNIT - pd.Timedelta(1, "ns")) // ERA_ID_UNIT))
