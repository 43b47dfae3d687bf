"""Eras per level against the penalty: the picture that helps choose a level's penalty.

Each level's ``penalty_scale`` is multiplied by a ladder of factors while the other levels
keep theirs, and the eras of that level are counted. With an exact penalised search the count
never grows with the penalty; a plateau around the chosen value says the segmentation is
stable there, a steep stretch that a small change of penalty moves many boundaries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from eraflow.eras.config import LEVELS, EraConfig
from eraflow.eras.levels import detect_eras

__all__ = ["FACTORS", "elbow", "penalty_path", "plot_penalty_path"]

#: Multiples of each level's configured penalty_scale that the path visits (1 = the choice).
FACTORS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def penalty_path(
    values: pd.DataFrame,
    *,
    entity: str,
    config: EraConfig,
    factors: Sequence[float] = FACTORS,
) -> pd.DataFrame:
    """Eras of each level when its penalty_scale is ``factor`` times the configured one.

    Returns columns ``level``, ``factor``, ``penalty_scale``, ``eras``, ``chosen`` (the
    configured value, factor 1) and ``elbow`` (the suggestion of :func:`elbow`). Level C is
    left out under BOCPD (it has no penalty), and a level with an absolute ``pen`` is left out
    (its scale is unused). Costs one segmentation per level and factor.
    """
    rows = []
    for level in LEVELS:
        base = config.level(level)
        if base.pen is not None or (level == "C" and config.method != "pelt"):
            continue
        for factor in sorted({1.0, *map(float, factors)}):
            scaled = dataclasses.replace(base, penalty_scale=base.penalty_scale * factor)
            levels = {lv: config.level(lv) for lv in LEVELS} | {level: scaled}
            varied = dataclasses.replace(
                config, level_a=levels["A"], level_b=levels["B"], level_c=levels["C"]
            )
            eras = detect_eras(values, entity=entity, config=varied, notes=[])
            rows.append(
                {
                    "level": level,
                    "factor": factor,
                    "penalty_scale": scaled.penalty_scale,
                    "eras": int((eras["level"] == level).sum()),
                    "chosen": factor == 1.0,
                }
            )
    path = pd.DataFrame(rows, columns=["level", "factor", "penalty_scale", "eras", "chosen"])
    path["elbow"] = False
    for _, part in path.groupby("level"):
        at = elbow(part["penalty_scale"].to_numpy(), part["eras"].to_numpy())
        if at is not None:
            path.loc[part.index[at], "elbow"] = True
    return path


def elbow(scales: NDArray[np.float64], eras: NDArray[np.int64]) -> int | None:
    """Index of the elbow of eras against penalty, on log-log axes (Kneedle's rule).

    Both axes are scaled to [0, 1]; the elbow is the point furthest below the chord from the
    first point to the last: where raising the penalty stops removing many eras, the start of
    the plateau. None when the count does not change (no elbow to speak of).
    """
    x, y = np.log(np.asarray(scales, dtype=float)), np.log(np.asarray(eras, dtype=float))
    if len(x) < 3 or y.max() == y.min():
        return None
    x = (x - x.min()) / (x.max() - x.min())
    y = (y - y.min()) / (y.max() - y.min())
    chord = y[0] + (y[-1] - y[0]) * (x - x[0]) / (x[-1] - x[0])
    below = chord - y
    at = int(np.argmax(below))
    return at if below[at] > 0 else None


def plot_penalty_path(path_table: pd.DataFrame, *, title: str, path: str | Path) -> Path:
    """A log-log PNG of eras against penalty_scale per level, the chosen value marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eraflow.eras.plot import LEVEL_STYLE, save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    for level, part in path_table.groupby("level", sort=True):
        colour = LEVEL_STYLE[str(level)][0]
        ax.plot(part["penalty_scale"], part["eras"], marker="o", color=colour, label=level)
        suggested = part[part["elbow"]]
        ax.scatter(
            suggested["penalty_scale"],
            suggested["eras"],
            marker="x",
            s=90,
            color=colour,
            linewidths=2,
            zorder=4,
        )
        chosen = part[part["chosen"]]
        ax.scatter(
            chosen["penalty_scale"],
            chosen["eras"],
            s=140,
            facecolors="none",
            edgecolors=colour,
            linewidths=2,
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("penalty_scale (log)")
    ax.set_ylabel("eras (log)")
    ax.set_title(title + " (circled: the configured penalty, x: the elbow)", fontsize=9)
    ax.legend(title="level", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path, dpi=100)
