"""One typed record of what a run did: written by every flow, read by the report and `show`.

A pipeline run and a backfill write the same model, so ``eraflow show``, the HTML report and
the command's final lines never disagree on a key. It is saved as JSON beside the reports
(``<store>/reports/runs/<run_id>.json`` and ``latest.json``); Prefect-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eraflow.common.errors import ConfigError, validation_message
from eraflow.stages.batches import EraBatch

RunKind = Literal["pipeline", "backfill"]


class SelectionCount(BaseModel):
    """What selection decided for one level of a scope."""

    model_config = ConfigDict(extra="forbid")

    eras: int = Field(description="Eras of the scope at this level (the matrix rows).")
    features: int = Field(description="Features offered to selection.")
    kept: int = Field(description="Features kept.")


class ComputedEras(BaseModel):
    """Eras of one entity, level and feature stage whose features this run computed."""

    model_config = ConfigDict(extra="forbid")

    entity: str
    level: str
    stage: str
    eras: int
    batches: int


def computed_eras(batches: Iterable[EraBatch]) -> list[ComputedEras]:
    """Eras and batches per (entity, level, stage), summed over every batch."""
    totals: dict[tuple[str, str, str], tuple[int, int]] = {}
    for batch in batches:
        key = (batch.entity, batch.level, batch.stage)
        eras, count = totals.get(key, (0, 0))
        totals[key] = (eras + batch.eras, count + 1)
    return [
        ComputedEras(entity=e, level=lv, stage=s, eras=n, batches=b)
        for (e, lv, s), (n, b) in sorted(totals.items())
    ]


class RunSummary(BaseModel):
    """What one run (a pipeline run or a whole backfill) did and where its results are."""

    model_config = ConfigDict(extra="forbid")

    kind: RunKind = Field(description="A pipeline run or a backfill (its chunks included).")
    run_id: str = Field(description="The Prefect flow run id ('local' outside a flow).")
    start: datetime = Field(description="Start of the range, UTC (inclusive).")
    end: datetime = Field(description="End of the range, UTC (exclusive).")
    entities: list[str] = Field(description="Entities the run wrote.")
    grid_rows: int = Field(description="Grid rows (times) stored for the range, all entities.")
    sensors: dict[str, int] = Field(default_factory=dict, description="Sensors per entity.")
    chunks: int | None = Field(default=None, description="A backfill's chunks that ran.")
    chunks_skipped: int = Field(
        default=0, description="A backfill's chunks skipped: the source holds no data there."
    )
    chunk_runs: list[str] = Field(
        default_factory=list, description="Flow run ids of a backfill's chunks on a deployment."
    )
    computed: list[ComputedEras] = Field(
        default_factory=list, description="Eras whose features this run computed."
    )
    feature_rows: int = Field(default=0, description="Feature values this run computed.")
    plan: dict[str, int] = Field(default_factory=dict, description="Era batches per device.")
    features_computed: bool = Field(default=True, description="Whether features were due.")
    scope: str | None = Field(default=None, description="The selection scope.")
    selection: dict[str, SelectionCount] = Field(default_factory=dict)
    store: str = Field(description="Where the tables are (a folder or a DSN, no password).")
    tables: list[str] = Field(default_factory=list)
    stages: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    plots: dict[str, str] = Field(default_factory=dict, description="Era plot per entity.")
    report: str | None = Field(default=None, description="The HTML report, if written.")

    @property
    def computed_eras(self) -> int:
        """Eras (over every entity, level and stage) whose features this run computed."""
        return sum(c.eras for c in self.computed)

    def lines(self) -> list[str]:
        """What the command prints at the end, and ``eraflow show`` prints again."""
        what = "backfill" if self.kind == "backfill" else "flow run"
        chunks = f" in {self.chunks} chunk(s)" if self.chunks is not None else ""
        if self.chunks_skipped:
            chunks += f" ({self.chunks_skipped} without data skipped)"
        out = [
            f"{what} Completed: {self.grid_rows} grid rows for {', '.join(self.entities) or '-'}"
            f" ({self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC){chunks}"
        ]
        if self.computed:
            per: dict[str, list[str]] = {}
            for c in self.computed:
                per.setdefault(c.entity, []).append(f"{c.level} {c.eras}")
            eras = "; ".join(f"{e} {', '.join(parts)}" for e, parts in per.items())
            out.append(f"features computed for eras: {eras}; {self.feature_rows} feature values")
        elif self.features_computed:
            out.append("features computed for eras: none (every era was up to date)")
        for level, chosen in self.selection.items():
            out.append(
                f"selection {self.scope}/{level}: {chosen.kept} of {chosen.features} features "
                f"kept over {chosen.eras} eras"
            )
        out.append(f"results: {self.store} ({', '.join(self.tables)})")
        if self.report:
            out.append(f"report: {self.report}")
        return out


def summary_folder(store_folder: Path) -> Path:
    """Where run summaries and reports live: ``<store folder>/reports/runs``."""
    return Path(store_folder) / "reports" / "runs"


def save_summary(summary: RunSummary, folder: Path) -> Path:
    """Write ``<run_id>.json`` and ``latest.json`` into ``folder``; returns the first."""
    folder.mkdir(parents=True, exist_ok=True)
    text = summary.model_dump_json(indent=2)
    path = folder / f"{summary.run_id}.json"
    for target in (path, folder / "latest.json"):
        partial = target.with_suffix(".json.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)  # a reader never sees half a file
    return path


def load_summary(folder: Path, run_id: str | None = None) -> RunSummary:
    """A saved summary (default: the latest); ConfigError names what is there instead."""
    path = folder / (f"{run_id}.json" if run_id else "latest.json")
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json") if p.stem != "latest")
        raise ConfigError(
            f"no run summary {path}; runs recorded here: {', '.join(known) or 'none'} "
            "(give --store the folder the run wrote to)"
        )
    try:
        return RunSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise ConfigError(
            f"{path} is not a run summary of this eraflow version ({validation_message(exc)}); "
            "re-run the range to write a new one"
        ) from None
