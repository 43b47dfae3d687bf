"""Greenhouse features per era: light integral, degree days, DIF, VPD, CO2 dose, heating, lamps.

Quantities no feature library has, for growers: each is declared here once (its sensor, its
name, its unit), and the same declarations drive the computation, the feature names and the
documentation (README "Greenhouse features").

Time and missing values
-----------------------
Integrals use real time: a valid row counts ``step`` hours. A value is valid when it is
measured or gap-filled (NaN rows are left out), and an era total is scaled by the era's valid
share: ``total = mean over valid rows x era rows x step`` (missing rows are assumed to be like
the valid ones). ``valid_share`` (valid rows / era rows) and ``measured_share`` (rows whose
inputs are all measured, not filled) are stored with each signal, so a user can tell an
integral over a well-measured era from an extrapolated one.

Days
----
Days are calendar days of the catalogue's ``day_timezone`` (UTC by default). Per era:

- ``daily_<q>__stat_"mean"``: the era's mean daily value, ``total / era days`` (for a mean
  quantity, the mean over valid rows); over whole days it is the mean of the daily values;
- ``daily_<q>__stat_"min"`` / ``"max"``: over the era's whole days (the day lies inside the
  era and at least ``min_day_coverage`` of its rows are valid), each scaled to its full day
  like a total; NaN when the era holds no whole day (eras shorter than a day, say). With
  partial days at its ends, an era's mean may lie outside its whole days' range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from eraflow.catalogue import GreenhouseConstants
from eraflow.common.errors import ConfigError, DataError
from eraflow.common.literals import read_literal
from eraflow.stages.features import FEATURE_COLUMNS, FeatureSpec, infer_step
from eraflow.stages.features.engine import to_utc_ns, validate_inputs
from eraflow.stages.greenhouse.signals import (
    HOURS_PER_DAY,
    J_PER_MJ,
    LAMP_SENSORS,
    PIPE_CIRCUITS,
    SECONDS_PER_HOUR,
    UMOL_PER_MOL,
    DerivedSignals,
    derived_signals,
)

GREENHOUSE_ENGINE = "greenhouse"
"""The ``engine`` value of greenhouse feature rows (written by the engine stage)."""
GREENHOUSE_VERSION = "greenhouse-1"
"""Bumped when a formula changes; with the constants, it makes the engine stage's hash."""
STATS = ("mean", "min", "max")


@dataclass(frozen=True)
class DailyQuantity:
    """A row signal summarised per era: an era total and/or per-day values.

    Attributes
    ----------
    sensor
        The feature rows' ``sensor`` (the signal, derived or measured).
    signal
        Key of the row signal (see :func:`row_signals`): the sensor itself, or an indicator.
    total, daily
        Calculator names of the era total and of the per-day values (None: not computed).
    how
        ``"integral"``: time integral (``per_hour`` converts signal unit x h to ``unit``);
        ``"mean"``: time mean (a daily mean temperature).
    unit
        Unit of the total (the per-day values: ``unit`` per day); of the mean for ``"mean"``.
    """

    sensor: str
    signal: str
    total: str | None
    daily: str | None
    how: Literal["integral", "mean"]
    per_hour: float
    unit: str
    formula: str


@dataclass(frozen=True)
class GreenhouseFeature:
    """One greenhouse feature: its sensor, reversible name, unit and formula (for the docs)."""

    sensor: str
    spec: FeatureSpec
    unit: str
    formula: str

    @property
    def name(self) -> str:
        """The stored ``feature`` (tsfresh style, ``<calculator>__<param>_<value>``)."""
        return self.spec.name

    @property
    def column(self) -> str:
        """The wide matrix column, ``<sensor>__<feature>``."""
        return f"{self.sensor}__{self.spec.name}"


_PER_HOUR_MOL = SECONDS_PER_HOUR / UMOL_PER_MOL  # µmol m⁻² s⁻¹ x h -> mol m⁻²
_PER_HOUR_MJ = SECONDS_PER_HOUR / J_PER_MJ  # W m⁻² x h -> MJ m⁻²


def _quantities() -> tuple[DailyQuantity, ...]:
    q = [
        DailyQuantity(
            "par_umol_m2_s",
            "par_umol_m2_s",
            "light_integral",
            "daily_light_integral",
            "integral",
            _PER_HOUR_MOL,
            "mol/m²",
            "∫ PAR dt x 3600 s/h / 1e6 µmol/mol",
        ),
        DailyQuantity(
            "radiation_w_m2",
            "radiation_w_m2",
            "radiation_sum",
            "daily_radiation_sum",
            "integral",
            _PER_HOUR_MJ,
            "MJ/m²",
            "∫ global radiation dt x 3600 s/h / 1e6 J/MJ",
        ),
        DailyQuantity(
            "temp_above_base_c",
            "temp_above_base_c",
            "degree_days",
            "daily_degree_days",
            "integral",
            1.0 / HOURS_PER_DAY,
            "°C·d",
            "∫ max(T_air - base_temp_c, 0) dt / 24 h/d",
        ),
        DailyQuantity(
            "air_temp_c",
            "air_temp_c",
            None,
            "daily_mean_temperature",
            "mean",
            1.0,
            "°C",
            "time mean of T_air (24-h mean per day)",
        ),
        DailyQuantity(
            "vpd_kpa",
            "vpd_below_band",
            "hours_below_band",
            None,
            "integral",
            1.0,
            "h",
            "∫ [VPD < vpd_band_kpa[0]] dt",
        ),
        DailyQuantity(
            "vpd_kpa",
            "vpd_above_band",
            "hours_above_band",
            None,
            "integral",
            1.0,
            "h",
            "∫ [VPD > vpd_band_kpa[1]] dt",
        ),
        DailyQuantity(
            "vpd_kpa",
            "vpd_outside_band",
            None,
            "daily_hours_outside_band",
            "integral",
            1.0,
            "h",
            "∫ [VPD outside vpd_band_kpa] dt",
        ),
        DailyQuantity(
            "co2_above_ambient_ppm",
            "co2_above_ambient_ppm",
            "co2_dose",
            "daily_co2_dose",
            "integral",
            1.0,
            "ppm·h",
            "∫ max(CO2 - co2_ambient_ppm, 0) dt",
        ),
        DailyQuantity(
            "co2_above_ambient_ppm",
            "co2_enriched",
            "enrichment_hours",
            "daily_enrichment_hours",
            "integral",
            1.0,
            "h",
            "∫ [CO2 > co2_ambient_ppm] dt",
        ),
    ]
    for k in PIPE_CIRCUITS:
        sensor = f"pipe_{k}_minus_air_c"
        q.append(
            DailyQuantity(
                sensor,
                f"pipe_{k}_above_air",
                "heating_degree_hours",
                "daily_heating_degree_hours",
                "integral",
                1.0,
                "°C·h",
                f"∫ max(T_pipe{k} - T_air, 0) dt",
            )
        )
    for lamp in LAMP_SENSORS:
        q.append(
            DailyQuantity(
                lamp,
                f"{lamp}_on",
                "lamp_hours",
                "daily_lamp_hours",
                "integral",
                1.0,
                "h",
                f"∫ [{lamp} on] dt",
            )
        )
    q.append(
        DailyQuantity(
            "lamp_cost_eur_m2_h",
            "lamp_cost_eur_m2_h",
            "energy_cost",
            "daily_energy_cost",
            "integral",
            1.0,
            "EUR/m²",
            "∫ lamp_status x lamp_power_w_m2 x price / 1e6 dt",
        )
    )
    return tuple(q)


QUANTITIES: tuple[DailyQuantity, ...] = _quantities()
ROW_STATS: tuple[tuple[str, str, str, str], ...] = (("vpd_kpa", "vpd_kpa", "vpd", "kPa"),)
"""(sensor, signal, calculator, unit): mean, min and max over the era's valid rows."""
DIF_SENSOR = "air_temp_c"
DIF_NAMES = ("day_mean_temperature", "night_mean_temperature", "day_night_difference")


def _declared() -> tuple[GreenhouseFeature, ...]:
    """Every greenhouse feature, in output order (sensor by sensor)."""
    found: dict[str, list[GreenhouseFeature]] = {}

    def add(sensor: str, spec: FeatureSpec, unit: str, formula: str) -> None:
        found.setdefault(sensor, []).append(GreenhouseFeature(sensor, spec, unit, formula))

    for q in QUANTITIES:
        if q.total is not None:
            add(q.sensor, FeatureSpec(q.total), q.unit, q.formula)
        if q.daily is not None:
            unit = q.unit if q.how == "mean" else f"{q.unit}/d"
            for stat in STATS:
                add(q.sensor, FeatureSpec(q.daily, {"stat": stat}), unit, q.formula + ", per day")
    for sensor, _signal, calc, unit in ROW_STATS:
        for stat in STATS:
            add(sensor, FeatureSpec(calc, {"stat": stat}), unit, f"{stat} over valid rows")
    dif = {
        "day_mean_temperature": "mean T_air over day rows",
        "night_mean_temperature": "mean T_air over night rows",
        "day_night_difference": "DIF = day mean - night mean of T_air",
    }
    for name in DIF_NAMES:
        add(DIF_SENSOR, FeatureSpec(name), "°C", dif[name])
    for sensor in list(found):
        add(sensor, FeatureSpec("valid_share"), "1", "valid rows / era rows")
        add(sensor, FeatureSpec("measured_share"), "1", "rows with measured inputs / era rows")
    return tuple(f for features in found.values() for f in features)


GREENHOUSE_FEATURES: tuple[GreenhouseFeature, ...] = _declared()
"""Every greenhouse feature the family can compute (an entity gets those its grid allows)."""
_BY_NAME = {f.name: f.spec for f in GREENHOUSE_FEATURES}
GREENHOUSE_CALCULATORS: frozenset[str] = frozenset(f.spec.calculator for f in GREENHOUSE_FEATURES)


def parse_greenhouse_name(name: str) -> FeatureSpec:
    """Parse a greenhouse feature name back into its :class:`FeatureSpec`.

    The inverse of ``spec.name``, by the engine's grammar: ``<calculator>__<param>_<value>``,
    values read as Python literals (strings quoted).

    Raises
    ------
    ConfigError
        When the calculator is not a greenhouse one or the name is not a declared feature.
    """
    calc, *parts = str(name).split("__")
    if calc not in GREENHOUSE_CALCULATORS:
        known = ", ".join(sorted(GREENHOUSE_CALCULATORS))
        raise ConfigError(f"unknown greenhouse calculator {calc!r}; known: {known}")
    params = {}
    for part in parts:
        key, sep, raw = part.rpartition("_")
        try:
            params[key] = read_literal(raw) if sep else None
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(f"cannot read parameter {part!r} of feature name {name!r}") from exc
    spec = FeatureSpec(calc, params)
    if spec.name != name or name not in _BY_NAME:
        raise ConfigError(f"{name!r} is not a greenhouse feature")
    return spec


def definition_digest(constants: GreenhouseConstants) -> str:
    """A digest of what defines the family: version, constants and feature names.

    Part of the engine stage's settings hash, so a changed constant or formula recomputes.
    """
    payload = "\n".join(
        [GREENHOUSE_VERSION, constants.model_dump_json(), *(f.column for f in GREENHOUSE_FEATURES)]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---- computation ---------------------------------------------------------------------------
def row_signals(
    derived: DerivedSignals, values: pd.DataFrame, c: GreenhouseConstants
) -> dict[str, np.ndarray]:
    """The row signals the quantities integrate: derived signals, inputs and indicators.

    An indicator is 1.0 or 0.0 where its signal is valid, NaN where it is not.
    """
    frame = derived.frame
    out = {str(k): frame[k].to_numpy(dtype=np.float64) for k in frame.columns}

    def indicator(source: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(source), np.nan, mask.astype(np.float64))

    live = {str(c) for c in values.columns if values[c].notna().any()}
    for name in ("radiation_w_m2", "air_temp_c"):
        if name in live:
            out[name] = values[name].to_numpy(dtype=np.float64)
    if "vpd_kpa" in out:
        vpd = out["vpd_kpa"]
        low, high = c.vpd_band_kpa
        out["vpd_below_band"] = indicator(vpd, vpd < low)
        out["vpd_above_band"] = indicator(vpd, vpd > high)
        out["vpd_outside_band"] = indicator(vpd, (vpd < low) | (vpd > high))
    if "co2_above_ambient_ppm" in out:
        co2 = out["co2_above_ambient_ppm"]
        out["co2_enriched"] = indicator(co2, co2 > 0)
    for k in PIPE_CIRCUITS:
        diff = out.get(f"pipe_{k}_minus_air_c")
        if diff is not None:
            out[f"pipe_{k}_above_air"] = np.where(np.isnan(diff), np.nan, np.fmax(diff, 0.0))
    for lamp in LAMP_SENSORS:
        if lamp in live:
            status = values[lamp].to_numpy(dtype=np.float64)
            out[lamp] = status
            out[f"{lamp}_on"] = indicator(status, status > 0.5)
    return out


@dataclass(frozen=True)
class _Layout:
    """Era and day boundaries as grid row indices, shared by every signal of a call."""

    r0: np.ndarray  # first row of each era
    r1: np.ndarray  # one past its last row
    day_r0: np.ndarray  # first row of each day
    day_r1: np.ndarray
    day_rows: np.ndarray  # rows a whole day has (its length / step)
    day_lo: np.ndarray  # each era's first whole day
    day_hi: np.ndarray  # one past its last whole day
    step_h: float

    @property
    def rows(self) -> np.ndarray:
        return self.r1 - self.r0


def _day_bounds(t: np.ndarray, step_ns: int, tz: str) -> np.ndarray:
    """UTC ns of the local midnights from the grid's first day to past its last row."""
    if not len(t):
        return np.zeros(1, dtype=np.int64)
    first = pd.Timestamp(int(t[0]), tz="UTC").tz_convert(tz).normalize()
    last = pd.Timestamp(int(t[-1]) + step_ns, tz="UTC").tz_convert(tz).normalize()
    midnights = pd.date_range(first, last + pd.Timedelta(days=1), freq="D")
    return np.asarray(midnights.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)


def _layout(
    index: pd.DatetimeIndex, starts: np.ndarray, ends: np.ndarray, step: pd.Timedelta, tz: str
) -> _Layout:
    t = index.as_unit("ns").asi8
    r0 = np.searchsorted(t, starts, side="left")
    r1 = np.maximum(np.searchsorted(t, ends, side="left"), r0)
    step_ns = int(step.value)
    bounds = _day_bounds(t, step_ns, tz)
    rb = np.searchsorted(t, bounds, side="left")
    lengths = np.diff(bounds)
    whole_rows = np.where(lengths % step_ns == 0, lengths // step_ns, -1)
    day_rows = np.where(np.diff(rb) == whole_rows, whole_rows, 0)  # 0: not a whole grid day
    day_lo = np.searchsorted(bounds, starts, side="left")
    day_hi = np.maximum(np.searchsorted(bounds, ends, side="right") - 1, day_lo)
    return _Layout(
        r0=r0,
        r1=r1,
        day_r0=rb[:-1],
        day_r1=rb[1:],
        day_rows=day_rows,
        day_lo=day_lo,
        day_hi=day_hi,
        step_h=step / pd.Timedelta(hours=1),
    )


def _prefix(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums of the valid values and of the valid count (length n + 1)."""
    valid = ~np.isnan(x)
    total = np.concatenate([[0.0], np.cumsum(np.where(valid, x, 0.0))])
    count = np.concatenate([[0], np.cumsum(valid)])
    return total, count


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.full(np.shape(a), np.nan), where=b > 0)


def _range_reduce(func: np.ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``func`` (fmin / fmax: NaN-ignoring) over ``x[lo:hi]`` per range; NaN for empty ones."""
    out = np.full(len(lo), np.nan)
    ok = hi > lo
    if ok.any() and len(x):
        padded = np.append(x, np.nan)
        idx = np.stack([lo[ok], hi[ok]], axis=1).reshape(-1)
        out[ok] = func.reduceat(padded, idx)[::2]
    return out


def _daily(
    x: np.ndarray, layout: _Layout, how: str, per_hour: float, min_cov: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(era mean daily value, min and max over whole days) of one row signal."""
    total, count = _prefix(x)
    era_mean = _ratio(total[layout.r1] - total[layout.r0], count[layout.r1] - count[layout.r0])
    day_n = count[layout.day_r1] - count[layout.day_r0]
    day_mean = _ratio(total[layout.day_r1] - total[layout.day_r0], day_n)
    whole = (layout.day_rows > 0) & (day_n >= min_cov * layout.day_rows)
    if how == "integral":
        mean = era_mean * HOURS_PER_DAY * per_hour
        day_value = day_mean * layout.day_rows * layout.step_h * per_hour
    else:
        mean, day_value = era_mean, day_mean
    day_value = np.where(whole, day_value, np.nan)
    low = _range_reduce(np.fmin, day_value, layout.day_lo, layout.day_hi)
    high = _range_reduce(np.fmax, day_value, layout.day_lo, layout.day_hi)
    return mean, low, high


def _era_mean(x: np.ndarray, layout: _Layout) -> np.ndarray:
    total, count = _prefix(x)
    return _ratio(total[layout.r1] - total[layout.r0], count[layout.r1] - count[layout.r0])


def _valid_rows(x: np.ndarray, layout: _Layout) -> np.ndarray:
    count = np.concatenate([[0], np.cumsum(~np.isnan(x))])
    return count[layout.r1] - count[layout.r0]


def _compute(
    signals: dict[str, np.ndarray],
    derived: DerivedSignals,
    fill_mask: pd.DataFrame | None,
    layout: _Layout,
    c: GreenhouseConstants,
) -> dict[tuple[str, str], np.ndarray]:
    """(sensor, feature) → one value per era, for the features whose signals exist."""
    out: dict[tuple[str, str], np.ndarray] = {}
    rows = layout.rows.astype(np.float64)
    for q in QUANTITIES:
        x = signals.get(q.signal)
        if x is None:
            continue
        if q.total is not None:
            out[(q.sensor, q.total)] = _era_mean(x, layout) * rows * layout.step_h * q.per_hour
        if q.daily is not None:
            mean, low, high = _daily(x, layout, q.how, q.per_hour, c.min_day_coverage)
            for stat, v in zip(STATS, (mean, low, high), strict=True):
                out[(q.sensor, FeatureSpec(q.daily, {"stat": stat}).name)] = v
    for sensor, signal, calc, _unit in ROW_STATS:
        x = signals.get(signal)
        if x is None:
            continue
        stats = (
            _era_mean(x, layout),
            _range_reduce(np.fmin, x, layout.r0, layout.r1),
            _range_reduce(np.fmax, x, layout.r0, layout.r1),
        )
        for stat, v in zip(STATS, stats, strict=True):
            out[(sensor, FeatureSpec(calc, {"stat": stat}).name)] = v
    temp = signals.get(DIF_SENSOR)
    if temp is not None and derived.day is not None and derived.night is not None:
        day = _era_mean(np.where(derived.day, temp, np.nan), layout)
        night = _era_mean(np.where(derived.night, temp, np.nan), layout)
        for name, v in zip(DIF_NAMES, (day, night, day - night), strict=True):
            out[(DIF_SENSOR, name)] = v
    for sensor in dict.fromkeys(s for s, _ in out):
        x = signals[sensor]
        valid = _valid_rows(x, layout)
        out[(sensor, "valid_share")] = _ratio(valid, rows)
        used = derived.inputs.get(sensor, (sensor,))
        measured = ~np.isnan(x)
        if fill_mask is not None:
            for column in used:
                if column in fill_mask.columns:
                    measured &= ~fill_mask[column].to_numpy(dtype=bool)
        count = np.concatenate([[0], np.cumsum(measured)])
        out[(sensor, "measured_share")] = _ratio(count[layout.r1] - count[layout.r0], rows)
    empty = layout.rows == 0
    return {k: np.where(empty, np.nan, v) for k, v in out.items()}


def greenhouse_features(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    eras: pd.DataFrame,
    *,
    entity: str,
    constants: GreenhouseConstants,
    step: str | pd.Timedelta | None = None,
) -> pd.DataFrame:
    """The greenhouse family for every era of ``eras``: rows of the long feature table.

    Parameters
    ----------
    values
        One entity's grid (UTC, regular), as for :func:`eraflow.stages.features.compute_features`;
        gap-filled values count as valid.
    fill_mask
        True where gap-fill produced the value (for ``measured_share``); None: all measured.
    eras
        Columns ``level``, ``era_id``, ``start``, ``end`` (half-open, UTC); an ``entity``
        column, when present, is filtered to ``entity``.
    entity
        Entity key written to the rows.
    constants
        The catalogue's greenhouse constants (``load_catalogue(...).greenhouse``).
    step
        Grid step; inferred from the index when omitted.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`~eraflow.stages.features.FEATURE_COLUMNS`, ``engine`` "greenhouse";
        only the features whose inputs are live columns of ``values``; era by era, then in
        :data:`GREENHOUSE_FEATURES` order.
    """
    validate_inputs(values, fill_mask, eras)
    step_td = _step(values.index, step)
    eras_e = eras
    if "entity" in eras.columns:
        eras_e = eras[eras["entity"].astype(str) == str(entity)]
    eras_e = eras_e.reset_index(drop=True)
    derived = derived_signals(values, constants)
    signals = row_signals(derived, values, constants)
    layout = _layout(
        values.index,
        to_utc_ns(eras_e["start"]),
        to_utc_ns(eras_e["end"]),
        step_td,
        constants.day_timezone,
    )
    computed = _compute(signals, derived, fill_mask, layout, constants)
    chosen = [f for f in GREENHOUSE_FEATURES if (f.sensor, f.name) in computed]
    matrix = (
        np.column_stack([computed[(f.sensor, f.name)] for f in chosen])
        if chosen
        else np.zeros((len(eras_e), 0))
    )
    return _long(entity, eras_e, chosen, matrix)


def _step(index: pd.DatetimeIndex, step: str | pd.Timedelta | None) -> pd.Timedelta:
    inferred = infer_step(index)
    if step is None:
        if inferred is None:
            raise DataError("the grid has fewer than two rows: give its step")
        return inferred
    given = pd.Timedelta(step)
    if inferred is not None and given != inferred:
        raise DataError(f"step={step!r} does not match the index step {inferred}")
    if given <= pd.Timedelta(0):
        raise DataError(f"step={step!r} must be a positive duration")
    return given


def _long(
    entity: str, eras: pd.DataFrame, chosen: list[GreenhouseFeature], matrix: np.ndarray
) -> pd.DataFrame:
    """Era-major long rows with categorical labels, like the engine's output."""
    nera, nfeat = matrix.shape[0], len(chosen)
    n = nera * nfeat
    sensors = list(dict.fromkeys(f.sensor for f in chosen))
    names = list(dict.fromkeys(f.name for f in chosen))
    sensor_codes = np.array([sensors.index(f.sensor) for f in chosen], dtype=np.int32)
    name_codes = np.array([names.index(f.name) for f in chosen], dtype=np.int32)
    levels, level_codes = np.unique(eras["level"].astype(str).to_numpy(), return_inverse=True)

    def constant(value: str) -> pd.Categorical:
        return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])

    frame = pd.DataFrame(
        {
            "entity": constant(str(entity)),
            "level": pd.Categorical.from_codes(
                np.repeat(level_codes.astype(np.int8), nfeat), categories=list(levels)
            ),
            "era_id": np.repeat(eras["era_id"].to_numpy(dtype=np.int64), nfeat),
            "sensor": pd.Categorical.from_codes(np.tile(sensor_codes, nera), categories=sensors),
            "feature": pd.Categorical.from_codes(np.tile(name_codes, nera), categories=names),
            "value": matrix.reshape(-1).astype(np.float64),
            "engine": constant(GREENHOUSE_ENGINE),
        }
    )
    return frame[list(FEATURE_COLUMNS)]


def daily_values(
    values: pd.DataFrame,
    constants: GreenhouseConstants,
    *,
    step: str | pd.Timedelta | None = None,
    quantities: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Per whole day of the grid: each daily quantity's value (NaN on days not whole).

    Columns ``<sensor>__<daily calculator>`` (e.g. ``par_umol_m2_s__daily_light_integral``,
    mol m⁻² d⁻¹), index ``day`` (midnight in ``day_timezone``); ``quantities`` picks columns.
    What the run report plots for a grower.
    """
    step_td = _step(values.index, step)
    derived = derived_signals(values, constants)
    signals = row_signals(derived, values, constants)
    tz = constants.day_timezone
    bounds = _day_bounds(values.index.as_unit("ns").asi8, int(step_td.value), tz)
    # each day as an era: its one whole day's value is the day's value
    layout = _layout(values.index, bounds[:-1], bounds[1:], step_td, tz)
    wanted = set(quantities) if quantities is not None else None
    columns: dict[str, np.ndarray] = {}
    for q in QUANTITIES:
        name = f"{q.sensor}__{q.daily}"
        x = signals.get(q.signal)
        if q.daily is None or x is None or (wanted is not None and name not in wanted):
            continue
        columns[name] = _daily(x, layout, q.how, q.per_hour, constants.min_day_coverage)[1]
    days = pd.DatetimeIndex(pd.to_datetime(bounds[:-1], utc=True), name="day").tz_convert(tz)
    frame = pd.DataFrame(columns, index=days)
    return frame[layout.day_rows > 0]
