"""Era batches: the small, picklable references that feature work is mapped over.

Tasks exchange these instead of DataFrames (Dask pickles every parameter, and Prefect's
cache keys choke on frames); each task reads its own slice from the store. A batch is one
feature stage's work (``engine`` or ``tsfresh``) over consecutive eras.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable

import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class EraBatch(BaseModel):
    """Consecutive eras of one entity, level and feature stage, covering [start, end)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    entity: str
    level: str
    start: pd.Timestamp
    end: pd.Timestamp
    eras: int
    rows: int
    first_era_id: int
    last_era_id: int
    stage: str = "engine"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> pd.Timestamp:
        """Accept ISO strings too: batches travel to pool deployments as JSON."""
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value not in ("A", "B", "C"):
            raise ValueError(f"level must be 'A', 'B' or 'C', got {value!r}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> EraBatch:
        if self.end <= self.start:
            raise ValueError(f"batch end {self.end} is not after its start {self.start}")
        if self.last_era_id < self.first_era_id or self.eras < 1 or self.rows < 0:
            raise ValueError("a batch needs first_era_id <= last_era_id, eras >= 1, rows >= 0")
        return self

    @property
    def label(self) -> str:
        """Readable run-name label: ``A/12 kj_no3 2015-10-03..2015-10-09``."""
        stage = "" if self.stage == "engine" else f" {self.stage}"
        return (
            f"{self.level}/{self.eras} {self.entity} "
            f"{self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}{stage}"
        )


def batches_from_eras(
    eras: pd.DataFrame, *, stage: str = "engine", max_rows: int | None = None
) -> list[EraBatch]:
    """Batches of consecutive eras per (entity, level), in time order.

    With ``max_rows``, a run of eras is cut (between eras, never inside one) so no batch holds
    more grid rows than that, unless a single era does: this bounds a batch's memory.
    """
    out = []
    for (entity, level), part in eras.groupby(["entity", "level"], sort=True):
        part = part.sort_values("start")
        rows = part["rows"].to_numpy()
        cuts = [0]
        total = 0
        for i, r in enumerate(rows):
            if max_rows is not None and total and total + r > max_rows:
                cuts.append(i)
                total = 0
            total += int(r)
        cuts.append(len(part))
        for a, b in itertools.pairwise(cuts):
            chunk = part.iloc[a:b]
            out.append(
                EraBatch(
                    entity=str(entity),
                    level=str(level),
                    start=chunk["start"].min(),
                    end=chunk["end"].max(),
                    eras=len(chunk),
                    rows=int(chunk["rows"].sum()),
                    first_era_id=int(chunk["era_id"].min()),
                    last_era_id=int(chunk["era_id"].max()),
                    stage=stage,
                )
            )
    return out


def batches_for_todo(
    eras: pd.DataFrame, todo: pd.DataFrame, *, max_rows: int | None = None
) -> list[EraBatch]:
    """Batches of the eras ``todo`` names per stage: runs of eras that are next to each other.

    ``todo`` holds ``(level, era_id, stage)``; ``eras`` the entity's eras table. An era not in
    ``todo`` between two that are splits the run, so a batch reads exactly its eras.
    """
    out: list[EraBatch] = []
    for stage, wanted in todo.groupby("stage", sort=True):
        marked = eras.merge(
            wanted[["level", "era_id"]].assign(todo=True), on=["level", "era_id"], how="left"
        )
        marked["todo"] = marked["todo"].astype("boolean").fillna(False).astype(bool)
        for _, part in marked.groupby(["entity", "level"], sort=True):
            part = part.sort_values("start").reset_index(drop=True)
            run = (part["todo"] != part["todo"].shift()).cumsum()
            for _, piece in part[part["todo"]].groupby(run[part["todo"]]):
                out += batches_from_eras(piece, stage=str(stage), max_rows=max_rows)
    return out


def config_hash(settings: dict[str, object], versions: Iterable[str] = ()) -> str:
    """A short stable hash of the settings that shaped a result (for the features table)."""
    payload = json.dumps(
        {"settings": settings, "versions": sorted(versions)}, sort_keys=True, default=str
    )
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
