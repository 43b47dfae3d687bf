"""Load and query the sensor catalogue (package default, overridable by a user TOML file)."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eraflow.common.errors import ConfigError

SensorKind = Literal["continuous", "binary", "categorical", "counter", "price"]
Resample = Literal["mean", "median", "max", "min", "last", "first", "sum"]
FillMethod = Literal["linear", "ffill", "none"]
Profile = Literal["minimal", "efficient", "comprehensive"]

_DEFAULT_RESAMPLE: dict[str, Resample] = {
    "continuous": "mean",
    "price": "mean",
    "binary": "max",
    "categorical": "last",
    "counter": "last",
}
_DEFAULT_FILL: dict[str, FillMethod] = {
    "continuous": "linear",
    "counter": "linear",
    "binary": "ffill",
    "categorical": "ffill",
    "price": "ffill",
}


class SensorSpec(BaseModel):
    """How one sensor is resampled, range-checked, filled and featurised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    unit: str = ""
    kind: SensorKind = "continuous"
    valid_min: float | None = None
    valid_max: float | None = None
    max_fill_gap: timedelta = Field(default=timedelta(minutes=30))
    resample: Resample | None = None
    fill: FillMethod | None = None
    tsfresh_profile: Profile = "minimal"
    gpu: bool = True
    key: bool = False
    description: str = ""
    spike_window: timedelta | None = Field(
        default=None,
        description="Hampel spike check over this centred span of grid rows (None: off).",
    )
    spike_sigmas: float = Field(
        default=5.0, description="A spike is this many robust sigmas from its window's median."
    )
    spike_min_delta: float = Field(
        default=0.0, description="A spike differs from its window's median by more."
    )

    @field_validator("max_fill_gap", "spike_window", mode="before")
    @classmethod
    def _parse_span(cls, value: Any, info: ValidationInfo) -> timedelta | None:
        # Positive: a zero fill gap reads as "fill" but fills nothing ("no filling" is
        # fill = "none"), and a zero spike window is silently widened to three rows.
        if value is None:
            return None
        try:
            span = pd.Timedelta(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{info.field_name} = {value!r} is not a duration like '30min'"
            ) from exc
        if pd.isna(span) or span <= pd.Timedelta(0):
            fix = (
                "like '30min' (for no filling, set fill = \"none\")"
                if info.field_name == "max_fill_gap"
                else "like '3h', a few times the spikes' length"
            )
            raise ValueError(f"{info.field_name} = {value!r} must be a positive duration {fix}")
        return span.to_pytimedelta()

    @field_validator("valid_min", "valid_max")
    @classmethod
    def _finite_bound(cls, value: float | None, info: ValidationInfo) -> float | None:
        # NaN compares false with everything: a NaN bound silently removes the range check.
        if value is not None and not math.isfinite(value):
            raise ValueError(
                f"{info.field_name} = {value} is not a finite number: give a number in the "
                "sensor's unit, or leave the key out for no bound"
            )
        return value

    @field_validator("spike_sigmas")
    @classmethod
    def _positive_sigmas(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"spike_sigmas = {value} must be a positive, finite number (5.0 is usual)"
            )
        return value

    @field_validator("spike_min_delta")
    @classmethod
    def _usable_delta(cls, value: float) -> float:
        # Zero is meaningful (no floor); a negative or NaN floor is a typo, inf disables spikes.
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"spike_min_delta = {value} must be a finite number >= 0, in the sensor's unit "
                "(0 for no floor)"
            )
        return value

    @model_validator(mode="after")
    def _check_range(self) -> SensorSpec:
        if (
            self.valid_min is not None
            and self.valid_max is not None
            and self.valid_min >= self.valid_max
        ):
            above = self.valid_min > self.valid_max
            raise ValueError(
                f"valid_min {self.valid_min} {'>' if above else '='} valid_max "
                f"{self.valid_max}: the valid range would be {'empty' if above else 'one value'}; "
                "make valid_min smaller than valid_max"
            )
        return self

    @property
    def resample_method(self) -> Resample:
        """The aggregation used on the grid: explicit, else the kind's default."""
        return self.resample or _DEFAULT_RESAMPLE[self.kind]

    @property
    def fill_method(self) -> FillMethod:
        """The gap-fill method: explicit, else the kind's default."""
        return self.fill or _DEFAULT_FILL[self.kind]


DEFAULT_SPEC = SensorSpec(name="<unknown>", description="not in the catalogue")


class Catalogue:
    """An immutable lookup of sensor specs; unknown names get a reported default."""

    def __init__(self, specs: Mapping[str, SensorSpec]) -> None:
        self._specs = dict(specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    @property
    def names(self) -> list[str]:
        """Catalogued sensor names, in file order."""
        return list(self._specs)

    def get(self, name: str) -> SensorSpec:
        """Spec for ``name``; a conservative continuous default when it is not catalogued."""
        spec = self._specs.get(name)
        if spec is None:
            return DEFAULT_SPEC.model_copy(update={"name": name})
        return spec

    def unknown(self, names: Iterable[str]) -> list[str]:
        """The names that the catalogue does not know (to be reported, never dropped)."""
        return sorted({n for n in names if n not in self._specs})

    def key_sensors(self) -> list[str]:
        """Sensors flagged as key climate signals."""
        return [n for n, s in self._specs.items() if s.key]

    def to_frame(self) -> pd.DataFrame:
        """The catalogue as a table (for reports)."""
        rows = [
            s.model_dump() | {"resample": s.resample_method, "fill": s.fill_method}
            for s in self._specs.values()
        ]
        return pd.DataFrame(rows)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"catalogue file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"catalogue file {path} is not valid TOML: {exc}") from exc


def _build_specs(
    raw: Mapping[str, Any], origin: str, base: Mapping[str, SensorSpec] | None = None
) -> dict[str, SensorSpec]:
    specs = dict(base or {})
    for name, fields in raw.items():
        if not isinstance(fields, Mapping):
            raise ConfigError(f"{origin}: entry [{name}] must be a table of fields")
        merged = (specs[name].model_dump() if name in specs else {}) | dict(fields)
        merged["name"] = name
        try:
            specs[name] = SensorSpec.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            # Not chained: the message holds every problem, and a command line that finds a
            # ValidationError as the cause prints that instead, without the file's name.
            raise ConfigError(f"{origin}: sensor [{name}] is invalid: {problems}") from None
    return specs


def _problem(error: Any) -> str:
    """``field: problem`` for one pydantic error; our own messages already name the field."""
    where = ".".join(map(str, error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if error["type"] != "value_error" and isinstance(given, str | int | float):
        message += f" (got {given!r})"
    return message if not where or message.startswith(f"{where} ") else f"{where}: {message}"


def load_catalogue(user_file: str | Path | None = None) -> Catalogue:
    """Load the packaged catalogue, then apply a user file on top.

    A user entry for a known sensor overrides only the fields it names; a new name adds
    a sensor. This keeps site-specific ranges (a different CO2 sensor, say) in one small file.
    """
    packaged = resources.files("eraflow.catalogue").joinpath("sensors.toml")
    with resources.as_file(packaged) as path:
        specs = _build_specs(_read_toml(path), "packaged catalogue")
    if user_file is not None:
        user_path = Path(user_file)
        specs = _build_specs(_read_toml(user_path), str(user_path), base=specs)
    return Catalogue(specs)
