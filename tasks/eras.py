"""Prefect task for stage 3: multi-level era detection per entity, with an era plot."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from eraflow.batches import EraBatch, assign_stable_era_ids, batches_from_eras, grid_fingerprint
from eraflow.config import PipelineConfig
from eraflow.eras import EraConfig, EraWarning, detect_eras, plot_eras
from eraflow.errors import DataError
from eraflow.grid import entity_frames
from eraflow.store.parquet import entity_slug
from tasks._common import markdown_image, retry_transient
from tasks.store import store_session


def reports_folder(config: PipelineConfig) -> Path:
    """Where pictures go: beside the Parquet store (a local folder, whatever the store)."""
    folder = Path(config.store) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@task(name="eras", tags=["cpu", "eras"], retries=1, retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE, task_run_name="eras[{entity}]")
def detect_entity_eras(entity: str, config: PipelineConfig, start: pd.Timestamp,
                       end: pd.Timestamp) -> list[EraBatch]:
    """Segment one entity's stored grid in [start, end); store the eras; return batches."""
    logger = get_run_logger()
    with store_session(config) as store:
        grid = store.read_grid(entity=entity, start=start, end=end)
        frames = entity_frames(grid)
        if entity not in frames:
            raise DataError(f"no stored grid for {entity} in [{start}, {end})")
        values, fill_mask = frames[entity]
        era_config = EraConfig(method=config.era_method,
                               signals=tuple(config.era_signals) if config.era_signals else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EraWarning)
            eras = assign_stable_era_ids(detect_eras(values, entity=entity, config=era_config))
        for warning in caught:
            logger.warning("%s: %s", entity, warning.message)
        store.write_table("eras", eras, entity=entity, replace_where={"start": (start, end)})
    counts = eras.groupby("level").size().to_dict()
    logger.info("%s: eras per level %s", entity, counts)

    png = plot_eras(values, eras, path=reports_folder(config) / f"eras-{entity_slug(entity)}.png",
                    title=f"{entity}: eras {start:%Y-%m-%d} .. {end:%Y-%m-%d}")
    table = ["| level | eras | median length | method |", "|---|---|---|---|"]
    for level, part in eras.groupby("level"):
        median = (part["end"] - part["start"]).median()
        table.append(f"| {level} | {len(part)} | {median} | {part['method'].iloc[0]} |")
    create_markdown_artifact(
        key="eras-" + re.sub(r"[^a-z0-9-]", "-", entity.lower()),
        markdown="\n".join([markdown_image(png, f"Eras of {entity}"), "", *table]),
        description=f"Era boundaries of {entity} per level (A coarse ⊃ B ⊃ C fine)",
    )
    return batches_from_eras(eras, fingerprint=grid_fingerprint(values, fill_mask))
