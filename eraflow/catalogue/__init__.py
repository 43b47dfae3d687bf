"""The sensor catalogue: what each sensor is and how every stage must treat it."""

from eraflow.catalogue.catalogue import (
    DEFAULT_SPEC,
    GREENHOUSE_TABLE,
    Catalogue,
    GreenhouseConstants,
    SensorKind,
    SensorSpec,
    load_catalogue,
)

__all__ = [
    "DEFAULT_SPEC",
    "GREENHOUSE_TABLE",
    "Catalogue",
    "GreenhouseConstants",
    "SensorKind",
    "SensorSpec",
    "load_catalogue",
]
