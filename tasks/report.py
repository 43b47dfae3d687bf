"""Prefect task for the run report: one HTML file next to the results, and its artifact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import grid_step, interval_text
from eraflow.config import StoreOptions
from eraflow.runs.report import (
    coverage_by_sensor,
    eras_by_level,
    feature_counts,
    greenhouse_days,
    greenhouse_summary,
    selection_counts,
    stage_table,
    write_report,
)
from eraflow.runs.summary import RunSummary, save_summary, summary_folder
from tasks.resources import store_session


def _markdown(frame: pd.DataFrame, limit: int = 40) -> str:
    if frame.empty:
        return "_none_"
    shown = frame.head(limit)
    lines = ["| " + " | ".join(map(str, shown.columns)) + " |", "|" + "---|" * len(shown.columns)]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    if len(frame) > limit:
        lines.append(f"\n_{len(frame) - limit} more rows in the HTML report_")
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE)
def run_report(
    summary: RunSummary,
    store: StoreOptions,
    inputs: pd.DataFrame,
    freq: str = "5min",
    catalogue: Path | None = None,
) -> Path:
    """Gather the report's tables from the store, write the HTML and the summary, publish.

    ``inputs`` holds what ingest and aggregation counted per (entity, sensor); a backfill,
    whose chunks counted theirs, passes an empty frame and the report shows coverage only.
    ``freq`` and ``catalogue`` (the run's grid step and sensor catalogue) give the
    greenhouse days: daily light integral and degree days from the stored grid.
    """
    entities = summary.entities
    sensors = load_catalogue(catalogue)
    with store_session(store) as opened:
        coverage = coverage_by_sensor(
            opened, entities, pd.Timestamp(summary.start), pd.Timestamp(summary.end)
        )
        quality = inputs.astype({"entity": str, "sensor": str}).merge(
            coverage, on=["entity", "sensor"], how="outer"
        )
        if "native_interval" in quality:
            quality["native_interval"] = quality["native_interval"].map(interval_text)
        sections = {
            "quality": quality,
            "eras": eras_by_level(opened, entities),
            "features": feature_counts(opened, entities),
            "selection": selection_counts(opened, summary.scope),
            "greenhouse": greenhouse_days(
                opened,
                entities,
                pd.Timestamp(summary.start),
                pd.Timestamp(summary.end),
                step=grid_step(freq),
                catalogue=sensors,
            ),
        }
    path = write_report(
        summary,
        sections,
        summary_folder(store.path),
        base_temp_c=sensors.greenhouse.base_temp_c,
    )
    create_markdown_artifact(
        key="run-report",
        markdown="\n\n".join(
            [
                f"# eraflow {summary.kind} report\n\nThe whole report: `{path.resolve()}`",
                "## Time per stage\n\n" + _markdown(stage_table(summary)),
                "## Data quality per sensor\n\n" + _markdown(quality.round(3)),
                "## Eras per level\n\n" + _markdown(sections["eras"].round(3)),
                "## Selection\n\n" + _markdown(sections["selection"]),
                "## Greenhouse days (per entity)\n\n"
                + _markdown(greenhouse_summary(sections["greenhouse"])),
            ]
        ),
        description="Data quality, eras, features and selection of this run",
    )
    return path


def record_summary(summary: RunSummary, store: StoreOptions) -> Path:
    """Save the summary where ``eraflow show`` finds it, when no report is written.

    A plain function, not a task: one small file, not worth a task run's API calls.
    """
    return save_summary(summary, summary_folder(store.path))
