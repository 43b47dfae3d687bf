"""Declarative source mappings: how a file export becomes canonical (time, entity, sensor, value).

A mapping says everything a reader needs (format, delimiter, decimal mark, header rows, time
columns and their time zone, which column is which sensor of which entity), so a new climate
computer export is a config file, not new code.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eraflow.errors import ConfigError

Ambiguous = Literal["infer", "earliest", "latest", "drop", "raise"]
Nonexistent = Literal["drop", "shift_forward", "raise"]
OnDuplicate = Literal["error", "mean", "first", "last"]


class TimeSpec(BaseModel):
    """Where the timestamps are and what clock they were written in."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str | int] = Field(min_length=1, description="joined with one space")
    format: str | None = Field(default=None, description="strptime format; None = ISO-like")
    unit: Literal["s", "ms", "us", "ns"] | None = Field(
        default=None, description="epoch unit; epoch times are UTC by definition"
    )
    timezone: str = "UTC"
    ambiguous: Ambiguous = Field(
        default="infer",
        description="repeated local hour at DST end: infer from order, pick one, drop, or raise",
    )
    nonexistent: Nonexistent = Field(
        default="raise", description="skipped local hour at DST start: drop, shift or raise"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @model_validator(mode="after")
    def _epoch_is_utc(self) -> TimeSpec:
        if self.unit is not None and self.format is not None:
            raise ValueError("give either 'unit' (epoch) or 'format' (text), not both")
        return self


class ColumnMap(BaseModel):
    """One source column (by header name and/or 0-based position) → one canonical sensor."""

    model_config = ConfigDict(extra="forbid")

    sensor: str = Field(min_length=1)
    column: str | None = None
    index: int | None = Field(default=None, ge=0)
    entity: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _addressed(self) -> ColumnMap:
        if self.column is None and self.index is None:
            raise ValueError(f"sensor {self.sensor!r}: give 'column' (header name) or 'index'")
        return self


class SourceMapping(BaseModel):
    """A source: a set of files of one layout, read into canonical long rows."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    files: list[str] = Field(min_length=1, description="glob patterns, relative to the root")
    format: Literal["csv", "parquet", "json-readings"] = "csv"
    layout: Literal["wide", "long"] = "wide"
    delimiter: str = ","
    decimal: Literal[".", ",", "either"] = Field(
        default=".", description="'either': '.' and ',' both mark decimals (no thousands marks)"
    )
    encoding: str = "utf-8"
    header_rows: int = Field(default=1, ge=0, description="rows before the data")
    name_row: int = Field(default=0, ge=0, description="which header row holds column names")
    na_values: list[str] = Field(default_factory=lambda: [""])
    entity: str | None = None
    entity_column: str | None = None
    sensor_column: str | None = Field(default=None, description="long layout: sensor name column")
    value_column: str | None = Field(default=None, description="long layout: value column")
    time: TimeSpec
    columns: list[ColumnMap] = Field(
        default_factory=list, description="empty = every non-time column as itself"
    )
    on_duplicate: OnDuplicate = "error"

    @model_validator(mode="after")
    def _consistent(self) -> SourceMapping:
        if (
            self.entity is None
            and self.entity_column is None
            and (not self.columns or not all(c.entity for c in self.columns))
        ):
            raise ValueError(
                f"source {self.name!r}: set 'entity', 'entity_column' or an entity per column"
            )
        if self.layout == "long" and (self.sensor_column is None or self.value_column is None):
            raise ValueError(
                f"source {self.name!r}: layout 'long' needs 'sensor_column' and 'value_column'"
            )
        if self.header_rows and self.name_row >= self.header_rows:
            raise ValueError(
                f"source {self.name!r}: name_row {self.name_row} must be < header_rows"
            )
        if len(self.delimiter) != 1:
            raise ValueError(f"source {self.name!r}: delimiter must be one character")
        sensors = [(c.entity, c.sensor) for c in self.columns]
        if len(set(sensors)) != len(sensors):
            raise ValueError(f"source {self.name!r}: a sensor is mapped twice for one entity")
        return self


class MappingFile(BaseModel):
    """A mapping file: one or more sources."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    sources: list[SourceMapping] = Field(min_length=1)


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def parse_mapping(raw: dict[str, Any], origin: str = "mapping") -> MappingFile:
    """Validate a mapping given as a dict (e.g. a flow parameter)."""
    try:
        return MappingFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin} is invalid: {_describe(exc)}") from exc


def preset_names() -> list[str]:
    """Mapping presets shipped with eraflow (the real Danish exports)."""
    folder = resources.files("eraflow.ingest").joinpath("presets")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_mapping(name_or_path: str | Path) -> MappingFile:
    """Load a preset by name (``"knudjepsen"``) or a user TOML mapping file by path."""
    path = Path(name_or_path)
    if str(name_or_path) in preset_names():
        resource = resources.files("eraflow.ingest").joinpath(f"presets/{name_or_path}.toml")
        text = resource.read_text(encoding="utf-8")
        origin = f"preset {name_or_path!r}"
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    else:
        raise ConfigError(
            f"mapping {name_or_path!r} is neither a preset ({', '.join(preset_names())}) "
            "nor an existing TOML file"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from exc
    return parse_mapping(raw, origin)
