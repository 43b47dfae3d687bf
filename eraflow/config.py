"""Validated run configuration for the pipeline (shared by the flow, the CLI and notebooks)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eraflow.errors import ConfigError
from eraflow.grid import grid_step

Level = Literal["A", "B", "C"]
SIMULATOR = "simulator"
POSTGRES = "postgres"


def to_utc(value: datetime | str | pd.Timestamp | None) -> pd.Timestamp | None:
    """A UTC timestamp; naive input is taken as UTC (the pipeline's one clock)."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


class SimulatorSettings(BaseModel):
    """Size and seed of the built-in greenhouse simulator."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=42, ge=2, le=3660)
    seed: int = 7
    entities: list[str] = Field(default_factory=lambda: ["sim_a", "sim_b"], min_length=1)
    start: datetime = datetime(2024, 1, 1)
    full: bool = Field(
        default=False, description="22 sensors per compartment instead of 8 (benchmarks)"
    )


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs; validated before any work starts."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    source: str = Field(
        default=SIMULATOR,
        description="'simulator', 'postgres', a mapping preset name, or a mapping TOML path",
    )
    data_root: Path | None = Field(default=None, description="folder the mapping's globs use")
    sources: list[str] | None = Field(default=None, description="only these mapped sources")
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    freq: str = "5min"
    catalogue: Path | None = Field(default=None, description="user catalogue TOML override")
    store: Path = Path("eraflow-store")
    store_block: str | None = Field(
        default=None,
        description="a saved store block 'slug/name', e.g. "
        "'eraflow-postgres-store/prod'; overrides store",
    )
    source_block: str | None = Field(
        default=None, description="source 'postgres': the saved PostgresConnection block name"
    )
    postgres_source: dict[str, Any] | None = Field(
        default=None,
        description="source 'postgres': the table and column mapping (PostgresSourceConfig fields)",
    )
    entities: list[str] | None = Field(default=None, description="keep only these entities")
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    features_profile: str = Field(
        default="efficient", description="feature engine profile: minimal, seeds, efficient"
    )
    device: Literal["auto", "gpu", "cpu"] = "auto"
    era_method: Literal["pelt", "bocpd"] = "pelt"
    tsfresh_profile: Literal["catalogue", "minimal", "efficient", "comprehensive"] = Field(
        default="catalogue", description="'catalogue': each sensor's own profile"
    )
    tsfresh_levels: list[Level] = Field(
        default_factory=lambda: list[Level](["A"]), description="levels that get tsfresh features"
    )
    selection_levels: list[Level] = Field(
        default_factory=lambda: list[Level](["A", "B", "C"]),
        description="levels to select features for",
    )
    correlation_threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    target_sensor: str | None = Field(
        default=None, description="a grid sensor as the target of tsfresh's relevance tests"
    )
    target_how: Literal["mean", "sum", "min", "max", "median"] = "mean"
    fdr_level: float = Field(default=0.05, gt=0.0, lt=1.0)
    dispatch: Literal["in-process", "pools"] = Field(
        default="in-process",
        description="run era batches here, or on the work pools' era-features deployments",
    )
    gpu_pool: bool = Field(default=False, description="pools: a gpu-pool worker exists")
    cpu_workers: int = Field(default=2, ge=1, description="CPU batch groups to plan for")
    gpu_workers: int = Field(default=1, ge=0, description="GPU batch groups (one per GPU)")
    gpu_min_cost: float = Field(
        default=1e6, ge=0.0, description="planner: cheaper batches stay on CPU"
    )
    max_batch_cost: float | None = Field(
        default=None, gt=0.0, description="planner: split costlier batches"
    )
    task_runner: Literal["threads", "dask", "dask-cuda"] = "threads"
    dask_address: str | None = Field(
        default=None, description="an existing Dask scheduler (with 'dask')"
    )
    deployment: str = Field(
        default="era-features", description="pools: flow name of the era-features deployments"
    )
    era_signals: list[str] | None = Field(
        default=None, description="signals for era detection; default: the key climate sensors"
    )
    era_horizon: str | None = Field(
        default=None,
        description="how far before the run's start eras may be re-segmented "
        "(e.g. '90D'); None: the entity's whole stored history",
    )
    max_batch_rows: int = Field(
        default=20_000,
        ge=1,
        description="grid rows per era batch at most (an era longer than "
        "this is a batch alone): bounds a batch's memory",
    )
    select: bool = Field(
        default=True,
        description="select features at the end of the run (a backfill's "
        "chunks leave it to the backfill, which selects once)",
    )
    selection_scope: str | None = Field(
        default=None,
        description="name the selection and feature matrix are stored under; "
        "default: the run's entities joined by '+'",
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> pd.Timestamp | None:
        try:
            return to_utc(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{value!r} is not a date or timestamp") from exc

    @field_validator("freq")
    @classmethod
    def _step(cls, value: str) -> str:
        grid_step(value)
        return value

    @field_validator("era_horizon")
    @classmethod
    def _horizon(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                span = pd.Timedelta(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"era_horizon {value!r} is not a duration like '90D'") from exc
            if span <= pd.Timedelta(0):
                raise ValueError(f"era_horizon {value!r} must be positive")
        return value

    @field_validator("features_profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        from eraflow.features import PROFILES

        if value not in PROFILES:
            raise ValueError(f"unknown features profile {value!r}; choose from {sorted(PROFILES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"empty range: start {self.start} is not before end {self.end}")
        if self.source == POSTGRES:
            if self.source_block is None or self.postgres_source is None:
                raise ValueError(
                    "source 'postgres' needs source_block (a PostgresConnection "
                    "block name) and postgres_source (at least {'table': ...})"
                )
            from eraflow.ingest.postgres_source import PostgresSourceConfig

            PostgresSourceConfig.parse(self.postgres_source)
        elif self.source != SIMULATOR and self.data_root is None:
            raise ValueError(f"source {self.source!r} needs data_root (the folder of its files)")
        if self.store_block is not None and self.store_block.count("/") != 1:
            raise ValueError(f"store_block {self.store_block!r} must read 'block-type-slug/name'")
        if self.data_root is not None and not self.data_root.is_dir():
            raise ValueError(f"data_root {self.data_root} is not a folder")
        return self

    @classmethod
    def build(cls, **values: Any) -> PipelineConfig:
        """Validate, turning pydantic's error into a ConfigError that names the fields."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid pipeline parameters: {problems}") from exc
