"""Local wall-clock timestamps → UTC, with explicit DST policies.

Climate computers often write local wall-clock time. At DST start a local hour does not exist;
at DST end one repeats. Some exporters (the Knud Jepsen and MortenSDU files) even write a
regular wall-clock grid, inventing the skipped hour and losing the repeated one. Silent
guessing would shift or duplicate an hour of data, so every source declares its policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eraflow.common.errors import IngestError
from eraflow.stages.ingest.mapping import Ambiguous, Nonexistent


@dataclass(frozen=True)
class Localised:
    """UTC times (NaT where a row was dropped by policy) and what the policy dropped."""

    utc: pd.DatetimeIndex
    dropped_nonexistent: int
    dropped_ambiguous: int


def localise_to_utc(
    naive: pd.DatetimeIndex,
    *,
    timezone: str,
    ambiguous: Ambiguous,
    nonexistent: Nonexistent,
    where: str,
) -> Localised:
    """Interpret naive wall-clock times in ``timezone`` and convert them to UTC.

    Rows are kept in file order, because ``ambiguous="infer"`` reads the repeated hour's
    order to tell summer from winter time. ``where`` names the file in error messages.
    """
    if timezone == "UTC":
        return Localised(naive.tz_localize("UTC"), 0, 0)
    nonexistent_arg = {"drop": "NaT", "shift_forward": "shift_forward", "raise": "raise"}[
        nonexistent
    ]
    try:
        probe = naive.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    except Exception as exc:  # pragma: no cover - pandas raises only for bad zones
        raise IngestError(f"{where}: cannot localise times to {timezone}: {exc}") from exc
    ambiguous_mask = np.asarray(probe.isna() & ~naive.isna())
    # Tell the two NaT causes apart: a nonexistent time still fails with ambiguous=True.
    shifted = naive.tz_localize(timezone, ambiguous=np.ones(len(naive), bool), nonexistent="NaT")
    nonexistent_mask = np.asarray(shifted.isna() & ~naive.isna())
    ambiguous_mask &= ~nonexistent_mask

    if nonexistent_mask.any() and nonexistent == "raise":
        first = naive[nonexistent_mask][0]
        raise IngestError(
            f"{where}: {int(nonexistent_mask.sum())} timestamps do not exist in {timezone} "
            f"(DST start), first {first}; set time.nonexistent = 'drop' (the exporter "
            "invented them) or 'shift_forward'"
        )
    if ambiguous_mask.any() and ambiguous == "raise":
        first = naive[ambiguous_mask][0]
        raise IngestError(
            f"{where}: {int(ambiguous_mask.sum())} timestamps are ambiguous in {timezone} "
            f"(DST end), first {first}; set time.ambiguous to 'infer', 'earliest', "
            "'latest' or 'drop'"
        )

    if ambiguous == "infer":
        ambiguous_arg: str | np.ndarray = "infer"
    elif ambiguous == "earliest":
        ambiguous_arg = np.ones(len(naive), bool)
    elif ambiguous == "latest":
        ambiguous_arg = np.zeros(len(naive), bool)
    else:
        ambiguous_arg = "NaT"
    try:
        local = naive.tz_localize(timezone, ambiguous=ambiguous_arg, nonexistent=nonexistent_arg)
    except Exception as exc:
        # pandas raises AmbiguousTimeError/ValueError when the order cannot tell the hours apart.
        raise IngestError(
            f"{where}: ambiguous DST times in {timezone} cannot be inferred from their order "
            f"({exc}); the export holds the repeated hour once, so set time.ambiguous to "
            "'drop' (safe), 'earliest' or 'latest'"
        ) from exc
    dropped_ambiguous = int(ambiguous_mask.sum()) if ambiguous == "drop" else 0
    dropped_nonexistent = int(nonexistent_mask.sum()) if nonexistent == "drop" else 0
    return Localised(local.tz_convert("UTC"), dropped_nonexistent, dropped_ambiguous)
