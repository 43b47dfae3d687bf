"""Which engine profile each sensor gets: the run's, raised by the sensor catalogue.

The engine computes tsfresh's whole catalogue, so a run's ``features_profile`` applies to every
sensor and level; a sensor whose catalogue entry asks for a richer tsfresh profile (say
``comprehensive`` for the air temperature) gets that one instead. ``seeds`` is a deliberately
small set and is never raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from eraflow.catalogue import Catalogue, load_catalogue
from eraflow.stages.features import compute_features

RICHNESS = ("minimal", "efficient", "comprehensive")


def engine_sensor_profiles(
    profile: str, sensors: Sequence[str], catalogue: Catalogue | None = None
) -> dict[str, str]:
    """Each sensor's engine profile: ``profile`` or its catalogue profile, the richer."""
    if profile not in RICHNESS:
        return dict.fromkeys(sensors, profile)
    cat = catalogue if catalogue is not None else load_catalogue()
    rank = RICHNESS.index
    return {s: max(profile, cat.get(s).tsfresh_profile, key=rank) for s in sensors}


def compute_profiled_features(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    eras: pd.DataFrame,
    *,
    entity: str,
    profiles: Mapping[str, str],
    **engine: Any,
) -> pd.DataFrame:
    """:func:`compute_features` once per profile, over the sensors that have it."""
    by_profile: dict[str, list[str]] = {}
    for sensor, profile in profiles.items():
        by_profile.setdefault(profile, []).append(sensor)
    parts = [
        compute_features(
            values, fill_mask, eras, entity=entity, profile=profile, sensors=sensors, **engine
        )
        for profile, sensors in by_profile.items()
    ]
    if len(parts) == 1:
        return parts[0]
    out = pd.concat(parts, ignore_index=True)
    for column, dtype in parts[0].dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):  # categories differ between the parts
            out[column] = out[column].astype("category")
    return out
