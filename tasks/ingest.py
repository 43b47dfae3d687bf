"""Prefect task for stage 0: read the sources (mapped files or the simulator)."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.config import POSTGRES, SIMULATOR, PipelineConfig
from eraflow.ingest import IngestResult, load_mapping, read_mapping
from eraflow.ingest.postgres_source import PostgresSourceConfig, read_postgres
from eraflow.preflight import check_entities
from eraflow.simulate import simulate
from tasks._common import RunProgress, retry_transient
from tasks.resources import source_connection


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="ingest[{config.source}]",
)
def ingest_sources(config: PipelineConfig) -> list[pd.DataFrame]:
    """Canonical long rows of every source in the configured range."""
    logger = get_run_logger()
    if config.source == SIMULATOR:
        sim = config.simulator
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
        results = _read_files_or_table(config)
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
    check_entities(config, found)
    if config.entities is not None:
        frames = [f[f["entity"].isin(config.entities)] for f in frames]
    create_table_artifact(
        key="ingest-report", table=rows, description=f"Sources read for {config.source}"
    )
    logger.info("ingested %d values from %d source(s)", sum(map(len, frames)), len(frames))
    return frames


def _read_files_or_table(config: PipelineConfig) -> list[IngestResult]:
    progress = RunProgress(
        f"ingest {config.source}", "rows" if config.source == POSTGRES else "files"
    )
    if config.source == POSTGRES:
        source = PostgresSourceConfig.parse(config.postgres_source or {})
        with source_connection(config) as connection:
            return [
                read_postgres(
                    source,
                    connection,
                    start=config.start,
                    end=config.end,
                    entities=config.entities,
                    progress=progress,
                )
            ]
    mapping = load_mapping(config.source)
    return read_mapping(
        mapping,
        config.data_root or ".",
        start=config.start,
        end=config.end,
        sources=config.sources,
        progress=progress,
        reuse=config.reuse_source,
    )
