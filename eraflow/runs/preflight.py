"""Checks a run makes before it writes anything: every one needs no Prefect and no data write.

A bad parameter, mapping or catalogue file, a source without files, an unknown entity, a range
without data or a device that is not there fails here, with a message naming it and what to
change, so a bad run leaves the store exactly as it was. Entities and range are checked against
the source's span (eraflow.stages.ingest.span): a scan of its time columns, cached per process,
so the check costs well under a second on a real year, and nothing on a backfill's later chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eraflow.catalogue import load_catalogue
from eraflow.common.errors import ConfigError, DataError
from eraflow.common.grid import grid_step
from eraflow.config import POSTGRES, SIMULATOR, PipelineConfig
from eraflow.runs.bounds import GridPlan, check_grid_span, plan_grid, stray_rows
from eraflow.stages.features import gpu_available
from eraflow.stages.ingest import load_mapping
from eraflow.stages.ingest.readers import source_files
from eraflow.stages.ingest.span import (
    SourceSpan,
    check_postgres_span,
    check_span,
    mapping_span,
    scan_source,
    simulator_span,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["check_config", "check_entities", "check_postgres_source", "source_span"]


def check_config(config: PipelineConfig) -> GridPlan | None:
    """Everything knowable before reading data: catalogue, mapping, files, device, entities, range.

    A PostgreSQL source's entities and range need a connection: the caller checks them with
    :func:`check_postgres_source` once it has one.
    """
    load_catalogue(config.source.catalogue)
    if config.source.name not in (SIMULATOR, POSTGRES):
        mapping = load_mapping(config.source.name)
        chosen = mapping.sources
        if config.source.sources is not None:
            known = {s.name for s in mapping.sources}
            unknown = sorted(set(config.source.sources) - known)
            if unknown:
                raise ConfigError(
                    f"sources {unknown} are not in the mapping; it has {sorted(known)}"
                )
            chosen = [s for s in mapping.sources if s.name in set(config.source.sources)]
        for source in chosen:
            source_files(source, Path(config.source.data_root or "."))
    if config.features.device == "gpu" and not gpu_available():
        raise ConfigError(
            "device 'gpu' was asked for, but CuPy sees no CUDA device here: use "
            "device 'auto' (GPU when present) or 'cpu'"
        )
    span = source_span(config)
    if span is None:
        return None  # PostgreSQL: checked once a connection is open (tasks.resources)
    check_span(
        span, entities=config.source.entities, start=config.source.start, end=config.source.end
    )
    return check_bounds(config, span)


def check_bounds(config: PipelineConfig, span: SourceSpan) -> GridPlan:
    """The grid the run will build, bounded: no stray rows, no span over ``max_grid_span``.

    Returns the plan (what the run states before it builds it).
    """
    if config.source.name not in (SIMULATOR, POSTGRES):
        for entity, times in _times_in_range(config).items():
            stray = stray_rows(entity, times)
            if stray is not None:
                raise ConfigError(stray.describe(span.source))
    wanted = set(config.source.entities) if config.source.entities is not None else None
    plan = plan_grid(
        {
            name: (part.first, part.last)
            for name, part in span.entities.items()
            if part.rows
            and part.first is not None
            and part.last is not None
            and (wanted is None or name in wanted)
        },
        start=config.source.start,
        end=config.source.end,
        step=grid_step(config.grid.freq),
    )
    check_grid_span(plan, max_span=pd.Timedelta(config.grid.max_span))
    return plan


def _times_in_range(config: PipelineConfig) -> dict[str, np.ndarray]:
    """Per entity, the sorted UTC microseconds of a mapped source's rows in the run's range."""
    mapping = load_mapping(config.source.name)
    chosen = [
        s
        for s in mapping.sources
        if config.source.sources is None or s.name in config.source.sources
    ]
    parts: dict[str, list[np.ndarray]] = {}
    for source in chosen:
        for entity, times in scan_source(
            source, Path(config.source.data_root or ".")
        ).times.items():
            parts.setdefault(entity, []).append(times)
    lo = None if config.source.start is None else pd.Timestamp(config.source.start).value // 1000
    hi = None if config.source.end is None else pd.Timestamp(config.source.end).value // 1000
    out = {}
    for entity, pieces in parts.items():
        if config.source.entities is not None and entity not in config.source.entities:
            continue
        times = np.sort(np.concatenate(pieces))
        a = 0 if lo is None else int(np.searchsorted(times, lo, side="left"))
        b = len(times) if hi is None else int(np.searchsorted(times, hi, side="left"))
        out[entity] = times[a:b]
    return out


def source_span(config: PipelineConfig) -> SourceSpan | None:
    """What the configured source holds in the run's range; None for PostgreSQL.

    Cheap: the simulator's is arithmetic, a mapping's comes from a scan of its files' time
    columns that is cached while the files are unchanged. Why public: a backfill can ask it per
    chunk (``config.replace(start=..., end=...)``) to skip empty chunks.
    """
    if config.source.name == SIMULATOR:
        return simulator_span(
            config.source.simulator, start=config.source.start, end=config.source.end
        )
    if config.source.name == POSTGRES:
        return None
    return mapping_span(
        load_mapping(config.source.name),
        Path(config.source.data_root or "."),
        name=config.source.name,
        sources=config.source.sources,
        start=config.source.start,
        end=config.source.end,
    )


def check_entities(entities: list[str] | None, found: list[str]) -> None:
    """After reading: every asked-for entity is in the data (before anything is written)."""
    if entities is None:
        return
    missing = sorted(set(entities) - set(found))
    if missing:
        raise DataError(
            f"entities {missing} have no data in the source for this range; the "
            f"source holds {sorted(found)}: fix --entities or the range"
        )


def check_postgres_source(config: PipelineConfig, connection: psycopg.Connection) -> SourceSpan:
    """A PostgreSQL source's entities and range, checked on an open connection (one query)."""
    source = config.source
    return check_postgres_span(
        source.postgres or {},
        connection,
        entities=source.entities,
        start=source.start,
        end=source.end,
    )
