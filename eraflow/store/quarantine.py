"""Unreadable Parquet partitions: naming them, knowing what rewrites them, moving them aside.

A Parquet file of the store that cannot be read (truncated by a full disk, a copy cut short)
makes every read of its key range fail. Reads and writes then raise
:class:`CorruptPartitionError`, naming the file and the fix. A write whose key range covers
the whole file (every row the file can hold lies in the range, so the write would replace all
of it anyway) moves the file to ``<store>/.quarantine/<table>/...`` and proceeds: a re-run of
that range heals the store. :func:`eraflow.store.repair.repair` does the same for every file.

A file's partition (its path inside the table folder) says which rows it can hold, so what
rewrites it is known without reading it: :func:`file_key` is that key range, and
:func:`covers` tells whether a write's key range includes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from eraflow.common.errors import StoreError
from eraflow.store.base import Key, Range
from eraflow.store.tables import Table, stage_engines

QUARANTINE = ".quarantine"


class CorruptPartitionError(StoreError):
    """A Parquet file of the store cannot be read; the message names it and the fix.

    Attributes
    ----------
    files
        The unreadable files.
    """

    def __init__(self, message: str, files: Sequence[Path]) -> None:
        super().__init__(message)
        self.files = list(files)


def _month_bounds(name: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    try:
        first = pd.Timestamp(f"{name}-01", tz="UTC")
    except ValueError:
        return None
    return first, first + pd.offsets.MonthBegin(1)


@dataclass(frozen=True)
class Partition:
    """What one file can hold: its owner folder and partition values, from its path."""

    table: Table
    owner_folder: str
    level: str | None = None
    month: tuple[pd.Timestamp, pd.Timestamp] | None = None
    entity_folder: str | None = None
    era_id: int | None = None
    stage: str | None = None


def partition_of(spec: Table, relative: Path) -> Partition | None:
    """The partition of a file at ``relative`` (inside the table folder); None if foreign."""
    parts = relative.parts
    if not parts or not parts[-1].endswith(".parquet"):
        return None
    stem = parts[-1].removesuffix(".parquet")
    if spec.partition == "month" and len(parts) == 2:
        bounds = _month_bounds(stem)
        return None if bounds is None else Partition(spec, parts[0], month=bounds)
    if spec.partition == "level" and len(parts) == 2:
        return Partition(spec, parts[0], level=stem)
    if spec.partition == "entity-level" and len(parts) == 3:
        return Partition(spec, parts[0], entity_folder=parts[1], level=stem)
    if spec.partition == "era" and len(parts) == 3:
        era, _, stage = stem.partition("-")
        if era.lstrip("-").isdigit() and stage:
            return Partition(spec, parts[0], level=parts[1], era_id=int(era), stage=stage)
    return None


def file_key(part: Partition, owner: str) -> Key:
    """The key range a write must cover to rewrite the whole file (what a re-run rewrites)."""
    spec = part.table
    if part.month is not None:
        assert spec.time_column is not None
        return Key(owner, {spec.time_column: Range(*part.month)})
    if part.era_id is not None:
        assert part.stage is not None
        return Key(
            owner,
            {"level": part.level, "era_id": [part.era_id], "engine": stage_engines(part.stage)},
        )
    return Key(owner, {"level": part.level})


def _listed(condition: object) -> list[object]:
    if isinstance(condition, list | tuple | set | frozenset):
        return list(condition)
    return [condition]


def covers(part: Partition, key: Key) -> bool:
    """Whether every row the file can hold lies in ``key`` (its owner being the file's)."""
    from eraflow.store.names import entity_slug

    spec = part.table
    for column, condition in key.where.items():
        if isinstance(condition, Range):
            if part.month is None or column != spec.time_column:
                return False
            low, high = part.month
            if condition.low is not None and pd.Timestamp(condition.low) > low:
                return False
            if condition.high is not None and pd.Timestamp(condition.high) < high:
                return False
        elif column == "level" and part.level is not None:
            if part.level not in {str(v) for v in _listed(condition)}:
                return False
        elif column == "era_id" and part.era_id is not None:
            if part.era_id not in {int(str(v)) for v in _listed(condition)}:
                return False
        elif column == "engine" and part.stage is not None:
            if not set(stage_engines(part.stage)) <= {str(v) for v in _listed(condition)}:
                return False
        elif column == "entity" and part.entity_folder is not None:
            if part.entity_folder not in {entity_slug(str(v)) for v in _listed(condition)}:
                return False
        else:
            return False
    return True


def rerun_text(part: Partition, owner: str) -> str:
    """What a person re-runs to rewrite the file, in words."""
    spec = part.table
    if spec.name in ("selection", "feature_matrix"):
        return f"re-run selection for scope {owner!r}, level {part.level}"
    if part.month is not None:
        low, high = part.month
        return f"re-run {owner!r} over [{low:%Y-%m-%d}, {high:%Y-%m-%d})"
    if part.era_id is not None:
        return (
            f"re-run {owner!r} (level {part.level}, era {part.era_id}: its {part.stage} "
            "features are recomputed)"
        )
    return f"re-run {owner!r} (its {spec.name} of level {part.level} are rebuilt)"


def quarantine_path(root: Path, table: str, relative: Path) -> Path:
    """Where an unreadable file goes: ``<root>/.quarantine/<table>/<relative>`` stamped."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = relative.name.removesuffix(".parquet")
    return root / QUARANTINE / table / relative.parent / f"{name}.{stamp}.parquet"


def unreadable_message(root: Path, table: str, files: Sequence[tuple[Path, str]]) -> str:
    """The error for unreadable files: which, why, and the fix."""
    named = "; ".join(f"{path} ({reason})" for path, reason in files[:5])
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    return (
        f"{table}: unreadable Parquet file {named}{more}. Fix: run `eraflow repair` on "
        f"{root} (eraflow.store.repair.repair) to move it to {root / QUARANTINE} and list the "
        "ranges to re-run, then re-run them; a write whose range covers a whole file also "
        "moves it aside itself"
    )
