"""Derived greenhouse signals on the grid, computed once per call where their inputs exist.

Each signal is a column of one entity's regular UTC grid, NaN where an input is NaN (row by
row: a value is valid when every input of that row is measured or gap-filled). Constants come
from the catalogue's ``[greenhouse]`` table (:class:`~eraflow.catalogue.GreenhouseConstants`),
with their sources; only unit definitions live here.

An input "exists" when the grid has the column with at least one valid value (what the era
tasks call a live sensor); a signal without its inputs is absent, and so are its features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eraflow.catalogue import GreenhouseConstants

SECONDS_PER_HOUR = 3600.0
HOURS_PER_DAY = 24.0
UMOL_PER_MOL = 1e6
J_PER_MJ = 1e6
W_PER_MW = 1e6  # lamp W/m² x price EUR/MWh / 1e6 = EUR m⁻² h⁻¹

LAMP_SENSORS = ("lamp_status", "lamp_group_1", "lamp_group_2", "lamp_group_3", "lamp_group_4")
"""Binary lamp signals (1 on, 0 off); ``lamp_status`` is the main group (the lamp cost's)."""
PIPE_CIRCUITS = (1, 2)
"""Heating circuits ``pipe_temp_<k>_c`` whose difference to the air is a heating effort."""


def saturation_vapour_pressure_kpa(temp_c: np.ndarray, c: GreenhouseConstants) -> np.ndarray:
    """Saturation vapour pressure e°(T) = a exp(b T / (T + c)) in kPa, T in °C (FAO-56 eq. 11)."""
    return c.svp_a_kpa * np.exp(c.svp_b * temp_c / (temp_c + c.svp_c_c))


def vapour_pressure_deficit_kpa(
    temp_c: np.ndarray, rh_percent: np.ndarray, c: GreenhouseConstants
) -> np.ndarray:
    """VPD = e°(T) - e_a with e_a = e°(T) RH/100 (FAO-56 eq. 19 with one temperature), kPa."""
    return saturation_vapour_pressure_kpa(temp_c, c) * (1.0 - rh_percent / 100.0)


@dataclass(frozen=True)
class DerivedSignals:
    """The derived signals of one grid, the grid columns each came from, and day/night rows.

    Attributes
    ----------
    frame
        One float column per derived signal present (catalogue names), the grid's index.
    inputs
        Signal name → the grid columns it was computed from (for the measured share).
    day, night
        Bool rows: day is light above the day threshold or a lamp on; night is light known
        and below it with no lamp on; rows with neither are of unknown light.
    """

    frame: pd.DataFrame
    inputs: dict[str, tuple[str, ...]]
    day: np.ndarray | None
    night: np.ndarray | None


def live_columns(values: pd.DataFrame) -> list[str]:
    """Columns of the grid with at least one valid value: the inputs that exist."""
    return [str(c) for c in values.columns if values[c].notna().any()]


def _column(values: pd.DataFrame, name: str) -> np.ndarray:
    return values[name].to_numpy(dtype=np.float64)


def derived_signals(values: pd.DataFrame, c: GreenhouseConstants) -> DerivedSignals:
    """Compute every derived signal whose inputs are live columns of ``values``.

    Measured beats derived: a grid with ``light_umol`` (PAR inside) takes it as PAR, and one
    with ``vpd_hpa`` takes it as VPD; the choice is made per call (one era batch).
    """
    live = set(live_columns(values))
    out: dict[str, np.ndarray] = {}
    inputs: dict[str, tuple[str, ...]] = {}

    def put(name: str, rows: np.ndarray, used: Sequence[str]) -> None:
        out[name] = rows
        inputs[name] = tuple(used)

    if "light_umol" in live:
        put("par_umol_m2_s", _column(values, "light_umol"), ["light_umol"])
    elif "radiation_w_m2" in live:
        par = _column(values, "radiation_w_m2") * c.par_per_radiation
        put("par_umol_m2_s", par, ["radiation_w_m2"])
    if "vpd_hpa" in live:
        put("vpd_kpa", _column(values, "vpd_hpa") / 10.0, ["vpd_hpa"])
    elif {"air_temp_c", "rh_percent"} <= live:
        vpd = vapour_pressure_deficit_kpa(
            _column(values, "air_temp_c"), _column(values, "rh_percent"), c
        )
        put("vpd_kpa", vpd, ["air_temp_c", "rh_percent"])
    if "air_temp_c" in live:
        above = _column(values, "air_temp_c") - c.base_temp_c  # fmax would make NaN 0
        put(
            "temp_above_base_c",
            np.where(np.isnan(above), np.nan, np.fmax(above, 0.0)),
            ["air_temp_c"],
        )
    if "co2_ppm" in live:
        co2 = _column(values, "co2_ppm") - c.co2_ambient_ppm
        put(
            "co2_above_ambient_ppm", np.where(np.isnan(co2), np.nan, np.fmax(co2, 0.0)), ["co2_ppm"]
        )
    for k in PIPE_CIRCUITS:
        pipe = f"pipe_temp_{k}_c"
        if {pipe, "air_temp_c"} <= live:
            diff = _column(values, pipe) - _column(values, "air_temp_c")
            put(f"pipe_{k}_minus_air_c", diff, [pipe, "air_temp_c"])
    if c.lamp_power_w_m2 is not None and {"lamp_status", "energy_price_eur_mwh"} <= live:
        cost = (
            _column(values, "lamp_status")
            * c.lamp_power_w_m2
            * _column(values, "energy_price_eur_mwh")
            / W_PER_MW
        )
        put("lamp_cost_eur_m2_h", cost, ["lamp_status", "energy_price_eur_mwh"])

    day, night = _day_and_night(values, out.get("par_umol_m2_s"), live, c)
    frame = pd.DataFrame(out, index=values.index)
    return DerivedSignals(frame=frame, inputs=inputs, day=day, night=night)


def day_par_threshold(c: GreenhouseConstants) -> float:
    """The day threshold in PAR units: ``day_radiation_w_m2`` converted like the radiation."""
    return c.day_radiation_w_m2 * c.par_per_radiation


def _day_and_night(
    values: pd.DataFrame, par: np.ndarray | None, live: set[str], c: GreenhouseConstants
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Day: PAR above the threshold or any lamp on; night: PAR known, below it, no lamp on.

    A lamp value that is NaN counts as off; a row without PAR is day only when a lamp is on.
    None without a light signal (lamps alone cannot tell night from a lamp-free day).
    """
    if par is None:
        return None, None
    lamp_on = np.zeros(len(values), dtype=bool)
    for lamp in (s for s in LAMP_SENSORS if s in live):
        lamp_on |= _column(values, lamp) > 0.5
    threshold = day_par_threshold(c)
    sunny = par > threshold
    day = sunny | lamp_on
    night = (par <= threshold) & ~lamp_on
    return day, night
