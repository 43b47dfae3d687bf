"""The ``backfill`` flow: a long range in chunks, one pipeline run per chunk.

With a deployment name, each chunk is a child run of that deployment (at most
``max_concurrent`` at a time), so the chunks spread over the pool's workers and each has its
own state in the UI; without one, the chunks run here, one after the other.
Prefect OSS has no backfill command (PREFECT_NOTES §8): this flow is eraflow's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from eraflow.config import PipelineConfig, to_utc
from eraflow.errors import EraflowError
from eraflow.ranges import split_range
from eraflow.report import RunRecord
from eraflow.scope import entities_with_data, scope_name
from tasks.children import run_child
from tasks.eras import due_batches, plot_entity_eras
from tasks.report import run_report
from tasks.store import store_session


class BackfillFailed(EraflowError):
    """Some chunks did not complete; the message lists them."""


@task(
    name="backfill-chunk",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=10,
    task_run_name="chunk[{start:%Y-%m-%d}..{end:%Y-%m-%d}]",
)
def run_chunk(deployment: str, start: datetime, end: datetime, parameters: dict[str, Any]) -> str:
    """One chunk as a child run of ``deployment``, watched (see tasks.children).

    A lost worker or the child timeout fails the chunk instead of hanging the backfill.
    """
    settings = PipelineConfig.build(**_config_fields(parameters))
    child = run_child(
        deployment,
        parameters=parameters | {"start": start.isoformat(), "end": end.isoformat()},
        name=f"pipeline[chunk {start:%Y-%m-%d}..{end:%Y-%m-%d}]",
        tags=["backfill"],
        timeout=settings.seconds("child_timeout"),
        lost_after=settings.seconds("lost_worker_after"),
    )
    return str(child.id)


def _deployment_parameters(deployment: str | None) -> dict[str, Any]:
    """The default parameters of the chunks' deployment (none when chunks run here)."""
    if deployment is None:
        return {}
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return dict(client.read_deployment_by_name(deployment).parameters or {})


def _config_fields(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in PipelineConfig.model_fields and v is not None}


@task(name="backfill-selection", cache_policy=NO_CACHE)
def backfill_entities(config: PipelineConfig, start: datetime, end: datetime) -> list[str]:
    """The entities the backfill's range holds data for: the scope it selects over."""
    with store_session(config) as store:
        return entities_with_data(store, to_utc(start), to_utc(end), among=config.entities)


@flow(name="backfill", flow_run_name="backfill[{start:%Y-%m-%d}..{end:%Y-%m-%d}]")
def backfill(
    start: datetime,
    end: datetime,
    chunk: str = "7D",
    max_concurrent: int = 2,
    deployment: str | None = "feature-pipeline/manual",
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the pipeline over [start, end) in chunks, then features and selection once.

    Chunks only write the grid (``segment=False, features=False, select=False``): each chunk
    would move the last eras, so eras, features and selection made per chunk would be redone
    by the next. At the end the backfill segments each entity's whole history once (so it ends
    with the eras of one run over the range), computes the features of every era the ledger
    lacks once, and selects the scope once. Returns the child flow run ids, the entities and
    the selection.
    """
    logger = get_run_logger()
    chunks = split_range(start, end, chunk)
    wanted = dict(parameters or {})
    params = wanted | {
        "segment": False,
        "select": False,
        "features": False,
        "report": False,
        "reuse_source": deployment is None,
    }
    logger.info("%d chunk(s) of %s, at most %d at a time", len(chunks), chunk, max_concurrent)
    children: list[str] = []
    if deployment is None:
        from flows.pipeline import feature_pipeline

        # The chunks run in this process, whose flow run already sends heartbeats; a chunk's
        # own heartbeat thread only cost up to 1 s at its exit (it sleeps in 1 s steps).
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for begin, finish in chunks:
                feature_pipeline(**(params | {"start": begin, "end": finish}))
    else:
        children = _run_chunks(deployment, chunks, params, max_concurrent)
    # The final features run with the chunks' settings: the deployment's own parameters (its
    # dispatch to the pools, say) under the given ones.
    settings = _deployment_parameters(deployment) | wanted
    config = PipelineConfig.build(**_config_fields(settings | {"start": start, "end": end}))
    entities = backfill_entities(config, start, end)
    from flows.pipeline import compute_features, segment_entities, select_scope_levels

    if entities and config.segment:
        segment_entities(entities, config, to_utc(start))
    run_id = str(flow_run.get_id() or "local")
    due = {e: due_batches(e, config) for e in entities}
    batches = [b for found, _ in due.values() for b in found]
    _, computed = compute_features(batches, {e: s for e, (_, s) in due.items()}, config, run_id)
    selection = select_scope_levels(config, entities, run_id) if entities and config.select else {}
    summary = {
        "run_id": run_id,
        "entities": entities,
        "start": str(to_utc(start)),
        "end": str(to_utc(end)),
        "chunks": len(chunks),
        "feature_rows": sum(computed.values()),
        "scope": (config.selection_scope or scope_name(entities)) if entities else None,
        "selection": selection,
    }
    if entities and config.report:
        plots = {e: plot_entity_eras(e, config) for e in entities}
        record = RunRecord(run_id=run_id, summary=summary, plots=plots)
        summary["report"] = str(
            run_report(record, config, pd.DataFrame(columns=["entity", "sensor"])).resolve()
        )
    return summary | {"chunk_runs": children}


def _run_chunks(
    deployment: str, chunks: list[tuple[Any, Any]], params: dict[str, Any], max_concurrent: int
) -> list[str]:
    pending: list[PrefectFuture[str]] = []
    done: list[PrefectFuture[str]] = []
    for begin, finish in chunks:
        if len(pending) >= max(max_concurrent, 1):
            finished = next(as_completed(pending))
            pending.remove(finished)
            done.append(finished)
        pending.append(
            run_chunk.submit(deployment, begin.to_pydatetime(), finish.to_pydatetime(), params)
        )
    done += pending
    for future in done:
        future.wait()
    failed = [f"{f.state.name}: {f.state.message}" for f in done if not f.state.is_completed()]
    if failed:
        raise BackfillFailed(f"{len(failed)} of {len(done)} chunks failed:\n" + "\n".join(failed))
    return [f.result() for f in done]
