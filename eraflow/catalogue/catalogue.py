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
    derived_from: tuple[str, ...] = Field(
        default=(),
        description="Sensors this signal is computed from on the grid (eraflow.stages."
        "greenhouse), the preferred first; empty for a measured sensor.",
    )
    native_interval: timedelta | None = Field(
        default=None,
        description="How often the sensor logs (e.g. '1h'); None: inferred from the source's "
        "timestamps. Features read a sensor slower than the grid at this interval.",
    )
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

    @field_validator("max_fill_gap", "spike_window", "native_interval", mode="before")
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
            fix = {
                "max_fill_gap": "like '30min' (for no filling, set fill = \"none\")",
                "spike_window": "like '3h', a few times the spikes' length",
            }.get(info.field_name or "", "like '1h', how often the sensor logs")
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

GREENHOUSE_TABLE = "greenhouse"
"""The catalogue's table of greenhouse constants (not a sensor)."""


class GreenhouseConstants(BaseModel):
    """The constants of the greenhouse features (:mod:`eraflow.stages.greenhouse`).

    No defaults here (but the optional lamp power): each value, with its source, is declared
    once in ``sensors.toml``'s ``[greenhouse]`` table; a user catalogue overrides the fields
    it names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    par_share: float = Field(
        gt=0, le=1, description="Share of global radiation energy that is PAR (400-700 nm)."
    )
    umol_per_joule: float = Field(
        gt=0, description="PAR photons per joule of PAR energy of sunlight (µmol/J)."
    )
    transmission: float = Field(
        gt=0, le=1, description="Share of outside light the greenhouse cover lets through."
    )
    base_temp_c: float = Field(description="Base temperature of the crop's degree days (°C).")
    co2_ambient_ppm: float = Field(gt=0, description="Outside (ambient) CO2 concentration (ppm).")
    vpd_band_kpa: tuple[float, float] = Field(
        description="The VPD band the climate should stay in, [low, high] (kPa)."
    )
    day_radiation_w_m2: float = Field(
        ge=0, description="Outside global radiation above which a row is day (W/m²)."
    )
    lamp_power_w_m2: float | None = Field(
        default=None,
        ge=0,
        description="Electric power of the main lamp group per m² (W/m²); unset: no lamp "
        "energy cost.",
    )
    min_day_coverage: float = Field(
        gt=0, le=1, description="Valid share of a day's rows for it to count as a whole day."
    )
    svp_a_kpa: float = Field(gt=0, description="Tetens/FAO-56 e°(T) = a exp(b T / (T + c)): a.")
    svp_b: float = Field(gt=0, description="Tetens/FAO-56 coefficient b.")
    svp_c_c: float = Field(gt=0, description="Tetens/FAO-56 coefficient c (°C).")
    day_timezone: str = Field(description="Time zone whose calendar days are the days.")

    @field_validator("vpd_band_kpa")
    @classmethod
    def _ordered_band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
            raise ValueError(
                f"vpd_band_kpa = {list(value)} must be [low, high] with 0 <= low < high (kPa)"
            )
        return value

    @field_validator("day_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            pd.Timestamp(0, tz=value)
        except Exception as exc:
            raise ValueError(
                f"day_timezone = {value!r} is not a time zone like 'Europe/Copenhagen'"
            ) from exc
        return value

    @property
    def par_per_radiation(self) -> float:
        """PAR at the crop per unit of outside global radiation (µmol m⁻² s⁻¹ per W m⁻²)."""
        return self.par_share * self.umol_per_joule * self.transmission


class Catalogue:
    """An immutable lookup of sensor specs; unknown names get a reported default."""

    def __init__(
        self, specs: Mapping[str, SensorSpec], greenhouse: GreenhouseConstants | None = None
    ) -> None:
        self._specs = dict(specs)
        self._greenhouse = greenhouse

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

    @property
    def greenhouse(self) -> GreenhouseConstants:
        """The greenhouse constants (the packaged ones when this catalogue was built without)."""
        if self._greenhouse is None:
            self._greenhouse = load_catalogue().greenhouse
        return self._greenhouse

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


def _build_greenhouse(
    raw: Any, origin: str, base: GreenhouseConstants | None = None
) -> GreenhouseConstants:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: [{GREENHOUSE_TABLE}] must be a table of constants")
    merged = (base.model_dump() if base is not None else {}) | dict(raw)
    try:
        return GreenhouseConstants.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ConfigError(f"{origin}: [{GREENHOUSE_TABLE}] is invalid: {problems}") from None


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
        raw = _read_toml(path)
    greenhouse = _build_greenhouse(raw.pop(GREENHOUSE_TABLE, {}), "packaged catalogue")
    specs = _build_specs(raw, "packaged catalogue")
    if user_file is not None:
        user_path = Path(user_file)
        user = _read_toml(user_path)
        if GREENHOUSE_TABLE in user:
            greenhouse = _build_greenhouse(user.pop(GREENHOUSE_TABLE), str(user_path), greenhouse)
        specs = _build_specs(user, str(user_path), base=specs)
    return Catalogue(specs, greenhouse)
