"""A picture of the eras for a grower: the signals stacked, era boundaries drawn per level."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from eraflow.stages.eras.exceptions import UnknownSignalError

__all__ = ["LEVEL_STYLE", "plot_eras", "save_figure"]

#: Line style per level (colour, width, alpha): coarse boundaries thick and dark, fine ones
#: thin and light.
LEVEL_STYLE: dict[str, tuple[str, float, float]] = {
    "A": ("#b2182b", 2.4, 0.95),
    "B": ("#ef8a62", 1.1, 0.8),
    "C": ("#969696", 0.4, 0.6),
}


def plot_eras(
    values: pd.DataFrame,
    eras: pd.DataFrame,
    *,
    signals: Sequence[str] | None = None,
    path: str | Path,
    title: str | None = None,
    plot_step: str | None = "1h",
    units: Mapping[str, str] | None = None,
) -> Path:
    """Save a PNG with one panel per signal and the era boundaries of every level.

    Parameters
    ----------
    values : DataFrame
        The grid the eras were detected on (UTC ``DatetimeIndex``).
    eras : DataFrame
        The eras table of one entity (:func:`eraflow.stages.eras.detect_eras`).
    signals : sequence of str, optional
        Columns to draw; default: the ``signals`` recorded in the eras table.
    path : str or Path
        Where to write the PNG (parent folders are created).
    title : str, optional
        Figure title; default: the entity and era counts per level.
    plot_step : str, optional
        Signals are drawn as means over this span (a year of 5-minute points is too dense to
        read); ``None`` draws every row.
    units : mapping, optional
        Unit per signal for the axis labels (e.g. from the sensor catalogue).

    Returns
    -------
    Path
        The PNG written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if signals is None:
        recorded = eras["signals"].iloc[0] if len(eras) else ""
        signals = [s for s in str(recorded).split(",") if s]
    missing = [s for s in signals if s not in values.columns]
    if missing:
        raise UnknownSignalError(f"cannot plot {missing}: not columns of the values frame")
    frame = values[list(signals)]
    if plot_step is not None and len(frame) > 2000:
        frame = frame.resample(plot_step).mean()
    n_panels = max(1, len(signals))
    fig, axes = plt.subplots(
        n_panels, 1, sharex=True, figsize=(14, 1.8 * n_panels + 1.2), squeeze=False
    )
    levels = [lv for lv in ("C", "B", "A") if lv in set(eras["level"])]
    for ax, name in zip(axes[:, 0], signals, strict=False):
        ax.plot(frame.index, frame[name], lw=0.6, color="#2166ac")
        unit = (units or {}).get(name, "")
        ax.set_ylabel(
            f"{name}\n[{unit}]" if unit else name, rotation=0, ha="right", va="center", fontsize=8
        )
        ax.tick_params(labelsize=7)
        if "kind" in eras.columns:  # gap eras: shaded, no data to describe
            gaps = eras[(eras["kind"] == "gap") & (eras["level"] == "A")]
            for start, end in zip(gaps["start"], gaps["end"], strict=True):
                ax.axvspan(start, end, color="#bdbdbd", alpha=0.45, lw=0, zorder=1)
        for lv in levels:
            colour, width, alpha = LEVEL_STYLE[lv]
            of_level = eras.loc[eras["level"] == lv, "start"]
            starts = of_level[of_level > of_level.min()]  # boundaries: not the first start
            # one collection per level: thousands of axvline calls take seconds
            ax.vlines(
                list(starts),
                0,
                1,
                transform=ax.get_xaxis_transform(),
                colors=colour,
                lw=width,
                alpha=alpha,
                zorder=3 if lv == "A" else 2,
            )
    counts = {lv: int((eras["level"] == lv).sum()) for lv in ("A", "B", "C")}
    entity = str(eras["entity"].iloc[0]) if len(eras) else ""
    measured = values[list(signals)].dropna(how="all").index
    span = (
        f"data {measured.min():%Y-%m-%d %H:%M} .. {measured.max():%Y-%m-%d %H:%M} UTC"
        if len(measured)
        else "no data"
    )
    head = title or (f"{entity}: eras A={counts['A']}, B={counts['B']}, C={counts['C']} ({span})")
    axes[-1, 0].set_xlabel("time (UTC)", fontsize=8)
    fig.suptitle(head, fontsize=10)
    handles: list[Artist] = [
        Line2D([0], [0], color=LEVEL_STYLE[lv][0], lw=LEVEL_STYLE[lv][1], label=f"level {lv}")
        for lv in ("A", "B", "C")
    ]
    if "kind" in eras.columns and (eras["kind"] == "gap").any():
        handles.append(Patch(color="#bdbdbd", alpha=0.45, label="gap (no data)"))
    axes[0, 0].legend(handles=handles, loc="upper right", fontsize=7, ncol=3, framealpha=0.8)
    return save_figure(fig, path, dpi=110)


def save_figure(fig: Figure, path: str | Path, *, dpi: int) -> Path:
    """Lay out, write as PNG (parent folders created) and close ``fig``; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
