"""The sections of a run's settings; each task takes only its section(s).

Source, grid, store, eras, features, selection, orchestration.

Every field is declared once, here, with its description and default; a field's ``alias`` is
its public flat name (``--era-method`` on the command line, ``era_method`` among the flow's
parameters and in prefect.yaml), given where it differs from the field's own name. Defaults
that a library stage owns come from that stage (the era detector's levels, the planner's
packing), so they are declared once too.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eraflow.config.values import (
    DEFAULT_STORE,
    SIMULATOR,
    DeploymentName,
    Device,
    Duration,
    EraSpan,
    GridStep,
    Level,
    OptionalDuration,
    OptionalEraSpan,
    UtcTime,
    seconds,
)
from eraflow.stages.eras.config import EraConfig, LevelConfig
from eraflow.stages.eras.penalty_path import PenaltyRule
from eraflow.stages.planner import PlannerSettings


class Section(BaseModel):
    """A group of settings: strict (unknown names fail), filled by field name or alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- values that are themselves small models ------------------------------------------------


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


class EraLevelSettings(BaseModel):
    """Penalty and shortest era of one level (eraflow.stages.eras.config.LevelConfig)."""

    model_config = ConfigDict(extra="forbid")

    penalty_scale: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="c in the penalty c * parameters * log(rows) of each new era: larger "
        "means fewer, longer eras.",
    )
    min_duration: EraSpan = Field(description="Shortest era, a time span such as '3h' or '7D'.")

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

    min_duration: OptionalEraSpan = Field(
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


# -- the sections ------------------------------------------------------------------------


class SourceOptions(Section):
    """What to read: the source, its files or table, the entities and the range."""

    name: str = Field(
        default=SIMULATOR,
        alias="source",
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
    block: str | None = Field(
        default=None,
        alias="source_block",
        description="Source 'postgres': a saved PostgreSQL connection block, its name (or "
        "'eraflow-postgres-connection/name').",
    )
    postgres: dict[str, Any] | None = Field(
        default=None,
        alias="postgres_source",
        description="Source 'postgres': the table and its columns as JSON, at "
        'least {"table": "sensor_data"} (see eraflow.stages.ingest.postgres_source).',
    )
    reuse: bool = Field(
        default=False,
        alias="reuse_source",
        description="Keep the parsed source files in memory for the next run in this process "
        "(a backfill's chunks: each file is parsed once, not once per chunk).",
    )
    catalogue: Path | None = Field(
        default=None,
        description="A sensor catalogue TOML whose entries override or extend "
        "the packaged one (units, valid ranges, fill limits, profiles).",
    )


class GridOptions(Section):
    """The regular grid every source is put on."""

    freq: GridStep = Field(
        default="5min", description="Grid step, a fixed duration such as '5min' or '1h'."
    )
    max_span: Duration = Field(
        default="7305D",
        alias="max_grid_span",
        description="Longest grid a run may build for one entity (default 20 years): a "
        "longer one (a far --start/--end, a stray row) stops the run before any work.",
    )


class StoreOptions(Section):
    """Where results go, and the run report beside them."""

    path: Path = Field(
        default=DEFAULT_STORE,
        alias="store",
        description="Folder of the Parquet store (and of the reports and plots, whatever "
        "the store).",
    )
    block: str | None = Field(
        default=None,
        alias="store_block",
        description="A saved store block instead of the folder: its name, or "
        "'type/name' when two types share it (e.g. 'eraflow-postgres-store/prod').",
    )
    lock_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Parquet store: seconds a write waits for another writer's lock before "
        "it fails, naming the holder (and is retried); a PostgreSQL store block has its own.",
    )
    report: bool = Field(
        default=True,
        description="Draw the era plots and write the run report (a backfill's chunks leave "
        "it to the backfill, which reports once, at its end).",
    )


class EraOptions(Section):
    """How each entity's history is cut into eras (levels A ⊃ B ⊃ C)."""

    segment: bool = Field(
        default=True,
        description="Re-segment each entity's eras after writing the grid (a backfill's "
        "chunks leave it to the backfill, which segments the whole history once, at its end).",
    )
    method: Literal["pelt", "bocpd"] = Field(
        default=EraConfig().method,
        alias="era_method",
        description="How the finest eras (level C) are found: exact PELT or "
        "Bayesian online changepoint detection.",
    )
    model: Literal["normal", "l2"] = Field(
        default=EraConfig().model,
        alias="era_model",
        description="Segment cost: 'normal' (changes in mean and covariance) or 'l2' "
        "(changes in mean only; about twice as fast, e.g. for exact PELT at the grid "
        "resolution with era_detect_step null).",
    )
    signals: list[str] | None = Field(
        default=None,
        alias="era_signals",
        description="Sensors to segment on, jointly. Default: air temperature, "
        "CO2, humidity, light and pipe temperature, where present.",
    )
    detect_step: OptionalEraSpan = Field(
        default=str(EraConfig().detect_step),
        alias="era_detect_step",
        description="Level C is searched on means over blocks of this span (fast, hourly "
        "boundaries); null: on every grid row, exact PELT at the grid resolution (about 2 s "
        "for a 5-minute year; raise level C's penalty_scale, e.g. to 4, for as many eras).",
    )
    levels: EraLevelsSettings = Field(
        default_factory=EraLevelsSettings,
        alias="era_levels",
        description="Penalty and shortest era of each level (A, B, C).",
    )
    gaps: EraGapSettings = Field(
        default_factory=EraGapSettings,
        alias="era_gaps",
        description="Stretches where the era signals are mostly missing become eras of their "
        "own (kind 'gap'): no boundary inside, never merged with data, no features.",
    )
    penalty_rule: PenaltyRule = Field(
        default="set",
        alias="era_penalty_rule",
        description="Which penalty each level is segmented with: 'set' (era_levels), or "
        "'elbow': per entity, the point of its penalty path (0.125x to 8x the set one) where "
        "raising the penalty stops removing many eras; stored in table era_penalties. Costs "
        "about 20 segmentations per entity.",
    )
    penalty_path: bool = Field(
        default=False,
        alias="era_penalty_path",
        description="Also publish, per entity, the eras of each level against its penalty "
        "(0.125x to 8x the set one) with the elbow and the applied penalty marked: a picture "
        "to choose penalties by; costs about 20 segmentations.",
    )
    horizon: OptionalDuration = Field(
        default=None,
        alias="era_horizon",
        description="How far before the run's start eras may be re-segmented, "
        "e.g. '90D'. Default: the entity's whole stored history.",
    )

    def detector(self) -> EraConfig:
        """The era detector's settings."""
        return EraConfig(
            method=self.method,
            model=self.model,
            signals=tuple(self.signals) if self.signals else None,
            level_a=self.levels.level_a.level_config(),
            level_b=self.levels.level_b.level_config(),
            level_c=self.levels.level_c.level_config(),
            detect_step=self.detect_step,
            gap_min_duration=self.gaps.min_duration,
            gap_max_coverage=self.gaps.max_coverage,
        )


class FeatureOptions(Section):
    """Which features are computed per era, and where."""

    compute: bool = Field(
        default=True,
        alias="features",
        description="Compute the features of the eras that are due (a backfill's chunks "
        "leave it to the backfill, which computes each final era once, at its end).",
    )
    profile: Literal["minimal", "efficient", "comprehensive", "seeds"] = Field(
        default="efficient",
        alias="features_profile",
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
    values: Literal["measured", "grid"] = Field(
        default="measured",
        alias="feature_values",
        description="What features are computed over: 'measured' (each sensor's own "
        "readings at its own rate, no gap-filled value: an hourly sensor on a 10-min grid "
        "gives its hourly values) or 'grid' (every grid row, gap-filled values included).",
    )
    device: Device = Field(
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


class SelectionOptions(Section):
    """Which features are kept per level over a scope, and why."""

    run: bool = Field(
        default=True,
        alias="select",
        description="Select features at the end of the run (a backfill's chunks "
        "leave it to the backfill, which selects once).",
    )
    levels: list[Level] = Field(
        default_factory=lambda: list[Level](["A", "B", "C"]),
        alias="selection_levels",
        description="Era levels to select features for.",
    )
    scope: str | None = Field(
        default=None,
        alias="selection_scope",
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
        description="False discovery rate of the relevance tests; also the significance "
        "that sets how many eras the correlation filter needs.",
    )
    hypotheses_independent: bool = Field(
        default=False,
        description="FDR procedure of the relevance tests: Benjamini-Hochberg (true: the "
        "features' tests are independent) or Benjamini-Yekutieli (false, tsfresh's default: "
        "valid under any dependence, as between features of one sensor).",
    )


_PLANNER = PlannerSettings()


class OrchestrationOptions(Section):
    """Where era batches run: this process or the work pools, on which task runner."""

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
        default=_PLANNER.cpu_workers,
        ge=1,
        description="CPU worker groups the planner packs batches for.",
    )
    gpu_workers: int = Field(
        default=_PLANNER.gpu_workers,
        ge=0,
        description="GPU worker groups (one per GPU) the planner packs for.",
    )
    gpu_pool: bool = Field(
        default=False, description="With dispatch 'pools': a gpu-pool worker exists."
    )
    gpu_min_cost: float = Field(
        default=_PLANNER.gpu_min_cost,
        ge=0.0,
        description="Planner: batches cheaper than this stay on the CPU "
        "(cost = rows x sensor profile weights).",
    )
    max_batch_cost: float | None = Field(
        default=_PLANNER.max_batch_cost,
        gt=0.0,
        description="Planner: batches costlier than this are split between eras.",
    )
    child_timeout: Duration = Field(
        default="6h",
        description="With dispatch 'pools' (and deployed backfills): a child "
        "run not finished after this long is marked Crashed and fails its parent.",
    )
    lost_worker_after: Duration = Field(
        default="120s",
        description="A child run waiting this long with no live worker in its "
        "pool (a worker died), or Running this long without a heartbeat (its host was "
        "lost), is marked Crashed: run again on a live worker of the pool, else it "
        "fails its parent.",
    )
    deployment: str = Field(
        default="era-features",
        description="With dispatch 'pools': the flow name of the era-features deployments.",
    )

    def seconds(self, name: Literal["child_timeout", "lost_worker_after"]) -> float:
        """A duration setting in seconds."""
        return seconds(getattr(self, name))


class BackfillSettings(BaseModel):
    """How a backfill cuts its range into chunks and where the chunks run.

    Declared once: the ``eraflow backfill`` options and the backfill flow's parameters (so its
    deployment's form in the UI) come from these fields.
    """

    model_config = ConfigDict(extra="forbid")

    chunk: Duration = Field(
        default="7D",
        description="Chunk length, a duration such as '7D' or '1D'; chunks are aligned to "
        "the start, so a re-run replaces the same ranges.",
    )
    max_concurrent: int = Field(
        default=2, ge=1, description="With chunk_deployment: chunk runs at a time."
    )
    chunk_deployment: DeploymentName = Field(
        default=None,
        description="Run each chunk as a run of this deployment, e.g. "
        "'feature-pipeline/manual' on a server (the chunks then spread over its workers); "
        "default: one chunk after the other, in the backfill's own process.",
    )
