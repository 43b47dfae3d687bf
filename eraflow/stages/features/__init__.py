"""Feature engine (Prefect-free): a registry of vectorised calculators over NumPy or CuPy.

Public API
----------
- :func:`compute_features`: per-entity grid + fill mask + eras -> long feature table.
- :func:`compute_segment_matrix`: flat segments + offsets -> (segment x feature) matrix.
- :func:`feature_registry`, :func:`profile_specs`, :func:`parse_feature_name`, :class:`FeatureSpec`.

Layout (imports go one way; ``tests/eraflow/test_features_imports.py`` holds it):

- leaves: ``arrays`` (array-module dispatch), ``exact`` (exact sums and the exact mean),
  ``segments`` (the batch), ``registry``;
- kernels: ``kernels`` (helpers shared by calculator modules; re-exports ``spectral`` and
  ``cwt_peaks``), importing only the leaves ``arrays``, ``exact`` and ``segments``;
- calculator modules (``calculators_*``, ``rolling``): the registry, the kernels, ``arrays``
  and ``segments``, never each other;
- ``catalog``: imports every calculator module, which registers them (imported first here);
- ``engine``: the registry, ``segments``, ``arrays``.
"""

# Registers every calculator before anything can ask the registry (see catalog's docstring).
from eraflow.common.retry import is_device_oom
from eraflow.stages.features import catalog as catalog
from eraflow.stages.features.arrays import gpu_available, select_array_module
from eraflow.stages.features.engine import (
    FEATURE_COLUMNS,
    FeatureValues,
    compute_features,
    compute_segment_matrix,
    concat_feature_rows,
    infer_step,
    to_wide,
)
from eraflow.stages.features.registry import (
    PROFILES,
    SEED_FEATURES,
    Calculator,
    FeatureSpec,
    feature,
    feature_registry,
    get_calculator,
    parse_feature_name,
    profile_specs,
    resolve_features,
)
from eraflow.stages.features.rolling import window_rows

__all__ = [
    "FEATURE_COLUMNS",
    "PROFILES",
    "SEED_FEATURES",
    "Calculator",
    "FeatureSpec",
    "FeatureValues",
    "compute_features",
    "compute_segment_matrix",
    "concat_feature_rows",
    "feature",
    "feature_registry",
    "get_calculator",
    "gpu_available",
    "infer_step",
    "is_device_oom",
    "parse_feature_name",
    "profile_specs",
    "resolve_features",
    "select_array_module",
    "to_wide",
    "window_rows",
]
