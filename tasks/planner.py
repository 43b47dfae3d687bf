"""Prefect task for the planner: price, route and pack era batches; publish the decisions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.config import OrchestrationOptions, StoreOptions
from eraflow.stages.batches import EraBatch
from eraflow.stages.features import gpu_available
from eraflow.stages.planner import Plan, PlannerSettings, plan_batches
from eraflow.store import Key
from tasks.resources import store_session


def planner_settings(orchestration: OrchestrationOptions, device: str) -> PlannerSettings:
    """Pools: a GPU pool exists when declared; in process: when this host has a GPU."""
    has_gpu = (
        orchestration.gpu_pool
        if orchestration.dispatch == "pools"
        else (device != "cpu" and gpu_available())
    )
    return PlannerSettings(
        gpu_available=has_gpu and orchestration.gpu_workers > 0,
        gpu_workers=orchestration.gpu_workers if has_gpu else 1,
        cpu_workers=orchestration.cpu_workers,
        gpu_min_cost=orchestration.gpu_min_cost,
        max_batch_cost=orchestration.max_batch_cost,
    )


@task(name="plan", cache_policy=NO_CACHE)
def plan_era_batches(
    batches: list[EraBatch],
    sensors_by_entity: dict[str, list[str]],
    orchestration: OrchestrationOptions,
    device: str,
    store: StoreOptions,
    catalogue: Path | None,
) -> Plan:
    """The plan, also as a table artifact (one row per batch: cost, device, worker, reason)."""
    eras = None
    if orchestration.max_batch_cost is not None and batches:
        with store_session(store) as opened:
            eras = pd.concat(
                [opened.read("eras", Key(e)) for e in sensors_by_entity], ignore_index=True
            )
    plan = plan_batches(
        batches,
        eras,
        sensors_by_entity,
        catalogue=load_catalogue(catalogue),
        settings=planner_settings(orchestration, device),
    )
    table = plan.to_frame()
    create_table_artifact(
        key="era-plan",
        table=table.to_dict("records"),
        description="Era batches: estimated cost, device pool, worker, why",
    )
    loads = {
        device: f"makespan {pool.makespan:.3g} (bound {pool.lower_bound:.3g})"
        for device, pool in plan.pools.items()
    }
    get_run_logger().info("plan: %d batches; %s", len(table), loads)
    return plan
