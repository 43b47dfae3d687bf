"""Validated run configuration for the pipeline (shared by the flow, the CLI and notebooks)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eraflow.eras.config import EraConfig, LevelConfig, time_span
from eraflow.eras.penalty_path import PenaltyRule
from eraflow.errors import ConfigError, validation_message
from eraflow.grid import grid_step

Level = Literal["A", "B", "C"]
SIMULATOR = "simulator"
POSTGRES = "postgres"


def to_utc(value: datetime | str | pd.Timestamp | None) -> pd.Timestamp | None:
    """A UTC timestamp; naive input is taken as UTC (the pipeline's one clock)."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not a date or timestamp, e.g. 2015-10-01") from exc
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


class SimulatorSettings(BaseModel):
    """Size and seed of the built-in greenhouse simulator."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=42, ge=2, le=3660, description="Days of data to simulate.")
    seed: int = Field(default=7, description="Random seed: the same seed gives the same data.")
    entities: list[str] = Field(
        default_factory=lambda: ["sim_a", "sim_b"],
        min_length=1,
        description="Compartment names, one simulated compartment each.",
    )
    start: datetime = Field(default=datetime(2024, 1, 1), description="First simulated time (UTC).")
    full: bool = Field(
        default=False, description="22 sensors per compartment instead of 8 (benchmarks)."
    )


def _positive_span(value: str, info: ValidationInfo) -> str:
    """The era detector's own check (ConfigError is a ValueError: pydantic reports it)."""
    time_span(value, info.field_name or "value")
    return value


class EraLevelSettings(BaseModel):
    """Penalty and shortest era of one level (eraflow.eras.config.LevelConfig)."""

    model_config = ConfigDict(extra="forbid")

    penalty_scale: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="c in the penalty c * parameters * log(rows) of each new era: larger "
        "means fewer, longer eras.",
    )
    min_duration: Annotated[str, AfterValidator(_positive_span)] = Field(
        description="Shortest era, a time span such as '3h' or '7D'."
    )

    @classmethod
    def of(cls, level: LevelConfig) -> EraLevelSettings:
        """The settings of a detector level (the defaults come from there)."""
        return cls(penalty_scale=level.penalty_scale, min_duration=str(level.min_duration))

    def level_config(self) -> LevelConfig:
        """The era detector's settings of this level."""
        return LevelConfig(penalty_scale=self.penalty_scale, min_duration=self.min_duration)


class EraLevelsSettings(BaseModel):
    """Era penalties and shortest eras per level, coarsest first.

    Defaults are the detector's own (EraConfig), tuned on real greenhouse years. A changed
    setting re-segments the history the run covers; eras that change get new features.
    """

    model_config = ConfigDict(extra="forbid")

    level_a: EraLevelSettings = Field(
        default_factory=lambda: EraLevelSettings.of(EraConfig().level_a),
        description="Level A: operating regimes of weeks to months.",
    )
    level_b: EraLevelSettings = Field(
        default_factory=lambda: EraLevelSettings.of(EraConfig().level_b),
        description="Level B: days to weeks.",
    )
    level_c: EraLevelSettings = Field(
        default_factory=lambda: EraLevelSettings.of(EraConfig().level_c),
        description="Level C: hours to days (found on hourly means, or by BOCPD).",
    )

    @model_validator(mode="before")
    @classmethod
    def _over_the_defaults(cls, data: Any) -> Any:
        """A level given in part keeps its defaults: {"level_c": {"penalty_scale": 2}}."""
        if not isinstance(data, dict):
            return data
        defaults = EraConfig()
        merged = dict(data)
        for name, given in data.items():
            if isinstance(given, dict) and name in cls.model_fields:
                merged[name] = EraLevelSettings.of(getattr(defaults, name)).model_dump() | given
        return merged


class EraGapSettings(BaseModel):
    """When a stretch of missing era signals is an era of its own (kind 'gap', no features)."""

    model_config = ConfigDict(extra="forbid")

    min_duration: Annotated[str, AfterValidator(_positive_span)] | None = Field(
        default=str(EraConfig().gap_min_duration),
        description="Shortest such stretch, e.g. '6h'; null: no gap eras (detection "
        "interpolates across gaps).",
    )
    max_coverage: float = Field(
        default=EraConfig().gap_max_coverage,
        ge=0,
        le=1,
        description="Mostly missing: hours in which fewer than this share of the era signals "
        "have a reading.",
    )


UtcTime = Annotated[datetime | None, AfterValidator(to_utc)]
"""A time in the JSON schema (the UI's date picker); a UTC ``pd.Timestamp`` once validated."""


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs, declared once.

    The flow's parameters (and so the Prefect UI's run form), the ``eraflow run`` options and
    their help all come from these fields and their descriptions. Validated before any work.
    """

    model_config = ConfigDict(extra="forbid")

    # what to read ------------------------------------------------------------------------
    source: str = Field(
        default=SIMULATOR,
        description="Where the data comes from: 'simulator' (built in), 'postgres' (a table, "
        "with source_block and postgres_source), a mapping preset ('knudjepsen', 'aarslev') "
        "or the path of a mapping TOML file.",
    )
    data_root: Path | None = Field(
        default=None,
        description="Folder holding the source files (what the mapping's globs "
        "are relative to); needed for presets and mapping files.",
    )
    sources: list[str] | None = Field(
        default=None, description="Only these sources of the mapping (default: all of them)."
    )
    entities: list[str] | None = Field(
        default=None,
        description="Only these entities (compartments); each must exist in the source.",
    )
    start: UtcTime = Field(
        default=None,
        description="Start of the range to process, UTC (inclusive), e.g. "
        "2015-10-01; naive times are taken as UTC. Default: the first data.",
    )
    end: UtcTime = Field(
        default=None, description="End of the range, UTC (exclusive). Default: after the last data."
    )
    previous_day: bool = Field(
        default=False,
        description="Process the UTC day before the run's scheduled time "
        "(the daily deployment); ignored when start or end is given.",
    )
    simulator: SimulatorSettings = Field(
        default_factory=SimulatorSettings,
        description="Size and seed of the built-in simulator (source 'simulator').",
    )
    source_block: str | None = Field(
        default=None,
        description="Source 'postgres': a saved PostgreSQL connection block, its name (or "
        "'eraflow-postgres-connection/name').",
    )
    postgres_source: dict[str, Any] | None = Field(
        default=None,
        description="Source 'postgres': the table and its columns as JSON, at "
        'least {"table": "sensor_data"} (see eraflow.ingest.postgres_source).',
    )
    reuse_source: bool = Field(
        default=False,
        description="Keep the parsed source files in memory for the next run in this process "
        "(a backfill's chunks: each file is parsed once, not once per chunk).",
    )
    catalogue: Path | None = Field(
        default=None,
        description="A sensor catalogue TOML whose entries override or extend "
        "the packaged one (units, valid ranges, fill limits, profiles).",
    )
    # the grid and where results go ---------------------------------------------------------
    freq: str = Field(
        default="5min", description="Grid step, a fixed duration such as '5min' or '1h'."
    )
    max_grid_span: str = Field(
        default="7305D",
        description="Longest grid a run may build for one entity (default 20 years): a "
        "longer one (a far --start/--end, a stray row) stops the run before any work.",
    )
    store: Path = Field(
        default=Path("eraflow-store"),
        description="Folder of the Parquet store (and of the "
        "reports and plots, whatever the store).",
    )
    lock_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Parquet store: seconds a write waits for another writer's lock before "
        "it fails, naming the holder (and is retried); a PostgreSQL store block has its own.",
    )
    store_block: str | None = Field(
        default=None,
        description="A saved store block instead of the folder: its name, or "
        "'type/name' when two types share it (e.g. 'eraflow-postgres-store/prod').",
    )
    # eras --------------------------------------------------------------------------------
    era_method: Literal["pelt", "bocpd"] = Field(
        default="pelt",
        description="How the finest eras (level C) are found: exact PELT or "
        "Bayesian online changepoint detection.",
    )
    era_model: Literal["normal", "l2"] = Field(
        default=EraConfig().model,
        description="Segment cost: 'normal' (changes in mean and covariance) or 'l2' "
        "(changes in mean only; about twice as fast, e.g. for exact PELT at the grid "
        "resolution with era_detect_step null).",
    )
    era_signals: list[str] | None = Field(
        default=None,
        description="Sensors to segment on, jointly. Default: air temperature, "
        "CO2, humidity, light and pipe temperature, where present.",
    )
    era_detect_step: Annotated[str, AfterValidator(_positive_span)] | None = Field(
        default=str(EraConfig().detect_step),
        description="Level C is searched on means over blocks of this span (fast, hourly "
        "boundaries); null: on every grid row, exact PELT at the grid resolution (about 2 s "
        "for a 5-minute year; raise level C's penalty_scale, e.g. to 4, for as many eras).",
    )
    era_levels: EraLevelsSettings = Field(
        default_factory=EraLevelsSettings,
        description="Penalty and shortest era of each level (A, B, C).",
    )
    era_gaps: EraGapSettings = Field(
        default_factory=EraGapSettings,
        description="Stretches where the era signals are mostly missing become eras of their "
        "own (kind 'gap'): no boundary inside, never merged with data, no features.",
    )
    era_penalty_rule: PenaltyRule = Field(
        default="set",
        description="Which penalty each level is segmented with: 'set' (era_levels), or "
        "'elbow': per entity, the point of its penalty path (0.125x to 8x the set one) where "
        "raising the penalty stops removing many eras; stored in table era_penalties. Costs "
        "about 20 segmentations per entity.",
    )
    era_penalty_path: bool = Field(
        default=False,
        description="Also publish, per entity, the eras of each level against its penalty "
        "(0.125x to 8x the set one) with the elbow and the applied penalty marked: a picture "
        "to choose penalties by; costs about 20 segmentations.",
    )
    era_horizon: str | None = Field(
        default=None,
        description="How far before the run's start eras may be re-segmented, "
        "e.g. '90D'. Default: the entity's whole stored history.",
    )
    # features ----------------------------------------------------------------------------
    features_profile: Literal["minimal", "efficient", "comprehensive", "seeds"] = Field(
        default="efficient",
        description="Feature engine profile at every level: tsfresh's minimal, efficient "
        "or comprehensive set (same names and values; a sensor's catalogue profile raises "
        "it), or the small seed set.",
    )
    tsfresh_profile: Literal["catalogue", "minimal", "efficient", "comprehensive"] = Field(
        default="catalogue",
        description="What the tsfresh stage adds (only what the engine "
        "lacks): each sensor's catalogue profile, or one profile for all.",
    )
    tsfresh_levels: list[Level] = Field(
        default_factory=list,
        description="Era levels that also run tsfresh itself, for calculators the engine "
        "lacks or as a reference. Default: none (the engine has tsfresh's catalogue).",
    )
    device: Literal["auto", "gpu", "cpu"] = Field(
        default="auto",
        description="Where the feature engine runs: 'auto' uses a GPU when "
        "CuPy sees one; 'gpu' requires one.",
    )
    max_batch_rows: int = Field(
        default=20_000,
        ge=1,
        description="Most grid rows per era batch (an era longer than "
        "this is a batch alone): bounds a batch's memory.",
    )
    segment: bool = Field(
        default=True,
        description="Re-segment each entity's eras after writing the grid (a backfill's "
        "chunks leave it to the backfill, which segments the whole history once, at its end).",
    )
    features: bool = Field(
        default=True,
        description="Compute the features of the eras that are due (a backfill's chunks "
        "leave it to the backfill, which computes each final era once, at its end).",
    )
    # selection ---------------------------------------------------------------------------
    select: bool = Field(
        default=True,
        description="Select features at the end of the run (a backfill's chunks "
        "leave it to the backfill, which selects once).",
    )
    selection_levels: list[Level] = Field(
        default_factory=lambda: list[Level](["A", "B", "C"]),
        description="Era levels to select features for.",
    )
    selection_scope: str | None = Field(
        default=None,
        description="Name the selection and feature matrix are stored under. "
        "Default: the run's entities joined by '+'.",
    )
    correlation_threshold: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="Of two features with |Pearson r| above "
        "this over the eras, one is dropped (1 keeps all).",
    )
    target_sensor: str | None = Field(
        default=None,
        description="A grid sensor as the target of tsfresh's relevance tests "
        "(aggregated per era); without one, only the unsupervised filters run.",
    )
    target_how: Literal["mean", "sum", "min", "max", "median"] = Field(
        default="mean", description="How the target sensor is aggregated over each era."
    )
    fdr_level: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="False discovery rate of the relevance tests (Benjamini-Yekutieli).",
    )
    report: bool = Field(
        default=True,
        description="Draw the era plots and write the run report (a backfill's chunks leave "
        "it to the backfill, which reports once, at its end).",
    )
    # orchestration -----------------------------------------------------------------------
    dispatch: Literal["in-process", "pools"] = Field(
        default="in-process",
        description="Run era batches in this process, or as child runs "
        "of the era-features deployments on the work pools.",
    )
    task_runner: Literal["threads", "dask", "dask-cuda"] = Field(
        default="threads",
        description="Task runner for the era batches: threads, a Dask "
        "LocalCluster, a dask-cuda cluster, or dask_address.",
    )
    dask_address: str | None = Field(
        default=None, description="An existing Dask scheduler (with task_runner 'dask')."
    )
    cpu_workers: int = Field(
        default=2, ge=1, description="CPU worker groups the planner packs batches for."
    )
    gpu_workers: int = Field(
        default=1, ge=0, description="GPU worker groups (one per GPU) the planner packs for."
    )
    gpu_pool: bool = Field(
        default=False, description="With dispatch 'pools': a gpu-pool worker exists."
    )
    gpu_min_cost: float = Field(
        default=1e6,
        ge=0.0,
        description="Planner: batches cheaper than this stay on the CPU "
        "(cost = rows x sensor profile weights).",
    )
    max_batch_cost: float | None = Field(
        default=None,
        gt=0.0,
        description="Planner: batches costlier than this are split between eras.",
    )
    child_timeout: str = Field(
        default="6h",
        description="With dispatch 'pools' (and deployed backfills): a child "
        "run not finished after this long is marked Crashed and fails its parent.",
    )
    lost_worker_after: str = Field(
        default="120s",
        description="A child run waiting this long with no live worker in its "
        "pool (a worker died) is marked Crashed and fails its parent.",
    )
    deployment: str = Field(
        default="era-features",
        description="With dispatch 'pools': the flow name of the era-features deployments.",
    )

    @field_validator("freq")
    @classmethod
    def _step(cls, value: str) -> str:
        grid_step(value)
        return value

    @field_validator("era_horizon", "child_timeout", "lost_worker_after", "max_grid_span")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                span = pd.Timedelta(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{value!r} is not a duration like '90D' or '30s'") from exc
            if span <= pd.Timedelta(0):
                raise ValueError(f"{value!r} must be a positive duration")
        return value

    def seconds(self, name: Literal["child_timeout", "lost_worker_after"]) -> float:
        """A duration setting in seconds."""
        return float(pd.Timedelta(getattr(self, name)).total_seconds())

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
        for option in ("store_block", "source_block"):
            named = getattr(self, option)
            if named is not None and (named.count("/") > 1 or not named.rpartition("/")[2]):
                raise ValueError(f"{option} {named!r} must read 'name' or 'block-type-slug/name'")
        if self.data_root is not None and not self.data_root.is_dir():
            raise ValueError(f"data_root {self.data_root} is not a folder")
        blocking = next((p for p in (self.store, *self.store.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise ValueError(
                f"store {self.store}: {blocking} is a file, not a folder; give --store a "
                "folder (it is created when missing)"
            )
        return self

    @classmethod
    def build(cls, **values: Any) -> PipelineConfig:
        """Validate, turning pydantic's error into a ConfigError that names the fields."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"invalid pipeline parameters: {validation_message(exc)}") from None


class BackfillSettings(BaseModel):
    """How a backfill cuts its range into chunks and where the chunks run.

    Declared once: the ``eraflow backfill`` options and the backfill flow's parameters (so its
    deployment's form in the UI) come from these fields.
    """

    model_config = ConfigDict(extra="forbid")

    chunk: str = Field(
        default="7D",
        description="Chunk length, a duration such as '7D' or '1D'; chunks are aligned to "
        "the start, so a re-run replaces the same ranges.",
    )
    max_concurrent: int = Field(
        default=2, ge=1, description="With chunk_deployment: chunk runs at a time."
    )
    chunk_deployment: str | None = Field(
        default=None,
        description="Run each chunk as a run of this deployment, e.g. "
        "'feature-pipeline/manual' on a server (the chunks then spread over its workers); "
        "default: one chunk after the other, in the backfill's own process.",
    )

    @field_validator("chunk")
    @classmethod
    def _chunk(cls, value: str) -> str:
        try:
            span = pd.Timedelta(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{value!r} is not a duration like '7D' or '12h'") from exc
        if span <= pd.Timedelta(0):
            raise ValueError(f"{value!r} must be a positive duration")
        return value

    @field_validator("chunk_deployment")
    @classmethod
    def _deployment(cls, value: str | None) -> str | None:
        if value is not None and value.count("/") != 1:
            raise ValueError(f"{value!r} must read 'flow-name/deployment-name'")
        return value
