"""Prefect task for the run report: one HTML file next to the results, and its artifact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.config import PipelineConfig
from eraflow.report import (
    RunRecord,
    coverage_by_sensor,
    eras_by_level,
    feature_counts,
    selection_counts,
    write_report,
)
from tasks.eras import reports_folder
from tasks.store import store_session


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
def run_report(record: RunRecord, config: PipelineConfig, inputs: pd.DataFrame) -> Path:
    """Gather the report's tables from the store, write the HTML, publish an artifact."""
    entities = list(record.summary["entities"])
    with store_session(config) as store:
        coverage = coverage_by_sensor(
            store,
            entities,
            pd.Timestamp(record.summary["start"]),
            pd.Timestamp(record.summary["end"]),
        )
        quality = inputs.astype({"entity": str, "sensor": str}).merge(
            coverage, on=["entity", "sensor"], how="outer"
        )
        sections = {
            "quality": quality,
            "eras": eras_by_level(store, entities),
            "features": feature_counts(store, entities),
            "selection": selection_counts(store, record.summary.get("scope")),
        }
    path = write_report(record, sections, reports_folder(config))
    create_markdown_artifact(
        key="run-report",
        markdown="\n\n".join(
            [
                f"# eraflow run report\n\nThe whole report: `{path.resolve()}`",
                "## Time per stage\n\n"
                + _markdown(
                    pd.DataFrame(
                        {
                            "stage": list(record.stages),
                            "seconds": [round(s, 1) for s in record.stages.values()],
                        }
                    )
                ),
                "## Data quality per sensor\n\n" + _markdown(quality.round(3)),
                "## Eras per level\n\n" + _markdown(sections["eras"].round(3)),
                "## Selection\n\n" + _markdown(sections["selection"]),
            ]
        ),
        description="Data quality, eras, features and selection of this run",
    )
    return path
