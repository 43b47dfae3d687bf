"""The value types settings are made of: UTC times, durations, grid steps, era spans.

Each check lives in its type (an ``Annotated`` validator), so the nested settings tree and
the flat surfaces derived from it (the command's options, the flows' parameters) validate a
value the same way wherever it is given.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import AfterValidator, ValidationInfo

from eraflow.common.grid import grid_step
from eraflow.stages.eras.config import time_span

Level = Literal["A", "B", "C"]
Device = Literal["auto", "gpu", "cpu"]
SIMULATOR = "simulator"
POSTGRES = "postgres"
DEFAULT_STORE = Path("eraflow-store")
"""The Parquet store folder every command uses when none is given."""


def to_utc(value: datetime | str | pd.Timestamp | None) -> pd.Timestamp | None:
    """A UTC timestamp; naive input is taken as UTC (the pipeline's one clock)."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not a date or timestamp, e.g. 2015-10-01") from exc
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def positive_duration(value: str | None) -> str | None:
    """A duration pandas reads, above zero ('90D', '30s'); None passes."""
    if value is None:
        return None
    try:
        span = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not a duration like '90D' or '30s'") from exc
    if span <= pd.Timedelta(0):
        raise ValueError(f"{value!r} must be a positive duration")
    return value


def _grid_step(value: str) -> str:
    grid_step(value)
    return value


def _era_span(value: str | None, info: ValidationInfo) -> str | None:
    """The era detector's own check (its ConfigError is a ValueError: pydantic reports it)."""
    if value is not None:
        time_span(value, info.field_name or "value")
    return value


def _deployment_name(value: str | None) -> str | None:
    if value is not None and (value.count("/") != 1 or "" in value.split("/")):
        raise ValueError(f"{value!r} must read 'flow-name/deployment-name'")
    return value


UtcTime = Annotated[datetime | None, AfterValidator(to_utc)]
"""A time in the JSON schema (the UI's date picker); a UTC ``pd.Timestamp`` once validated."""
Duration = Annotated[str, AfterValidator(positive_duration)]
OptionalDuration = Annotated[str | None, AfterValidator(positive_duration)]
GridStep = Annotated[str, AfterValidator(_grid_step)]
EraSpan = Annotated[str, AfterValidator(_era_span)]
OptionalEraSpan = Annotated[str | None, AfterValidator(_era_span)]
DeploymentName = Annotated[str | None, AfterValidator(_deployment_name)]


def seconds(duration: str) -> float:
    """A duration setting in seconds."""
    return float(pd.Timedelta(duration).total_seconds())
