"""The parent flow ``feature-pipeline``: ingest, aggregate, gap-fill, eras, features, selection.

Stages after the stored grid read their own slices from the store, so mapped era work gets
small references (entity, era batch), never DataFrames.
Run it on the embedded default with ``python -m flows.pipeline`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run

from eraflow.config import SIMULATOR, PipelineConfig, SimulatorSettings
from eraflow.errors import EraflowError
from eraflow.grid import grid_step
from eraflow.planner import Plan
from eraflow.ranges import previous_day as day_before
from eraflow.scope import scope_name
from eraflow.store import Key
from flows.era_features import era_features_flow
from flows.runners import make_task_runner
from tasks.aggregate import aggregate_grid
from tasks.eras import detect_entity_eras
from tasks.gapfill import fill_and_store
from tasks.ingest import ingest_sources
from tasks.planner import plan_era_batches
from tasks.selection import select_level
from tasks.store import describe_store, store_session


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


@task(
    name="dispatch",
    tags=["dispatch"],
    cache_policy=NO_CACHE,
    task_run_name="dispatch[{deployment}/{device} #{worker}]",
)
def run_pool_group(
    deployment: str,
    device: str,
    worker: int,
    batches: list[dict[str, Any]],
    config: dict[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """One worker group's batches as a child run of the pool's era-features deployment."""
    from prefect.deployments import run_deployment

    child = cast(
        FlowRun,
        run_deployment(  # a sync call returns the FlowRun
            f"{deployment}/{device}",
            timeout=None,
            parameters={"batches": batches, "config": config, "device": device, "run_id": run_id},
            flow_run_name=f"era-features[{device} #{worker}]",
            tags=["era-features", device],
        ),
    )
    state = child.state
    if state is None or not state.is_completed():
        raise StageFailed(
            f"era-features/{device} #{worker} (flow run {child.id}) ended "
            f"{state.name if state else 'without a state'}: "
            f"{state.message if state else ''}"
        )
    return {"flow_run_id": str(child.id), "device": device, "batches": len(batches)}


def _dispatch(plan: Plan, config: PipelineConfig, run_id: str) -> dict[str, int]:
    """Run the planned batches: in this process, or on the pools' deployments."""
    # Children read only the store: no source settings (a worker may lack the source files),
    # and the Parquet store as an absolute path (workers may run in other folders). Workers on
    # other hosts need a shared store: a PostgreSQL store block.
    config_json = config.model_dump(mode="json") | {
        "source": "simulator",
        "data_root": None,
        "sources": None,
        "source_block": None,
        "postgres_source": None,
        "store": str(Path(config.store).resolve()),
    }
    groups = {
        key: [a.batch.model_dump(mode="json") for a in assigned]
        for key, assigned in plan.by_worker().items()
        if assigned
    }
    if config.dispatch == "pools":
        futures = [
            run_pool_group.submit(config.deployment, device, worker, batches, config_json, run_id)
            for (device, worker), batches in groups.items()
        ]
        _results(futures, "era-features dispatch")
        return _stored_rows(config, plan, run_id)
    totals = {"engine": 0, "tsfresh": 0}
    subflow = era_features_flow.with_options(task_runner=make_task_runner(config))
    for device in ("gpu", "cpu"):
        batches = [b for (d, _), group in groups.items() if d == device for b in group]
        if batches:
            rows = subflow(batches=batches, config=config_json, device=device, run_id=run_id)
            totals = {k: totals[k] + rows[k] for k in totals}
    return totals


def _stored_rows(config: PipelineConfig, plan: Plan, run_id: str) -> dict[str, int]:
    """Feature values this run's children wrote, from the ledger (small: a row per era)."""
    entities = sorted({a.batch.entity for a in plan.assignments})
    totals = {"engine": 0, "tsfresh": 0}
    with store_session(config) as store:
        for entity in entities:
            ledger = store.read(
                "feature_ledger", Key(entity), columns=["stage", "values", "run_id"]
            )
            mine = ledger[ledger["run_id"] == run_id]
            for stage, values in mine.groupby("stage")["values"].sum().items():
                totals[str(stage)] = totals.get(str(stage), 0) + int(values)
    return totals


def select_scope_levels(
    config: PipelineConfig, entities: list[str], run_id: str, levels: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """Select every configured level over the scope of ``entities`` (levels run in parallel)."""
    scope = config.selection_scope or scope_name(entities)
    chosen = [lv for lv in (levels or ["A", "B", "C"]) if lv in config.selection_levels]
    futures = select_level.map(
        chosen, unmapped(scope), unmapped(entities), unmapped(config), unmapped(run_id)
    )
    return dict(zip(chosen, _results(futures, "selection"), strict=True))


@flow(name="feature-pipeline", flow_run_name="pipeline[{source}]", log_prints=True)
def feature_pipeline(
    source: str = SIMULATOR,
    data_root: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    freq: str = "5min",
    store: str = "eraflow-store",
    catalogue: str | None = None,
    sources: list[str] | None = None,
    entities: list[str] | None = None,
    simulator: SimulatorSettings | None = None,
    store_block: str | None = None,
    source_block: str | None = None,
    postgres_source: dict[str, Any] | None = None,
    era_method: Literal["pelt", "bocpd"] = "pelt",
    era_signals: list[str] | None = None,
    features_profile: str = "efficient",
    device: Literal["auto", "gpu", "cpu"] = "auto",
    tsfresh_profile: Literal["catalogue", "minimal", "efficient", "comprehensive"] = "catalogue",
    tsfresh_levels: list[Literal["A", "B", "C"]] | None = None,
    selection_levels: list[Literal["A", "B", "C"]] | None = None,
    target_sensor: str | None = None,
    correlation_threshold: float = 0.95,
    fdr_level: float = 0.05,
    dispatch: Literal["in-process", "pools"] = "in-process",
    gpu_pool: bool = False,
    cpu_workers: int = 2,
    gpu_min_cost: float = 1e6,
    max_batch_cost: float | None = None,
    task_runner: Literal["threads", "dask", "dask-cuda"] = "threads",
    dask_address: str | None = None,
    previous_day: bool = False,
    era_horizon: str | None = None,
    max_batch_rows: int = 20_000,
    select: bool = True,
    selection_scope: str | None = None,
) -> dict[str, Any]:
    """Preprocess one range, segment it into eras and compute features per era.

    Parameters are validated up front (a bad one fails the run before any work, with a
    message naming it). ``start``/``end`` are UTC; naive values are taken as UTC. With
    ``previous_day`` (the daily deployment) the range is the UTC day before the run's
    scheduled time, so late or backfilled runs still process their own day.
    """
    if previous_day and start is None and end is None:
        start, end = day_before(flow_run.get_scheduled_start_time())
    config = PipelineConfig.build(
        source=source,
        data_root=data_root,
        start=start,
        end=end,
        freq=freq,
        store=store,
        catalogue=catalogue,
        sources=sources,
        entities=entities,
        simulator=simulator or SimulatorSettings(),
        store_block=store_block,
        source_block=source_block,
        postgres_source=postgres_source,
        era_method=era_method,
        era_signals=era_signals,
        features_profile=features_profile,
        device=device,
        tsfresh_profile=tsfresh_profile,
        tsfresh_levels=["A"] if tsfresh_levels is None else tsfresh_levels,
        selection_levels=["A", "B", "C"] if selection_levels is None else selection_levels,
        target_sensor=target_sensor,
        correlation_threshold=correlation_threshold,
        fdr_level=fdr_level,
        dispatch=dispatch,
        gpu_pool=gpu_pool,
        cpu_workers=cpu_workers,
        gpu_min_cost=gpu_min_cost,
        max_batch_cost=max_batch_cost,
        task_runner=task_runner,
        dask_address=dask_address,
        era_horizon=era_horizon,
        max_batch_rows=max_batch_rows,
        select=select,
        selection_scope=selection_scope,
    )
    frames = ingest_sources(config)
    aggregated = aggregate_grid(frames, config)
    grid = aggregated.grid
    start_utc = config.start or grid["time"].min()
    end_utc = config.end or grid["time"].max() + grid_step(config.freq)
    inputs = aggregated.report.per_sensor
    mapped = {str(e): part["sensor"].astype(str).tolist() for e, part in inputs.groupby("entity")}
    writes = fill_and_store(grid, config, start_utc, end_utc, mapped)
    entity_names = [w.entity for w in writes]

    era_futures = detect_entity_eras.map(entity_names, unmapped(config), unmapped(start_utc))
    batches = [b for found in _results(era_futures, "eras") for b in found]
    run_id = str(flow_run.get_id() or "local")
    live = {w.entity: list(w.sensors) for w in writes}
    plan = plan_era_batches(batches, live, config)
    rows_by_stage = _dispatch(plan, config, run_id)
    selection = select_scope_levels(config, entity_names, run_id) if config.select else {}

    summary = {
        "store": describe_store(config),
        "grid_rows": sum(w.rows for w in writes),
        "entities": entity_names,
        "sensors": {w.entity: len(w.sensors) for w in writes},
        "batches": {f"{b.entity}/{b.level}/{b.stage}": b.eras for b in batches},
        "feature_rows": sum(rows_by_stage.values()),
        "plan": plan.to_frame()["device"].value_counts().to_dict() if batches else {},
        "scope": (config.selection_scope or scope_name(entity_names)) if config.select else None,
        "selection": selection,
        "start": str(start_utc),
        "end": str(end_utc),
    }
    create_markdown_artifact(
        key="pipeline-summary",
        markdown="\n".join(
            ["# eraflow run", "", "| item | value |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in summary.items()]
            + (
                []
                if config.store_block
                else [
                    "",
                    f"Read the results with `pandas.read_parquet('{summary['store']}/<table>')`"
                    " (tables: grid, coverage, eras, features, selection, feature_matrix).",
                ]
            )
        ),
        description="Where this run's results are",
    )
    get_run_logger().info("results stored in %s", summary["store"])
    return summary


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description="Run the eraflow pipeline once (ephemeral Prefect unless PREFECT_API_URL "
        "points at a server).",
    )
    parser.add_argument(
        "--source",
        default=SIMULATOR,
        help="'simulator' (default), a preset (knudjepsen, aarslev) or a mapping TOML file",
    )
    parser.add_argument("--data-root", help="folder holding the source files")
    parser.add_argument("--start", help="UTC start, e.g. 2015-10-01")
    parser.add_argument("--end", help="UTC end (exclusive)")
    parser.add_argument("--freq", default="5min", help="grid step (default 5min)")
    parser.add_argument("--store", default="eraflow-store", help="Parquet store folder")
    parser.add_argument(
        "--store-block",
        help="a saved store block 'slug/name' instead, e.g. eraflow-postgres-store/results",
    )
    parser.add_argument(
        "--source-block", help="with --source postgres: a saved PostgresConnection block name"
    )
    parser.add_argument("--table", help="with --source postgres: the wide source table")
    parser.add_argument("--catalogue", help="user sensor catalogue TOML")
    parser.add_argument("--entities", nargs="+", help="only these entities")
    parser.add_argument("--era-method", default="pelt", choices=["pelt", "bocpd"])
    parser.add_argument("--profile", default="efficient", help="feature engine profile")
    parser.add_argument("--device", default="auto", choices=["auto", "gpu", "cpu"])
    parser.add_argument(
        "--runner",
        default="threads",
        choices=["threads", "dask", "dask-cuda"],
        help="task runner for the era batches",
    )
    parser.add_argument("--dask-address", help="an existing Dask scheduler (with --runner dask)")
    parser.add_argument("--days", type=int, default=42, help="simulator: days to simulate")
    parser.add_argument("--seed", type=int, default=7, help="simulator: random seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run the flow and print where the results are."""
    args = _parse_args(argv)
    state = feature_pipeline(
        source=args.source,
        data_root=args.data_root,
        start=args.start,
        end=args.end,
        freq=args.freq,
        store=args.store,
        catalogue=args.catalogue,
        entities=args.entities,
        era_method=args.era_method,
        features_profile=args.profile,
        device=args.device,
        task_runner=args.runner,
        dask_address=args.dask_address,
        store_block=args.store_block,
        source_block=args.source_block,
        postgres_source={"table": args.table} if args.table else None,
        simulator=SimulatorSettings(days=args.days, seed=args.seed),
        return_state=True,
    )
    if not state.is_completed():
        print(f"flow run ended {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    summary = state.result()
    print(
        f"flow run Completed: {summary['grid_rows']} grid rows for "
        f"{', '.join(summary['entities'])} ({summary['start']} .. {summary['end']})"
    )
    print(
        f"era batches computed: {summary['batches'] or 'none (all eras up to date)'}; "
        f"{summary['feature_rows']} feature values"
    )
    for level, chosen in summary["selection"].items():
        print(
            f"selection {level}: {chosen['kept']} of {chosen['features']} features kept "
            f"over {chosen['eras']} eras"
        )
    print(
        f"results: {summary['store']}/"
        "{grid,coverage,eras,features,selection,feature_matrix,reports}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
