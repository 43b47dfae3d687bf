"""The parent flow ``feature-pipeline``: ingest, aggregate, gap-fill, eras, features, selection.

Stages after the stored grid read their own slices from the store, so mapped era work gets
small references (entity, era batch), never DataFrames.
Run it on the embedded default with ``eraflow run`` (see ``eraflow run --help``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.runtime import flow_run

from eraflow.common.errors import EraflowError
from eraflow.common.grid import grid_step
from eraflow.common.memory import limit_heaps
from eraflow.common.ranges import previous_day as day_before
from eraflow.config import SIMULATOR, PipelineConfig, PipelineParameters
from eraflow.runs.preflight import check_config
from eraflow.runs.scope import scope_name
from eraflow.runs.summary import RunSummary, SelectionCount, computed_eras
from eraflow.stages.batches import EraBatch
from eraflow.stages.planner import Plan
from eraflow.store import TABLES
from flows.era_features import era_features_flow
from flows.parameters import parameters_from
from flows.runners import make_task_runner
from tasks._common import RunProgress
from tasks.aggregate import aggregate_grid
from tasks.children import follow_worker, run_pool_group
from tasks.eras import detect_entity_eras, era_plot_path
from tasks.gapfill import fill_and_store
from tasks.ingest import ingest_sources
from tasks.planner import plan_era_batches
from tasks.report import record_summary, run_report
from tasks.resources import check_resources
from tasks.selection import select_level
from tasks.store import describe_store, ledger_rows


class StageFailed(EraflowError):
    """Some mapped work failed after its retries; the message lists which."""


def _results(futures: list[PrefectFuture[Any]], stage: str) -> list[Any]:
    """Wait for all, then fail with one summary naming every failed item (not just the first)."""
    wait(futures)
    failed = [f for f in futures if not f.state.is_completed()]
    if failed:
        lines = [f"- {f.state.name}: {f.state.message}" for f in failed]
        raise StageFailed(f"{stage}: {len(failed)} of {len(futures)} failed\n" + "\n".join(lines))
    return [f.result() for f in futures]


def _dispatch(plan: Plan, config: PipelineConfig, run_id: str) -> dict[str, int]:
    """Run the planned batches: in this process, or on the pools' deployments."""
    # Children read only the store: no source settings (a worker may lack the source files),
    # and the Parquet store as an absolute path (workers may run in other folders). Workers on
    # other hosts need a shared store: a PostgreSQL store block.
    config_json = config.flat() | {
        "source": "simulator",
        "data_root": None,
        "sources": None,
        "source_block": None,
        "postgres_source": None,
        "store": str(Path(config.store.path).resolve()),
    }
    groups = {
        key: [a.batch.model_dump(mode="json") for a in assigned]
        for key, assigned in plan.by_worker().items()
        if assigned
    }
    if config.orchestration.dispatch == "pools":
        futures = [
            run_pool_group.submit(
                config.orchestration.deployment, device, worker, batches, config_json, run_id
            )
            for (device, worker), batches in groups.items()
        ]
        _results(futures, "era-features dispatch")
        entities = sorted({a.batch.entity for a in plan.assignments})
        return ledger_rows(config.store, entities, run_id)
    totals = {"engine": 0, "tsfresh": 0}
    subflow = era_features_flow.with_options(task_runner=make_task_runner(config.orchestration))
    for device in ("gpu", "cpu"):
        batches = [b for (d, _), group in groups.items() if d == device for b in group]
        if batches:
            rows = subflow(batches=batches, config=config_json, device=device, run_id=run_id)
            totals = {k: totals[k] + rows[k] for k in totals}
    return totals


def segment_entities(
    entities: list[str], config: PipelineConfig, start: pd.Timestamp | None, run_id: str
) -> list[EraBatch]:
    """Re-segment each entity's stored history; the era batches whose features are due."""
    era_futures = detect_entity_eras.map(
        entities,
        unmapped(config.eras),
        unmapped(config.grid),
        unmapped(config.store),
        unmapped(config.features),
        unmapped(config.source.catalogue),
        unmapped(start),
        unmapped(run_id),
    )
    progress = RunProgress("eras", "entities")
    for done, _ in enumerate(as_completed(era_futures), start=1):
        progress(done, len(era_futures))
    return [b for found in _results(era_futures, "eras") for b in found]


def compute_features(
    batches: list[EraBatch], sensors: dict[str, list[str]], config: PipelineConfig, run_id: str
) -> tuple[Plan, dict[str, int]]:
    """Plan and run the due era batches (nothing when config.features.compute is off)."""
    if not config.features.compute or not batches:
        return Plan(assignments=[]), {"engine": 0, "tsfresh": 0}
    plan = plan_era_batches(
        batches,
        sensors,
        config.orchestration,
        config.features.device,
        config.store,
        config.source.catalogue,
    )
    return plan, _dispatch(plan, config, run_id)


def select_scope_levels(
    config: PipelineConfig, entities: list[str], run_id: str, levels: list[str] | None = None
) -> dict[str, SelectionCount]:
    """Select every configured level over the scope of ``entities``, one level at a time.

    One after the other, so memory holds one level's matrix at most (level C of a year is
    about a thousand eras by ten thousand features).
    """
    scope = config.selection.scope or scope_name(entities)
    chosen = [lv for lv in (levels or ["A", "B", "C"]) if lv in config.selection.levels]
    return {
        level: SelectionCount(
            **select_level(
                level,
                scope,
                entities,
                config.selection,
                config.features.device,
                config.grid,
                config.store,
                run_id,
            )
        )
        for level in chosen
    }


def _run_name() -> str:
    """``pipeline[<source> <start>..<end>]``: backfill chunks and UI runs tell apart."""
    params = flow_run.get_parameters()
    start, end = params.get("start"), params.get("end")
    span = f" {str(start)[:10]}..{str(end)[:10]}" if start or end else ""
    return f"pipeline[{Path(str(params.get('source', SIMULATOR))).stem}{span}]"


@flow(name="feature-pipeline", flow_run_name=_run_name, log_prints=True)
@parameters_from(PipelineParameters)
def feature_pipeline(**params: Any) -> RunSummary:
    """Ingest, grid, eras, features and selection for one range of one or more entities.

    Every parameter is validated before any work (a bad one fails the run with a message
    naming it). Times are UTC. With previous_day (the daily deployment) the range is the UTC
    day before the run's scheduled time, so late or backfilled runs process their own day.
    """
    follow_worker()
    config = PipelineConfig.build(**params)
    if config.source.previous_day and config.source.start is None and config.source.end is None:
        start, end = day_before(flow_run.get_scheduled_start_time())
        config = PipelineConfig.build(**(params | {"start": start, "end": end}))
    return run_pipeline(config)


class StageClock:
    """Wall time per stage, for the run report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._began = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Close ``stage``: the time since the previous lap."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._began
        self._began = now


def run_pipeline(config: PipelineConfig) -> RunSummary:
    """The stages of one run, in order (called inside the feature-pipeline flow).

    Nothing is written before every check that can fail on the input has passed: the
    configuration, mapping, catalogue and device first, the entities once the data is read.
    """
    clock = StageClock()
    limit_heaps()
    from_files = check_config(config)  # both always: the second also checks the store
    grid_plan = check_resources(config) or from_files
    if grid_plan is not None:
        get_run_logger().info("grid to build: %s", grid_plan.describe())
    frames = ingest_sources(config.source)
    clock.lap("ingest")
    aggregated = aggregate_grid(frames, config.source, config.grid, report=config.store.report)
    del frames
    clock.lap("aggregate")
    grid = aggregated.grid
    start_utc = config.source.start or grid["time"].min()
    end_utc = config.source.end or grid["time"].max() + grid_step(config.grid.freq)
    inputs = aggregated.report.per_sensor
    mapped = {str(e): part["sensor"].astype(str).tolist() for e, part in inputs.groupby("entity")}
    writes = fill_and_store(
        grid, config.grid, config.store, config.source.catalogue, start_utc, end_utc, mapped
    )
    entity_names = [w.entity for w in writes]
    clock.lap("gap-fill + store")

    run_id = str(flow_run.get_id() or "local")
    batches = (
        segment_entities(entity_names, config, start_utc, run_id) if config.eras.segment else []
    )
    clock.lap("eras")
    live = {w.entity: list(w.sensors) for w in writes}
    plan, rows_by_stage = compute_features(batches, live, config, run_id)
    clock.lap("features")
    selection = select_scope_levels(config, entity_names, run_id) if config.selection.run else {}
    clock.lap("selection")

    summary = RunSummary(
        kind="pipeline",
        run_id=run_id,
        start=start_utc,
        end=end_utc,
        entities=entity_names,
        grid_rows=sum(w.rows for w in writes),
        sensors={w.entity: len(w.sensors) for w in writes},
        computed=computed_eras(batches),
        feature_rows=sum(rows_by_stage.values()),
        plan=plan.to_frame()["device"].value_counts().to_dict() if batches else {},
        features_computed=config.features.compute,
        scope=(config.selection.scope or scope_name(entity_names))
        if config.selection.run
        else None,
        selection=selection,
        store=describe_store(config.store),
        tables=list(TABLES),
        stages=clock.seconds,
        plots=(
            {e: str(era_plot_path(config.store, run_id, e)) for e in entity_names}
            if config.store.report and config.eras.segment
            else {}
        ),
    )
    finish_run(summary, config, inputs)
    return summary


def finish_run(summary: RunSummary, config: PipelineConfig, inputs: pd.DataFrame) -> None:
    """Save the summary (and the report when asked) and say where the results are."""
    if config.store.report:
        path = run_report(summary, config.store, inputs, config.grid.freq, config.source.catalogue)
        summary.report = str(path.resolve())
    else:
        record_summary(summary, config.store)
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.model_dump(mode="json").items())
    read_hint = (
        ""
        if config.store.block
        else f"\n\nRead the results with `pandas.read_parquet('{summary.store}/<table>')`."
    )
    create_markdown_artifact(
        key=f"{summary.kind}-summary",
        markdown=f"# eraflow {summary.kind}\n\n| item | value |\n|---|---|\n{rows}{read_hint}",
        description="Where this run's results are",
    )
    get_run_logger().info("results stored in %s; report %s", summary.store, summary.report or "-")
