"""Prefect task for stage 0: read the sources (mapped files or the simulator)."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.config import POSTGRES, SIMULATOR, SourceOptions
from eraflow.runs.preflight import check_entities
from eraflow.stages.ingest import IngestResult, load_mapping, read_mapping
from eraflow.stages.ingest.postgres_source import PostgresSourceConfig, read_postgres
from eraflow.stages.simulate import simulate
from tasks._common import RunProgress, retry_transient
from tasks.resources import source_connection


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="ingest[{source.name}]",
)
def ingest_sources(source: SourceOptions) -> list[pd.DataFrame]:
    """Canonical long rows of every source in the configured range."""
    logger = get_run_logger()
    if source.name == SIMULATOR:
        sim = source.simulator
        data = simulate(
            start=sim.start, days=sim.days, entities=sim.entities, seed=sim.seed, full=sim.full
        )
        frames = list(data.sources.values())
        rows = [
            {
                "source": name,
                "files": "(simulated)",
                "values": len(frame),
                "entities": ", ".join(sorted(frame["entity"].unique())),
            }
            for name, frame in data.sources.items()
        ]
    else:
        results = _read_files_or_table(source)
        frames = [r.frame for r in results]
        rows = [
            {
                "source": r.report.source,
                "files": len(r.report.files),
                "rows_read": r.report.rows_read,
                "values": r.report.values,
                "entities": ", ".join(r.report.entities),
                "unmapped_columns": ", ".join(r.report.unmapped_columns),
                "dst_dropped": r.report.dropped_nonexistent + r.report.dropped_ambiguous,
                "non_numeric_dropped": sum(r.report.non_numeric_values.values()),
                "ragged_rows_skipped": r.report.ragged_rows_skipped,
                "empty_sensors": ", ".join(r.report.empty_sensors),
                "first": str(r.report.first_time),
                "last": str(r.report.last_time),
            }
            for r in results
        ]
        for r in results:
            if r.report.ragged_rows_skipped:
                logger.warning(
                    "%s: %d rows with the wrong number of fields skipped (on_ragged = 'skip')",
                    r.report.source,
                    r.report.ragged_rows_skipped,
                )
            for where, count in r.report.non_numeric_values.items():
                logger.warning(
                    "%s: %d non-numeric values dropped (%s)", r.report.source, count, where
                )
            if r.report.empty_sensors:
                logger.warning(
                    "%s: mapped sensors %s hold no value at all in this range",
                    r.report.source,
                    ", ".join(r.report.empty_sensors),
                )
    found = sorted({str(e) for f in frames for e in f["entity"].unique()})
    check_entities(source.entities, found)
    if source.entities is not None:
        frames = [f[f["entity"].isin(source.entities)] for f in frames]
    create_table_artifact(
        key="ingest-report", table=rows, description=f"Sources read for {source.name}"
    )
    logger.info("ingested %d values from %d source(s)", sum(map(len, frames)), len(frames))
    return frames


def _read_files_or_table(source: SourceOptions) -> list[IngestResult]:
    progress = RunProgress(f"ingest {source.name}", "rows" if source.name == POSTGRES else "files")
    if source.name == POSTGRES:
        table = PostgresSourceConfig.parse(source.postgres or {})
        with source_connection(source) as connection:
            result = read_postgres(
                table,
                connection,
                start=source.start,
                end=source.end,
                entities=source.entities,
                progress=progress,
            )
        progress.finish()  # the rows' total was unknown while reading
        return [result]
    mapping = load_mapping(source.name)
    return read_mapping(
        mapping,
        source.data_root or ".",
        start=source.start,
        end=source.end,
        sources=source.sources,
        progress=progress,
        reuse=source.reuse,
    )
