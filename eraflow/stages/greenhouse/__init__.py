"""Greenhouse features (Prefect-free): quantities no feature library has, for growers.

Derived signals on the grid (:mod:`.signals`: PAR, VPD, temperature above base, CO2 above
ambient, pipe minus air, lamp cost, day and night) and their per-era, per-day summaries
(:mod:`.features`: daily light integral, radiation sum, degree days, 24-h mean temperature,
DIF, VPD statistics and hours outside the band, CO2 dose and enrichment hours, heating degree
hours, lamp hours, lamp energy cost). Constants come from the catalogue's ``[greenhouse]``
table; rows go to the long feature table with ``engine`` "greenhouse".
"""

from eraflow.stages.greenhouse.features import (
    GREENHOUSE_CALCULATORS,
    GREENHOUSE_ENGINE,
    GREENHOUSE_FEATURES,
    GREENHOUSE_VERSION,
    QUANTITIES,
    DailyQuantity,
    GreenhouseFeature,
    daily_values,
    definition_digest,
    greenhouse_features,
    parse_greenhouse_name,
    row_signals,
)
from eraflow.stages.greenhouse.signals import (
    LAMP_SENSORS,
    DerivedSignals,
    day_par_threshold,
    derived_signals,
    saturation_vapour_pressure_kpa,
    vapour_pressure_deficit_kpa,
)

__all__ = [
    "GREENHOUSE_CALCULATORS",
    "GREENHOUSE_ENGINE",
    "GREENHOUSE_FEATURES",
    "GREENHOUSE_VERSION",
    "LAMP_SENSORS",
    "QUANTITIES",
    "DailyQuantity",
    "DerivedSignals",
    "GreenhouseFeature",
    "daily_values",
    "day_par_threshold",
    "definition_digest",
    "derived_signals",
    "greenhouse_features",
    "parse_greenhouse_name",
    "row_signals",
    "saturation_vapour_pressure_kpa",
    "vapour_pressure_deficit_kpa",
]
