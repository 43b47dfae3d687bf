"""Regime labels: eras of the same kind of operation share a label, per level.

Each data era is summarised by the mean and standard deviation of every era signal (robustly
standardised over the segmented history, so units do not weigh); a Gaussian mixture
(scikit-learn, diagonal covariances, seeded) is fitted for 1 to ``max_regimes`` components,
the count with the lowest BIC wins, and labels are numbered by first appearance in time (the
first era's regime is 0). The same data give the same labels; new data can renumber them, as
the mixture is refitted over the whole history. Gap eras get no label.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from eraflow.stages.eras.levels import standardise

__all__ = ["era_summaries", "label_regimes", "regime_labels"]

#: The most regimes a level may have (BIC chooses up to this).
MAX_REGIMES = 8
_SEED = 0


def era_summaries(
    values: pd.DataFrame, eras: pd.DataFrame, signals: list[str]
) -> NDArray[np.float64]:
    """``(eras, 2 * signals)``: each era's mean and std of the standardised signals.

    Missing values are left out; a signal with no value in an era takes the column's mean
    over the other eras (0 when it has none anywhere).
    """
    z = standardise(values[signals].to_numpy(dtype=np.float64), scaling="robust")
    present = np.isfinite(z)
    zero = np.where(present, z, 0.0)
    cum = [
        np.vstack([np.zeros((1, z.shape[1])), np.cumsum(a, axis=0)])
        for a in (present.astype(np.float64), zero, zero * zero)
    ]
    times = values.index.as_unit("ns").asi8
    starts = np.searchsorted(times, pd.DatetimeIndex(eras["start"]).as_unit("ns").asi8)
    ends = np.searchsorted(times, pd.DatetimeIndex(eras["end"]).as_unit("ns").asi8)
    count, total, squares = (c[ends] - c[starts] for c in cum)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    out = np.hstack([mean, std])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nan_to_num(np.nanmean(out, axis=0), nan=0.0)
    return np.where(np.isfinite(out), out, fill)


def label_regimes(summaries: NDArray[np.float64], *, max_regimes: int = MAX_REGIMES) -> NDArray:
    """Regime per row of ``summaries`` (in time order): BIC-chosen Gaussian mixture labels."""
    from sklearn.mixture import GaussianMixture

    n = len(summaries)
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    best_bic, best = np.inf, np.zeros(n, dtype=np.int64)
    for k in range(1, min(max_regimes, n - 1) + 1):
        model = GaussianMixture(
            n_components=k,
            covariance_type="diag",
            reg_covar=1e-3,
            n_init=2,
            random_state=_SEED,
        ).fit(summaries)
        bic = model.bic(summaries)
        if bic < best_bic:
            best_bic, best = bic, model.predict(summaries)
    # number by first appearance in time: stable names whatever the mixture's order
    _, first = np.unique(best, return_index=True)
    order = np.argsort(np.argsort(first))
    renamed: NDArray[np.int64] = order[np.searchsorted(np.unique(best), best)].astype(np.int64)
    return renamed


def regime_labels(values: pd.DataFrame, eras: pd.DataFrame) -> pd.Series:
    """An ``Int64`` regime label per era of ``eras`` (NA for gap eras), per level."""
    out = pd.Series(pd.array([pd.NA] * len(eras), dtype="Int64"), index=eras.index)
    data = eras[eras["kind"] != "gap"] if "kind" in eras.columns else eras
    for _, part in data.groupby("level", sort=True):
        part = part.sort_values("start")
        named = {s for joined in part["signals"] for s in str(joined).split(",") if s}
        signals = [s for s in values.columns if s in named]
        if not signals:
            out.loc[part.index] = 0
            continue
        labels = label_regimes(era_summaries(values, part, signals))
        out.loc[part.index] = labels
    return out
