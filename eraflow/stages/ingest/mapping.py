"""Declarative source mappings: how a file export becomes canonical (time, entity, sensor, value).

A mapping says everything a reader needs (format, delimiter, decimal mark, header rows, time
columns and their time zone, which column is which sensor of which entity), so a new climate
computer export is a config file, not new code.
"""

from __future__ import annotations

import codecs
import math
import re
import tomllib
from importlib import resources
from pathlib import Path, PureWindowsPath
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eraflow.common.errors import ConfigError

Ambiguous = Literal["infer", "earliest", "latest", "drop", "raise"]
Nonexistent = Literal["drop", "shift_forward", "raise"]
OnDuplicate = Literal["error", "mean", "first", "last"]
OnRagged = Literal["error", "skip"]


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

    @field_validator("scale")
    @classmethod
    def _usable_scale(cls, value: float) -> float:
        # NaN or inf would turn every value into NaN or inf, zero into a flat line of zeros.
        if not math.isfinite(value) or value == 0:
            problem = "would make every value 0" if value == 0 else "is not a finite number"
            raise ValueError(
                f"scale = {value} {problem}: give a finite, non-zero factor (1.0 keeps the values)"
            )
        return value

    @field_validator("offset")
    @classmethod
    def _finite_offset(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(
                f"offset = {value} is not a finite number: give a finite offset in the "
                "sensor's unit (0.0 keeps the values)"
            )
        return value

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
    on_ragged: OnRagged = Field(
        default="error",
        description="a row whose field count is not the header's: refuse the file, or skip it "
        "(counted in the report)",
    )

    @field_validator("files")
    @classmethod
    def _inside_root(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            outside = _leaves_root(pattern)
            if outside:
                raise ValueError(
                    f"files pattern {pattern!r} {outside}, so it may read outside the data "
                    "root: give a pattern relative to --data-root (e.g. 'exports/*.csv'), "
                    "or point --data-root at the folder that holds the files"
                )
        return patterns

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(
                f"unknown encoding {value!r}: give a Python codec name such as 'utf-8' or 'cp1252'"
            ) from exc
        return value

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


def _leaves_root(pattern: str) -> str | None:
    """Why ``pattern`` could match files outside the root it is globbed under (None: it cannot).

    Both separators count: a mapping written on Windows may be read on Linux and back.
    """
    if not pattern.strip():
        return "is empty"
    if pattern.startswith(("/", "\\", "~")) or PureWindowsPath(pattern).drive:
        return "is absolute"
    if ".." in re.split(r"[/\\]", pattern):
        return "has a '..' component"
    return None


class MappingFile(BaseModel):
    """A mapping file: one or more sources."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    sources: list[SourceMapping] = Field(min_length=1)


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    """``source 'name': field: problem`` per error: the source by name, not by its position."""
    sources = raw.get("sources") if isinstance(raw, dict) else None
    parts = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(map(str, loc))
        if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
            entry = sources[loc[1]] if isinstance(sources, list) and loc[1] < len(sources) else {}
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str):
                where = " ".join([f"source {name!r}", ".".join(map(str, loc[2:]))]).strip()
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        if error["type"] != "value_error" and isinstance(given, str | int | float):
            message += f" (got {given!r})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse_mapping(raw: dict[str, Any], origin: str = "mapping") -> MappingFile:
    """Validate a mapping given as a dict (e.g. a flow parameter)."""
    try:
        return MappingFile.model_validate(raw)
    except ValidationError as exc:
        # Not chained: the message already holds every problem, and a command line that
        # finds a ValidationError as the cause prints that instead, without the file's name.
        raise ConfigError(f"{origin} is invalid: {_describe(exc, raw)}") from None


def preset_names() -> list[str]:
    """Mapping presets shipped with eraflow (the real Danish exports)."""
    folder = resources.files("eraflow.stages.ingest").joinpath("presets")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_mapping(name_or_path: str | Path) -> MappingFile:
    """Load a preset by name (``"knudjepsen"``) or a user TOML mapping file by path."""
    path = Path(name_or_path)
    if str(name_or_path) in preset_names():
        resource = resources.files("eraflow.stages.ingest").joinpath(f"presets/{name_or_path}.toml")
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
