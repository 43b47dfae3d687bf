"""The calculator catalogue: importing this module registers every feature calculator.

Registration is the import side effect of each calculator module's ``@feature`` decorators;
this is the one place that triggers it (the package's ``__init__`` imports this module, so
``from eraflow.stages.features import ...`` always sees the whole registry). The registry itself
(:mod:`eraflow.stages.features.registry`) imports no calculator module.

The import order below is the registration order, hence the order of every profile's features
and of the engine's output: a contract (stored feature tables and wide matrices follow it), so
the imports are kept out of the import sorter and the test of the layering checks the order.
Append new calculator modules at the end.
"""

from __future__ import annotations

from types import ModuleType

# isort: off
from eraflow.stages.features import rolling
from eraflow.stages.features import calculators_basic
from eraflow.stages.features import calculators_tsfresh
from eraflow.stages.features import calculators_complexity
from eraflow.stages.features import calculators_models
from eraflow.stages.features import calculators_signal

# isort: on

CALCULATOR_MODULES: tuple[ModuleType, ...] = (
    rolling,
    calculators_basic,
    calculators_tsfresh,
    calculators_complexity,
    calculators_models,
    calculators_signal,
)
"""The calculator modules, in registration order."""
