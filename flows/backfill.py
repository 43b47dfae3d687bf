"""The ``backfill`` flow: a long range in chunks, one pipeline run per chunk.

With a chunk deployment, each chunk is a child run of that deployment (at most
``max_concurrent`` at a time), so the chunks spread over the pool's workers and each has its
own state in the UI; without one, the chunks run here, one after the other.
Prefect OSS has no backfill command (PREFECT_NOTES §8): this flow is eraflow's.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from eraflow.common.errors import EraflowError
from eraflow.common.ranges import split_range
from eraflow.config import FLAT, BackfillSettings, PipelineConfig, to_utc
from eraflow.runs.preflight import check_config
from eraflow.runs.scope import scope_name
from eraflow.runs.summary import RunSummary, computed_eras
from eraflow.store import TABLES
from flows.parameters import parameters_from
from flows.pipeline import (
    StageClock,
    compute_features,
    feature_pipeline,
    finish_run,
    segment_entities,
    select_scope_levels,
)
from tasks._common import RunProgress, retry_transient
from tasks.children import deployment_parameters, follow_worker, run_child
from tasks.eras import due_batches, plot_entity_eras
from tasks.resources import source_rows
from tasks.store import backfill_entities, describe_store, stored_grid_rows


class BackfillFailed(EraflowError):
    """Some chunks did not complete; the message lists them."""


@task(
    name="backfill-chunk",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
    task_run_name="chunk[{start:%Y-%m-%d}..{end:%Y-%m-%d}]",
)
def run_chunk(deployment: str, start: datetime, end: datetime, parameters: dict[str, Any]) -> str:
    """One chunk as a child run of ``deployment``, watched (see tasks.children).

    A lost worker (transient: retried once) or the child timeout fails the chunk instead of
    hanging the backfill; a child that failed on its own is not retried.
    """
    settings = PipelineConfig.build(**_config_fields(parameters))
    child = run_child(
        deployment,
        parameters=parameters | {"start": start.isoformat(), "end": end.isoformat()},
        name=f"pipeline[chunk {start:%Y-%m-%d}..{end:%Y-%m-%d}]",
        tags=["backfill"],
        timeout=settings.orchestration.seconds("child_timeout"),
        lost_after=settings.orchestration.seconds("lost_worker_after"),
    )
    return str(child.id)


def _config_fields(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in FLAT and v is not None}


_RANGE = [
    (
        inspect.Parameter("start", inspect.Parameter.KEYWORD_ONLY, annotation=datetime),
        "Start of the range, UTC (inclusive), e.g. 2015-10-01.",
    ),
    (
        inspect.Parameter("end", inspect.Parameter.KEYWORD_ONLY, annotation=datetime),
        "End of the range, UTC (exclusive).",
    ),
    (
        inspect.Parameter(
            "parameters",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=dict[str, Any] | None,
        ),
        "Pipeline parameters for every chunk and the final pass, as JSON (the fields of "
        'feature-pipeline, e.g. {"source": "knudjepsen", "data_root": "/data"}); with a chunk '
        "deployment, over that deployment's own parameters.",
    ),
]


@flow(name="backfill", flow_run_name="backfill[{start:%Y-%m-%d}..{end:%Y-%m-%d}]")
@parameters_from(BackfillSettings, extra=_RANGE)
def backfill(**params: Any) -> RunSummary:
    """Run the pipeline over [start, end) in chunks, then eras, features and selection once.

    Chunks only write the grid (``segment=False, features=False, select=False``): each chunk
    would move the last eras, so eras, features and selection made per chunk would be redone
    by the next. At the end the backfill segments each entity's whole history once (so it ends
    with the eras of one run over the range), computes the features of every era the ledger
    lacks once, and selects the scope once.
    """
    follow_worker()
    settings = BackfillSettings.model_validate(
        {k: v for k, v in params.items() if k in BackfillSettings.model_fields}
    )
    start, end = pd.Timestamp(to_utc(params["start"])), pd.Timestamp(to_utc(params["end"]))
    wanted = dict(params.get("parameters") or {})
    deployment = settings.chunk_deployment
    # The final pass runs with the chunks' settings: the deployment's own parameters (its
    # dispatch to the pools, say) under the given ones. Checked before any chunk starts.
    config = PipelineConfig.build(
        **_config_fields(deployment_parameters(deployment) | wanted | {"start": start, "end": end})
    )
    check_config(config)
    chunks = split_range(start, end, settings.chunk)
    clock = StageClock()
    if deployment is not None and config.store.block is None:
        # Chunk runs work in their worker's folder: the Parquet store as an absolute path.
        wanted["store"] = str(Path(config.store.path).resolve())
    chunk_params = wanted | {
        "segment": False,
        "select": False,
        "features": False,
        "report": False,
        "reuse_source": deployment is None,
    }
    children: list[str] = []
    with_data = [(b, f) for b, f in chunks if source_rows(config.replace(start=b, end=f))]
    if len(with_data) < len(chunks):
        get_run_logger().warning(
            "%d of %d chunks skipped: the source holds no data in them",
            len(chunks) - len(with_data),
            len(chunks),
        )
    progress = RunProgress("backfill chunks", "chunks")
    if deployment is None:
        # The chunks run in this process, whose flow run already sends heartbeats; a chunk's
        # own heartbeat thread only cost up to 1 s at its exit (it sleeps in 1 s steps).
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for done, (begin, finish) in enumerate(with_data, start=1):
                feature_pipeline(**(chunk_params | {"start": begin, "end": finish}))
                progress(done, len(with_data))
    else:
        children = _run_chunks(
            deployment, with_data, chunk_params, settings.max_concurrent, progress
        )
    clock.lap("chunks")

    entities = backfill_entities(config.store, config.source.entities, start, end)
    run_id = str(flow_run.get_id() or "local")
    if entities and config.eras.segment:
        segment_entities(entities, config, start, run_id)
    clock.lap("eras")
    parts = (config.grid, config.store, config.features, config.source.catalogue)
    due = {e: due_batches(e, *parts) for e in entities}
    batches = [b for found, _ in due.values() for b in found]
    _, computed = compute_features(batches, {e: s for e, (_, s) in due.items()}, config, run_id)
    clock.lap("features")
    selection = (
        select_scope_levels(config, entities, run_id) if entities and config.selection.run else {}
    )
    clock.lap("selection")
    plots = (
        {
            e: str(plot_entity_eras(e, config.grid, config.store, config.source.catalogue, run_id))
            for e in entities
        }
        if config.store.report
        else {}
    )
    clock.lap("plots")
    summary = RunSummary(
        kind="backfill",
        run_id=run_id,
        start=start,
        end=end,
        entities=entities,
        grid_rows=stored_grid_rows(config.store, entities, start, end),
        chunks=len(with_data),
        chunks_skipped=len(chunks) - len(with_data),
        chunk_runs=children,
        computed=computed_eras(batches),
        feature_rows=sum(computed.values()),
        features_computed=config.features.compute,
        scope=(config.selection.scope or scope_name(entities)) if entities else None,
        selection=selection,
        store=describe_store(config.store),
        tables=list(TABLES),
        stages=clock.seconds,
        plots=plots,
    )
    finish_run(summary, config, pd.DataFrame(columns=["entity", "sensor"]))
    return summary


def _run_chunks(
    deployment: str,
    chunks: list[tuple[pd.Timestamp, pd.Timestamp]],
    params: dict[str, Any],
    max_concurrent: int,
    progress: RunProgress,
) -> list[str]:
    pending: list[PrefectFuture[str]] = []
    done: list[PrefectFuture[str]] = []

    def settle(future: PrefectFuture[str]) -> None:
        pending.remove(future)
        done.append(future)
        progress(len(done), len(chunks))

    for begin, finish in chunks:
        if len(pending) >= max(max_concurrent, 1):
            settle(next(as_completed(pending)))
        pending.append(
            run_chunk.submit(deployment, begin.to_pydatetime(), finish.to_pydatetime(), params)
        )
    for future in as_completed(list(pending)):
        future.wait()
        settle(future)
    failed = [f"{f.state.name}: {f.state.message}" for f in done if not f.state.is_completed()]
    if failed:
        raise BackfillFailed(f"{len(failed)} of {len(done)} chunks failed:\n" + "\n".join(failed))
    return [f.result() for f in done]
