"""A deterministic greenhouse simulator: the embedded default's data, with known regimes.

Physically plausible, not a climate model: diurnal radiation and outside temperature, a
heating controller driving pipe temperature toward a setpoint, lamp schedules, CO2 dosing in
light hours, humidity that falls as temperature rises, noise, short and long outages, and
operating-regime changes at known times (returned, so era detection can be tested).
Three sources write at different rates, so aggregation has a real column-wise merge to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eraflow.common.errors import ConfigError


@dataclass(frozen=True)
class Regime:
    """One operating regime: controller settings that hold from ``start_day`` on."""

    start_day: float
    level: str
    heating_setpoint_c: float
    lamp_hours: tuple[int, int] | None
    co2_setpoint_ppm: float
    description: str


@dataclass
class SimulatedGreenhouse:
    """Canonical long rows per source, and the true regime changes."""

    sources: dict[str, pd.DataFrame]
    regime_changes: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp


def default_regimes(days: int) -> list[Regime]:
    """Regimes at fixed fractions of the period: two big (level A) and two medium (B)."""
    return [
        Regime(0.0, "A", 18.0, None, 600.0, "autumn: low heating, no lamps"),
        Regime(days * 0.25, "B", 19.5, None, 600.0, "heating setpoint +1.5 °C"),
        Regime(days * 0.5, "A", 21.0, (4, 20), 1000.0, "winter: lamps 04-20 h, CO2 1000 ppm"),
        Regime(days * 0.75, "B", 21.0, (4, 20), 800.0, "CO2 setpoint lowered to 800 ppm"),
    ]


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    shocks = rng.normal(0.0, sigma, n)
    out = np.empty(n)
    # Start in the stationary distribution, so the first days show no warm-up transient.
    acc = rng.normal(0.0, sigma / np.sqrt(1.0 - phi * phi))
    for i in range(n):  # n <= a few 100k: fine, and keeps the process exact
        acc = phi * acc + shocks[i]
        out[i] = acc
    return out


def _long(
    times: pd.DatetimeIndex, entity: str, columns: dict[str, np.ndarray], source: str
) -> pd.DataFrame:
    frames = []
    for sensor, values in columns.items():
        present = ~np.isnan(values)
        frames.append(
            pd.DataFrame(
                {
                    "time": times[present],
                    "entity": entity,
                    "sensor": sensor,
                    "value": values[present],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    frame["source"] = source
    return frame.astype({"entity": "string", "sensor": "string", "source": "string"})


def _actuators(rng: np.random.Generator, s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The extra sensors of ``full``, derived from the compartment's state (5-min samples)."""
    n = s["air"].size
    air, rh = s["air"], s["rh"]
    saturation = 5.018 + 0.32321 * air + 8.1847e-3 * air**2 + 3.1243e-4 * air**3  # g/m3
    vent = np.clip((air - s["setpoint"] - 2.0) * 20.0, 0.0, 100.0)
    light = (s["radiation"] > 60) | (s["lamps"] > 0)
    heat = np.maximum(s["pipe"] - air, 0.0) * 0.01
    return {
        "humidity_deficit_g_m3": saturation * (1.0 - rh / 100.0),
        "vpd_hpa": 6.1078 * np.exp(17.27 * air / (air + 237.3)) * (1.0 - rh / 100.0),
        "pipe_temp_2_c": 0.8 * s["pipe"] + 5.0 + rng.normal(0.0, 0.3, n),
        "heating_setpoint_c": s["setpoint"].astype(float),
        "co2_setpoint_ppm": s["co2_target"].astype(float),
        "co2_dosing": (light & (s["co2"] < s["co2_target"])).astype(float),
        "curtain_1_percent": np.where((s["radiation"] == 0) & (s["outside"] < 5.0), 100.0, 0.0),
        "curtain_2_percent": np.where(s["radiation"] > 350.0, 60.0, 0.0),
        "vent_lee_percent": vent,
        "vent_wind_percent": 0.5 * vent,
        "lamp_group_1": s["lamps"].astype(float),
        "lamp_group_2": np.roll(s["lamps"], 12).astype(float),
        "light_umol": np.maximum(
            2.1 * s["radiation"] + 180.0 * s["lamps"] + rng.normal(0, 2, n), 0
        ),
        "heat_energy_kwh": np.cumsum(heat),
    }


def _knock_out(
    rng: np.random.Generator,
    n: int,
    *,
    short_gaps: int,
    max_short: int,
    long_gaps: int,
    long_len: int,
) -> np.ndarray:
    missing = np.zeros(n, dtype=bool)
    for _ in range(short_gaps):
        at = int(rng.integers(0, n - max_short))
        missing[at : at + int(rng.integers(1, max_short + 1))] = True
    for _ in range(long_gaps):
        at = int(rng.integers(n // 10, n - long_len))
        missing[at : at + long_len] = True
    return missing


def simulate(
    *,
    start: str | pd.Timestamp = "2024-01-01",
    days: int = 42,
    entities: Sequence[str] = ("sim_a", "sim_b"),
    seed: int = 7,
    raw_step: str = "1min",
    regimes: Sequence[Regime] | None = None,
    full: bool = False,
) -> SimulatedGreenhouse:
    """Simulate ``days`` of raw data for each compartment; same seed, same data.

    Sources: ``sim_climate`` (every ``raw_step``: air temperature, RH, CO2, radiation,
    outside temperature, pipe temperature), ``sim_lamps`` (every 5 min: lamp status) and
    ``sim_market`` (hourly energy price, shared by all compartments). Compartment ``k``
    follows the same regimes shifted by ``k`` days, so entities really differ. With ``full``,
    a fourth source ``sim_actuators`` (every 5 min) adds 14 more catalogue sensors derived
    from the same state (humidity deficit, VPD, second pipe, setpoints, CO2 dosing, curtains,
    vents, lamp groups, PAR, a heat-energy counter): 22 sensors per compartment.
    """
    if days < 2:
        raise ConfigError(f"simulate: days must be >= 2, got {days}")
    if not entities:
        raise ConfigError("simulate: give at least one entity name")
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tz is None else t0.tz_convert("UTC")
    end = t0 + pd.Timedelta(days=days)
    times = pd.date_range(t0, end, freq=raw_step, inclusive="left", name="time")
    n = len(times)
    rng = np.random.default_rng(seed)
    day_frac = (times.hour + times.minute / 60.0) / 24.0
    elapsed_days = np.asarray((times - t0) / pd.Timedelta(days=1))

    # Weather, shared by every compartment.
    daylight = np.clip(np.sin(np.pi * (np.asarray(day_frac) - 0.3) / 0.4), 0.0, None)
    daylight[(np.asarray(day_frac) < 0.3) | (np.asarray(day_frac) > 0.7)] = 0.0
    clouds = np.clip(0.7 + _ar1(rng, n, 0.999, 0.01), 0.1, 1.0)
    radiation = 450.0 * daylight * clouds
    outside = (
        4.0
        + 5.0 * np.sin(2 * np.pi * (np.asarray(day_frac) - 0.35))
        + _ar1(rng, n, 0.999, 0.03)
        - 0.05 * elapsed_days
    )

    sources: dict[str, list[pd.DataFrame]] = {"sim_climate": [], "sim_lamps": []}
    changes = []
    plan = list(regimes) if regimes is not None else default_regimes(days)
    for k, entity in enumerate(entities):
        shift = float(k)
        starts = np.array([r.start_day + (shift if r.start_day > 0 else 0.0) for r in plan])
        index = np.searchsorted(starts, elapsed_days, side="right") - 1
        setpoint = np.array([r.heating_setpoint_c for r in plan])[index]
        co2_target = np.array([r.co2_setpoint_ppm for r in plan])[index]
        hour = np.asarray(times.hour)
        lamps = np.zeros(n)
        for i, regime in enumerate(plan):
            if regime.lamp_hours is not None:
                on, off = regime.lamp_hours
                lamps[(index == i) & (hour >= on) & (hour < off)] = 1.0
        night = (daylight == 0) & (lamps == 0)
        target = setpoint - 1.5 * night
        air = target + 0.012 * radiation + 0.8 * lamps + _ar1(rng, n, 0.98, 0.05)
        pipe = np.clip(35.0 + 2.2 * (target - outside) - 0.03 * radiation, 20.0, 75.0)
        pipe = pipe + rng.normal(0.0, 0.4, n)
        light = (radiation > 60) | (lamps > 0)
        co2 = np.where(light, co2_target, 430.0) + _ar1(rng, n, 0.99, 6.0)
        rh = np.clip(88.0 - 1.6 * (air - 16.0) + _ar1(rng, n, 0.995, 0.2), 30.0, 99.5)
        climate = {
            "air_temp_c": air,
            "rh_percent": rh,
            "co2_ppm": co2,
            "radiation_w_m2": radiation,
            "outside_temp_c": outside,
            "pipe_temp_1_c": pipe,
        }
        step = pd.Timedelta(raw_step)
        missing = _knock_out(
            rng,
            n,
            short_gaps=max(days // 2, 1),
            max_short=max(int(pd.Timedelta("20min") / step), 1),
            long_gaps=1,
            long_len=int(pd.Timedelta("6h") / step),
        )
        for sensor in climate:
            climate[sensor] = np.where(missing, np.nan, climate[sensor])
        climate["co2_ppm"][rng.random(n) < 0.0005] = 0.0  # sensor dropouts: out of range
        sources["sim_climate"].append(_long(times, entity, climate, "sim_climate"))

        lamp_times = times[:: max(int(pd.Timedelta("5min") / step), 1)]
        lamp_values = lamps[:: max(int(pd.Timedelta("5min") / step), 1)].copy()
        lamp_values[
            _knock_out(rng, lamp_values.size, short_gaps=3, max_short=2, long_gaps=0, long_len=0)
        ] = np.nan
        sources["sim_lamps"].append(
            _long(lamp_times, entity, {"lamp_status": lamp_values}, "sim_lamps")
        )
        if full:
            every = max(int(pd.Timedelta("5min") / step), 1)
            state = {
                "air": air,
                "rh": rh,
                "radiation": radiation,
                "outside": outside,
                "pipe": pipe,
                "lamps": lamps,
                "setpoint": setpoint,
                "co2_target": co2_target,
                "co2": co2,
            }
            extra = _actuators(rng, {k: v[::every] for k, v in state.items()})
            for sensor in extra:
                extra[sensor] = np.where(missing[::every], np.nan, extra[sensor])
            sources.setdefault("sim_actuators", []).append(
                _long(times[::every], entity, extra, "sim_actuators")
            )
        for regime, day in zip(plan[1:], starts[1:], strict=True):
            changes.append(
                {
                    "entity": entity,
                    "time": t0 + pd.Timedelta(days=float(day)),
                    "level": regime.level,
                    "description": regime.description,
                }
            )

    hours = pd.date_range(t0, end, freq="1h", inclusive="left", name="time")
    price = (
        60.0
        + 25.0 * np.sin(2 * np.pi * (np.asarray(hours.hour) - 6) / 24)
        + rng.normal(0, 8.0, len(hours))
    )
    market = [
        _long(hours, entity, {"energy_price_eur_mwh": price}, "sim_market") for entity in entities
    ]
    frames = {name: pd.concat(parts, ignore_index=True) for name, parts in sources.items()}
    frames["sim_market"] = pd.concat(market, ignore_index=True)
    for frame in frames.values():
        frame["time"] = frame["time"].astype("datetime64[us, UTC]")
    return SimulatedGreenhouse(
        sources=frames,
        regime_changes=pd.DataFrame(changes, columns=["entity", "time", "level", "description"])
        .sort_values(["entity", "time"])
        .reset_index(drop=True),
        start=t0,
        end=end,
    )
