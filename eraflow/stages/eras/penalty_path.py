"""Eras per level against the penalty: the picture, and the rule, that choose a level's penalty.

Each level's ``penalty_scale`` is multiplied by a ladder of factors and the eras of that level
are counted. With an exact penalised search the count never grows with the penalty; a plateau
says the segmentation is stable there, a steep stretch that a small change of penalty moves
many boundaries. The stated rule (``"elbow"``) applies, per level, the penalty where the count
stops falling steeply (:func:`elbow`); ``"set"`` applies the configured one and only marks the
elbow as a suggestion.

Levels are visited finest first, C then B then A: a level's eras depend on the finer levels'
boundaries (B and A are optimal partitions over them) and never on the coarser ones, so each
level's path is drawn with the finer levels at the penalties already applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from eraflow.stages.eras.config import LEVELS, EraConfig

__all__ = [
    "FACTORS",
    "PLATEAU_DROP",
    "PenaltyChoice",
    "PenaltyRule",
    "applied_penalty",
    "choose_penalties",
    "configured_penalties",
    "elbow",
    "path_levels",
    "plot_penalty_path",
    "with_factors",
]

#: Multiples of each level's configured penalty_scale that the path visits (1 = the set one).
FACTORS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

#: Largest share of eras the next, larger penalty on the ladder may remove at a plateau's start.
PLATEAU_DROP = 0.25

#: How a level's penalty is chosen: the configured one, or the elbow of its penalty path.
PenaltyRule = Literal["set", "elbow"]

#: Segments one entity's grid with the given settings (the eras table, optionally with kind).
Segmenter = Callable[[EraConfig], pd.DataFrame]

PATH_COLUMNS = ["level", "factor", "penalty_scale", "eras", "applied", "elbow"]


@dataclasses.dataclass(frozen=True)
class PenaltyChoice:
    """The penalties applied and the path they were chosen from.

    Attributes
    ----------
    config
        The era settings with each level's applied ``penalty_scale``.
    path
        Columns ``level``, ``factor``, ``penalty_scale``, ``eras`` (eras of kind data),
        ``applied`` (the applied factor) and ``elbow`` (the elbow's factor). Empty when no
        path was drawn; a level with an absolute ``pen``, and level C under BOCPD, have none.
    factors
        ``{level: applied factor}`` of every level with a path.
    """

    config: EraConfig
    path: pd.DataFrame
    factors: dict[str, float]


def _with_scale(config: EraConfig, level: str, scale: float) -> EraConfig:
    levels = {lv: config.level(lv) for lv in LEVELS}
    levels[level] = dataclasses.replace(levels[level], penalty_scale=scale)
    return dataclasses.replace(
        config, level_a=levels["A"], level_b=levels["B"], level_c=levels["C"]
    )


def _data_eras(eras: pd.DataFrame, level: str) -> int:
    mine = eras["level"] == level
    if "kind" in eras.columns:
        mine &= eras["kind"] != "gap"
    return int(mine.sum())


def path_levels(config: EraConfig) -> list[str]:
    """Levels with a penalty path, finest first: none with an absolute ``pen``, nor BOCPD's C."""
    return [
        level
        for level in ("C", "B", "A")
        if config.level(level).pen is None and (level != "C" or config.method == "pelt")
    ]


def applied_penalty(config: EraConfig, level: str) -> tuple[float, float]:
    """``(penalty_scale, pen)`` a level is segmented with; NaN where it does not apply."""
    settings = config.level(level)
    scale = settings.penalty_scale if level in path_levels(config) else np.nan
    return scale, np.nan if settings.pen is None else settings.pen


def with_factors(config: EraConfig, factors: dict[str, float]) -> PenaltyChoice:
    """Each level's configured ``penalty_scale`` times its factor, without drawing the path."""
    applied = config
    for level, factor in factors.items():
        applied = _with_scale(applied, level, config.level(level).penalty_scale * factor)
    return PenaltyChoice(
        config=applied, path=pd.DataFrame(columns=PATH_COLUMNS), factors=dict(factors)
    )


def configured_penalties(config: EraConfig) -> PenaltyChoice:
    """Rule ``"set"`` without drawing the path: every level at its configured penalty."""
    return with_factors(config, dict.fromkeys(path_levels(config), 1.0))


def choose_penalties(
    segment: Segmenter,
    config: EraConfig,
    *,
    rule: PenaltyRule = "set",
    factors: Sequence[float] = FACTORS,
) -> PenaltyChoice:
    """Draw each level's penalty path (finest first) and apply ``rule`` to it.

    ``segment(settings)`` returns the eras of the entity's grid under ``settings``. Costs one
    segmentation per level and factor (about 21 with the default ladder).
    """
    applied = config
    rows: list[dict[str, object]] = []
    chosen: dict[str, float] = {}
    ladder = sorted({1.0, *map(float, factors)})
    for level in path_levels(config):
        base = config.level(level)
        scales = np.array([base.penalty_scale * f for f in ladder])
        counts = np.array(
            [_data_eras(segment(_with_scale(applied, level, s)), level) for s in scales]
        )
        at = elbow(scales, counts)
        pick = ladder[at] if rule == "elbow" and at is not None else 1.0
        chosen[level] = pick
        applied = _with_scale(applied, level, base.penalty_scale * pick)
        rows.extend(
            {
                "level": level,
                "factor": factor,
                "penalty_scale": scale,
                "eras": int(count),
                "applied": factor == pick,
                "elbow": i == at,
            }
            for i, (factor, scale, count) in enumerate(zip(ladder, scales, counts, strict=True))
        )
    path = pd.DataFrame(rows, columns=PATH_COLUMNS)
    path = path.sort_values(["level", "factor"], kind="stable").reset_index(drop=True)
    return PenaltyChoice(config=applied, path=path, factors=chosen)


def elbow(scales: NDArray[np.float64], eras: NDArray[np.int64]) -> int | None:
    """Index of the start of the plateau of eras against penalty: the stated rule.

    Kneedle on log-log axes first: both axes scaled to [0, 1], the knee is the point furthest
    below the chord from the first point to the last, where raising the penalty stops removing
    eras as fast. Then the plateau is checked: from the knee, the first point whose next one
    on the ladder (twice the penalty on the default ladder) keeps at least
    ``1 - PLATEAU_DROP`` of its eras (a stable segmentation).
    None when the count never changes, or no such point comes before the ladder ends (the
    count is still falling fast: no plateau in the range visited).
    """
    with np.errstate(divide="ignore"):  # a level without eras: log 0 = -inf, a flat path
        x, y = np.log(np.asarray(scales, dtype=float)), np.log(np.asarray(eras, dtype=float))
    if len(x) < 3 or y.max() == y.min():
        return None
    xs = (x - x.min()) / (x.max() - x.min())
    ys = (y - y.min()) / (y.max() - y.min())
    chord = ys[0] + (ys[-1] - ys[0]) * (xs - xs[0]) / (xs[-1] - xs[0])
    below = chord - ys
    knee = int(np.argmax(below))
    if below[knee] <= 0:
        return None
    counts = np.asarray(eras, dtype=float)
    for at in range(knee, len(counts) - 1):
        if counts[at + 1] >= (1.0 - PLATEAU_DROP) * counts[at]:
            return at
    return None


def plot_penalty_path(path_table: pd.DataFrame, *, title: str, path: str | Path) -> Path:
    """A log-log PNG of eras against penalty_scale per level, the applied value marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eraflow.stages.eras.plot import LEVEL_STYLE, save_figure

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
        chosen = part[part["applied"]]
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
    ax.set_title(title + " (circled: the applied penalty, x: the elbow)", fontsize=9)
    ax.legend(title="level", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path, dpi=100)
