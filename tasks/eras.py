"""Prefect task for stage 3: re-segment an entity's history into eras, with an era plot."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import grid_step
from eraflow.common.memory import release_memory
from eraflow.config import EraOptions, FeatureOptions, GridOptions, StoreOptions
from eraflow.runs.feature_store import stage_hashes
from eraflow.runs.history import EraUpdate, due_eras, update_entity_eras
from eraflow.runs.summary import summary_folder
from eraflow.stages.batches import EraBatch, batches_for_todo
from eraflow.stages.eras import EraConfig, plot_eras
from eraflow.stages.eras.penalty_path import PenaltyChoice, applied_penalty, plot_penalty_path
from eraflow.store import Key
from eraflow.store.grid import read_entity_grid
from eraflow.store.names import entity_slug
from tasks._common import markdown_image, retry_transient
from tasks.resources import store_session


def run_folder(store: StoreOptions, run_id: str) -> Path:
    """Where one run's pictures go: ``<store>/reports/runs/<run_id>/``.

    A local folder whatever the store; one per run, so an older run's artifact and report
    keep showing its own picture.
    """
    folder = summary_folder(store.path) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def era_plot_path(store: StoreOptions, run_id: str, entity: str) -> Path:
    """The era plot of ``entity`` drawn by run ``run_id``."""
    return run_folder(store, run_id) / f"eras-{entity_slug(entity)}.png"


def _penalty_text(applied: EraConfig | None, level: str) -> str:
    if applied is None:
        return "-"
    scale, pen = applied_penalty(applied, level)
    return f"pen {pen:g}" if pen == pen else (f"{scale:g}" if scale == scale else "-")


def _publish(
    entity: str, update: EraUpdate, store: StoreOptions, catalogue: Path | None, run_id: str
) -> Path:
    """Draw the era plot of this run and publish it with a table as an artifact."""
    eras = update.eras
    sensors = load_catalogue(catalogue)
    png = plot_eras(
        update.values,
        eras[eras["start"] >= update.values.index.min()],
        path=era_plot_path(store, run_id, entity),
        units={name: sensors.get(name).unit for name in update.values.columns},
    )
    table = [
        "| level | eras | gap eras | median length | mean coverage | method | penalty_scale |",
        "|---|---|---|---|---|---|---|",
    ]
    applied = update.penalties.config if update.penalties is not None else None
    for level, part in eras.groupby("level"):
        data = part[part["kind"] != "gap"]
        median = (data["end"] - data["start"]).median()
        table.append(
            f"| {level} | {len(data)} | {len(part) - len(data)} | {median} | "
            f"{data['coverage'].mean():.1%} | {data['method'].iloc[0] if len(data) else '-'} | "
            f"{_penalty_text(applied, str(level))} |"
        )
    create_markdown_artifact(
        key="eras-" + re.sub(r"[^a-z0-9-]", "-", entity.lower()),
        markdown="\n".join([markdown_image(png, f"Eras of {entity}"), "", *table]),
        description=f"Era boundaries of {entity} per level (A coarse ⊃ B ⊃ C fine)",
    )
    return png


def _publish_penalty_path(
    entity: str, choice: PenaltyChoice, store: StoreOptions, rule: str, run_id: str
) -> None:
    path = choice.path
    png = plot_penalty_path(
        path,
        title=f"{entity}: eras against the penalty ({rule})",
        path=run_folder(store, run_id) / f"penalty-path-{entity_slug(entity)}.png",
    )
    wide = path.pivot_table(index="factor", columns="level", values="eras", aggfunc="first")
    scales = path.pivot_table(index="factor", columns="level", values="penalty_scale")
    table = ["| factor | " + " | ".join(f"{lv} (scale: eras)" for lv in wide.columns) + " |"]
    table.append("|---" * (len(wide.columns) + 1) + "|")
    notes = {
        (factor, level): " ("
        + ", ".join(n for n, on in (("elbow", elbow), ("applied", chosen)) if on)
        + ")"
        for level, factor, elbow, chosen in path[
            ["level", "factor", "elbow", "applied"]
        ].itertuples(index=False, name=None)
        if elbow or chosen
    }
    for factor, counts in wide.iterrows():
        cells = [
            f"{scales.at[factor, lv]:.4g}: {counts[lv]}{notes.get((factor, lv), '')}"
            for lv in wide.columns
        ]
        mark = " (set)" if factor == 1.0 else ""
        table.append(f"| {factor:g}x{mark} | " + " | ".join(cells) + " |")
    create_markdown_artifact(
        key="penalty-path-" + re.sub(r"[^a-z0-9-]", "-", entity.lower()),
        markdown="\n".join(
            [markdown_image(png, f"Eras against the penalty, {entity}"), "", *table]
        ),
        description=f"Eras per level of {entity} as each level's penalty_scale is varied "
        f"(rule: {rule})",
    )


@task(
    name="eras",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="eras[{entity}]",
)
def detect_entity_eras(
    entity: str,
    eras: EraOptions,
    grid: GridOptions,
    store: StoreOptions,
    features: FeatureOptions,
    catalogue: Path | None,
    start: pd.Timestamp | None,
    run_id: str,
) -> list[EraBatch]:
    """Re-segment ``entity``'s stored history; return batches of eras whose features are due.

    Eras whose bounds and data did not change keep their stored features; see
    :mod:`eraflow.runs.history`.
    """
    logger = get_run_logger()
    horizon = pd.Timedelta(eras.horizon) if eras.horizon else None
    with store_session(store) as opened:
        update = update_entity_eras(
            opened,
            entity,
            config=eras.detector(),
            step=grid_step(grid.freq),
            stages=stage_hashes(features, grid.freq, catalogue),
            start=start,
            horizon=horizon,
            penalty_rule=eras.penalty_rule,
            draw_penalty_path=eras.penalty_path and store.report,
        )
    for note in update.notes:
        logger.warning("%s: %s", entity, note)
    counts = update.eras.groupby("level").size().to_dict()
    logger.info(
        "%s: eras per level %s; %d unchanged, %d changed, %d gone; %d era-stage feature sets due",
        entity,
        counts,
        update.kept,
        update.changed,
        update.removed,
        len(update.todo),
    )
    if store.report:
        _publish(entity, update, store, catalogue, run_id)
        if update.penalties is not None and not update.penalties.path.empty:
            _publish_penalty_path(entity, update.penalties, store, eras.penalty_rule, run_id)
    release_memory()
    return batches_for_todo(update.eras, update.todo, max_rows=features.max_batch_rows)


@task(
    name="due-features",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="due-features[{entity}]",
)
def due_batches(
    entity: str,
    grid: GridOptions,
    store: StoreOptions,
    features: FeatureOptions,
    catalogue: Path | None,
) -> tuple[list[EraBatch], list[str]]:
    """Batches of the entity's stored eras whose features the ledger lacks, and its sensors.

    What a backfill computes at its end: its chunks re-segmented the history but left the
    features to this one pass, so each final era is computed once.
    """
    with store_session(store) as opened:
        eras, todo = due_eras(opened, entity, stage_hashes(features, grid.freq, catalogue))
        sensors = sorted(
            set(opened.read("coverage", Key(entity), columns=["sensor"])["sensor"].astype(str))
        )
    return batches_for_todo(eras, todo, max_rows=features.max_batch_rows), sensors


@task(name="plot-eras", cache_policy=NO_CACHE, task_run_name="plot[{entity}]")
def plot_entity_eras(
    entity: str, grid: GridOptions, store: StoreOptions, catalogue: Path | None, run_id: str
) -> Path:
    """The era plot of the entity's stored history (a backfill's report), as an artifact too."""
    with store_session(store) as opened:
        values, fill_mask = read_entity_grid(opened, entity, step=grid_step(grid.freq))
        eras = opened.read("eras", Key(entity))
    update = EraUpdate(
        eras=eras,
        todo=eras.iloc[:0],
        values=values,
        fill_mask=fill_mask,
        kept=len(eras),
        changed=0,
        removed=0,
        window_start=None,
        notes=[],
    )
    return _publish(entity, update, store, catalogue, run_id)
