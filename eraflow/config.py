"""Validated run configuration for the pipeline (shared by the flow, the CLI and notebooks)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eraflow.errors import ConfigError
from eraflow.grid import grid_step

SIMULATOR = "simulator"


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


class PipelineConfig(BaseModel):
    """Everything one pipeline run needs; validated before any work starts."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    source: str = Field(default=SIMULATOR,
                        description="'simulator', a mapping preset name, or a mapping TOML path")
    data_root: Path | None = Field(default=None, description="folder the mapping's globs use")
    sources: list[str] | None = Field(default=None, description="only these mapped sources")
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    freq: str = "5min"
    catalogue: Path | None = Field(default=None, description="user catalogue TOML override")
    store: Path = Path("eraflow-store")
    entities: list[str] | None = Field(default=None, description="keep only these entities")
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)

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

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"empty range: start {self.start} is not before end {self.end}")
        if self.source != SIMULATOR and self.data_root is None:
            raise ValueError(f"source {self.source!r} needs data_root (the folder of its files)")
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
