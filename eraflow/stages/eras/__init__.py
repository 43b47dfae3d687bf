"""Era detection: nested changepoint segments (A ⊃ B ⊃ C) of one entity's sensor grid.

Prefect-free. Costs (:mod:`.costs`) are apart from the searches (:mod:`.pelt`, :mod:`.bocpd`);
:func:`detect_eras` composes them into the eras table; :func:`plot_eras` draws it.
"""

from eraflow.stages.eras.bocpd import BocpdResult, bocpd
from eraflow.stages.eras.config import LEVELS, BocpdSettings, EraConfig, LevelConfig
from eraflow.stages.eras.costs import BaseCost, CostL2, CostNormal, cost_factory
from eraflow.stages.eras.exceptions import (
    BadSegmentationParameters,
    SignalDataError,
    UnknownSignalError,
)
from eraflow.stages.eras.levels import (
    ERA_COLUMNS,
    EraWarning,
    default_signals,
    detect_eras,
    standardise,
)
from eraflow.stages.eras.pelt import bic_penalty, partition_candidates, pelt
from eraflow.stages.eras.plot import plot_eras

__all__ = [
    "ERA_COLUMNS",
    "LEVELS",
    "BadSegmentationParameters",
    "BaseCost",
    "BocpdResult",
    "BocpdSettings",
    "CostL2",
    "CostNormal",
    "EraConfig",
    "EraWarning",
    "LevelConfig",
    "SignalDataError",
    "UnknownSignalError",
    "bic_penalty",
    "bocpd",
    "cost_factory",
    "default_signals",
    "detect_eras",
    "partition_candidates",
    "pelt",
    "plot_eras",
    "standardise",
]
