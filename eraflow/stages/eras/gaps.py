"""Gap-aware eras: a stretch where the era signals were hardly measured is an era of its own.

Gap-filling leaves long gaps open, and detection interpolates across them: PELT then splits the
straight lines it drew, and the eras found there describe no data (every feature NaN). Here the
grid is cut at the stretches where the era signals were mostly not measured; each stretch is
one era of ``kind = "gap"`` at every level (so A ⊃ B ⊃ C holds), no boundary is placed inside
it, and the measured parts between are segmented each on their own, never merged with a gap.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from eraflow.stages.eras.config import LEVELS, EraConfig
from eraflow.stages.eras.levels import ERA_COLUMNS, detect_eras, grid_step, select_signals

__all__ = ["GAP_METHOD", "detect_eras_with_gaps", "gap_stretches", "measured"]

#: The ``method`` of a gap era.
GAP_METHOD = "gap"


def measured(values: pd.DataFrame, fill_mask: pd.DataFrame, signals: list[str]) -> NDArray:
    """``(rows, signals)``: True where a signal was measured (present and not filled)."""
    present = values[signals].notna().to_numpy()
    filled = fill_mask.reindex(columns=signals, fill_value=False).to_numpy(dtype=bool)
    out: NDArray[np.bool_] = present & ~filled
    return out


def gap_stretches(
    seen: NDArray[np.bool_], *, block: int, min_rows: int, max_coverage: float
) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` where the signals were mostly not measured.

    ``seen`` is :func:`measured`. A block of ``block`` rows (the detection step, aligned on
    the first row) is covered for a signal holding at least one reading of it: sources that
    log every 10 to 60 minutes, or only on change, are measured, not missing. Blocks where
    fewer than ``max_coverage`` of the signals are covered are joined into runs, whose edges
    then move to the rows: out over neighbouring rows where fewer than ``max_coverage`` of the
    signals were read, in past rows where more were (they belong to the data beside). Runs of
    at least ``min_rows`` rows are gaps.
    """
    n, d = seen.shape
    if n == 0 or d == 0:
        return []
    blocks = math.ceil(n / block)
    padded = np.zeros((blocks * block, d), dtype=bool)
    padded[:n] = seen
    covered = padded.reshape(blocks, block, d).any(axis=1).mean(axis=1)
    low = covered < max_coverage
    read: NDArray[np.bool_] = np.asarray(seen.mean(axis=1) >= max_coverage)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], low.astype(np.int8), [0]])))
    out: list[tuple[int, int]] = []
    for first, last in zip(edges[::2], edges[1::2], strict=True):
        a, b = int(first) * block, min(int(last) * block, n)
        while a > 0 and not read[a - 1]:
            a -= 1
        while a < b and read[a]:
            a += 1
        while b < n and not read[b]:
            b += 1
        while b > a and read[b - 1]:
            b -= 1
        if out and a <= out[-1][1]:  # grown into the previous gap: one gap
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b - a >= min_rows:
            out.append((a, b))
    return out


def _one_era_table(
    entity: str,
    index: pd.DatetimeIndex,
    step: pd.Timedelta,
    a: int,
    b: int,
    signals: str,
    *,
    kind: str = GAP_METHOD,
    method: str = GAP_METHOD,
) -> pd.DataFrame:
    """Rows ``[a, b)`` as one era at every level."""
    end = index[b] if b < len(index) else index[-1] + step
    return pd.DataFrame(
        {
            "entity": entity,
            "level": list(LEVELS),
            "era_id": 0,
            "start": index[a],
            "end": end,
            "rows": b - a,
            "method": method,
            "signals": signals,
            "score": np.nan,
            "kind": kind,
        }
    )


def detect_eras_with_gaps(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame,
    *,
    entity: str,
    config: EraConfig,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """:func:`detect_eras`, with the gaps of the era signals as eras of their own.

    Returns the eras table (:data:`ERA_COLUMNS`) plus ``kind``: ``"data"`` or ``"gap"``
    (``method`` is ``"gap"`` too). Without a gap, the eras are exactly :func:`detect_eras`'s.
    ``config.gap_min_duration = None`` turns gap eras off.
    """
    index = values.index.tz_convert("UTC")
    signals = select_signals(values, config, notes)
    step = grid_step(index)
    gaps: list[tuple[int, int]] = []
    if config.gap_min_duration is not None:
        block = max(1, round(pd.Timedelta(config.detect_step or step) / step))
        gaps = gap_stretches(
            measured(values, fill_mask, signals),
            block=block,
            min_rows=max(1, math.ceil(pd.Timedelta(config.gap_min_duration) / step)),
            max_coverage=config.gap_max_coverage,
        )
    if not gaps:
        return detect_eras(values, entity=entity, config=config, notes=notes).assign(kind="data")
    joined = ",".join(signals)
    parts: list[pd.DataFrame] = []
    cuts = [0, *(x for gap in gaps for x in gap), len(values)]
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        if b <= a:
            continue
        if i % 2:  # odd pieces are the gaps
            parts.append(_one_era_table(entity, index, step, a, b, joined))
            continue
        piece = values.iloc[a:b]
        piece.index = pd.DatetimeIndex(piece.index, freq=step)  # a one-row piece keeps its step
        present = [s for s in signals if piece[s].notna().any()]
        if not present:  # a short all-missing stretch between gaps: one era, nothing to cut
            parts.append(
                _one_era_table(entity, index, step, a, b, joined, kind="data", method="none")
            )
            continue
        part_config = dataclasses.replace(config, signals=tuple(present))
        eras = detect_eras(piece, entity=entity, config=part_config, notes=notes)
        parts.append(eras.assign(kind="data"))
    out = pd.concat(parts, ignore_index=True).sort_values(["level", "start"], kind="stable")
    out["era_id"] = out.groupby("level").cumcount().astype(np.int64)
    return out.loc[:, [*ERA_COLUMNS, "kind"]].reset_index(drop=True)
