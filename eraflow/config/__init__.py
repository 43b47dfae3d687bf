"""A run's settings: one tree of sections, each field declared once.

The sections: source, grid, store, eras, features, selection, orchestration; each field with
its description and default.

Code reads the tree (``config.eras.method``); people and tools use the flat public names
derived from it (``--era-method``, the ``era_method`` flow parameter): see
:mod:`eraflow.config.pipeline`.
"""

from eraflow.config.pipeline import FLAT, PipelineConfig, PipelineParameters
from eraflow.config.sections import (
    BackfillSettings,
    EraGapSettings,
    EraLevelSettings,
    EraLevelsSettings,
    EraOptions,
    FeatureOptions,
    GridOptions,
    OrchestrationOptions,
    SelectionOptions,
    SimulatorSettings,
    SourceOptions,
    StoreOptions,
)
from eraflow.config.values import (
    DEFAULT_STORE,
    POSTGRES,
    SIMULATOR,
    Device,
    Level,
    UtcTime,
    positive_duration,
    seconds,
    to_utc,
)

__all__ = [
    "DEFAULT_STORE",
    "FLAT",
    "POSTGRES",
    "SIMULATOR",
    "BackfillSettings",
    "Device",
    "EraGapSettings",
    "EraLevelSettings",
    "EraLevelsSettings",
    "EraOptions",
    "FeatureOptions",
    "GridOptions",
    "Level",
    "OrchestrationOptions",
    "PipelineConfig",
    "PipelineParameters",
    "SelectionOptions",
    "SimulatorSettings",
    "SourceOptions",
    "StoreOptions",
    "UtcTime",
    "positive_duration",
    "seconds",
    "to_utc",
]
