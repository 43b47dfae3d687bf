"""Missing values of an era x feature matrix: one stated policy, fitted on some eras, applied.

A stored matrix has gaps: a feature is NaN on an era where a sensor had no value, ``inf``
where a ratio divides by zero. A model (PCA, KMeans, most of scikit-learn) takes none of
them, so the matrix a modeller reads comes out under one of these policies:

- ``keep``: as stored (NaN and ``inf`` stay);
- ``drop``: features missing on more than ``max_missing`` of the eras are dropped (default 0:
  every feature with a gap, so the rest is complete);
- ``median``: features missing on more than ``max_missing`` (default 0.5) of the eras are
  dropped, every other gap takes the feature's median over the fitted eras;
- ``neighbours``: the same drop, then every gap is interpolated linearly between the same
  entity's previous and next era that have a value (in time order; at either end the nearest
  one); a feature with no value in an entity falls back to its median.

A cell is missing when it is not finite (NaN, ``+inf``, ``-inf``). Features without any finite
value are dropped under every policy but ``keep``. With ``mask``, each kept feature that had a
gap gets a ``<feature>__missing`` column (1.0 where the value was imputed, else 0.0), so a
model can learn from where data was missing.

Why fitted: in a cross-validation the medians and the dropped features must come from the
training eras only (:class:`FittedMissing`), as scikit-learn's imputers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd

from eraflow.common.errors import ConfigError

MissingPolicy = Literal["keep", "drop", "median", "neighbours"]
MISSING_POLICIES: tuple[str, ...] = get_args(MissingPolicy)
MASK_SUFFIX = "__missing"


@dataclass(frozen=True)
class MissingValues:
    """How a matrix's missing values are handled (see the module docstring).

    Parameters
    ----------
    policy
        ``keep``, ``drop``, ``median`` or ``neighbours``.
    max_missing
        Largest share of eras a kept feature may miss, in [0, 1]; None: 0 for ``drop``, 0.5
        for the imputing policies.
    mask
        Add a ``<feature>__missing`` column per imputed feature.
    """

    policy: MissingPolicy = "median"
    max_missing: float | None = None
    mask: bool = False

    def __post_init__(self) -> None:
        if self.policy not in MISSING_POLICIES:
            raise ConfigError(f"missing policy {self.policy!r}: choose one of {MISSING_POLICIES}")
        if self.max_missing is not None and not 0.0 <= self.max_missing <= 1.0:
            raise ConfigError(f"max_missing must be a share in [0, 1], got {self.max_missing}")
        if self.mask and self.policy in ("keep", "drop"):
            raise ConfigError(
                f"mask columns mark imputed values: use them with median or neighbours, "
                f"not {self.policy}"
            )

    @property
    def share(self) -> float:
        """The largest missing share a kept feature may have."""
        if self.max_missing is not None:
            return self.max_missing
        return 0.0 if self.policy == "drop" else 0.5

    def describe(self) -> str:
        """One line for a command's output."""
        if self.policy == "keep":
            return "missing values kept"
        how = {"drop": "", "median": ", gaps -> median", "neighbours": ", gaps -> neighbours"}
        return f"features missing on > {self.share:.0%} of eras dropped{how[self.policy]}"


DEFAULT_MISSING = MissingValues()


@dataclass(frozen=True)
class FittedMissing:
    """A policy fitted on some eras: the kept features, their medians, the masked ones."""

    options: MissingValues
    columns: list[str]
    medians: pd.Series = field(repr=False)
    masked: list[str]

    def feature_names(self) -> list[str]:
        """The output columns: the kept features, then their mask columns."""
        return [*self.columns, *(f"{c}{MASK_SUFFIX}" for c in self.masked)]


def fit_missing(matrix: pd.DataFrame, options: MissingValues) -> FittedMissing:
    """Which features ``options`` keeps on these eras, and the medians that fill their gaps."""
    values = matrix.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if options.policy == "keep":
        columns = list(matrix.columns)
        return FittedMissing(options, columns, pd.Series(np.nan, index=columns), [])
    present = finite.sum(axis=0)
    share = 1.0 - present / max(len(values), 1)
    keep = (present > 0) & (share <= options.share + 1e-12)
    columns = [c for c, k in zip(matrix.columns, keep, strict=True) if k]
    kept = values[:, keep]
    with np.errstate(all="ignore"):
        medians = np.nanmedian(np.where(finite[:, keep], kept, np.nan), axis=0)
    masked = (
        [c for c, gaps in zip(columns, (~finite[:, keep]).any(axis=0), strict=True) if gaps]
        if options.mask
        else []
    )
    return FittedMissing(options, columns, pd.Series(medians, index=columns), masked)


def apply_missing(matrix: pd.DataFrame, fitted: FittedMissing) -> pd.DataFrame:
    """``matrix`` under a fitted policy: the kept features, gaps filled, mask columns added.

    ``matrix`` must hold the fitted features (other columns are ignored); its rows may be
    other eras than the fitted ones. For ``neighbours`` the rows are each entity's eras in
    time order: pass every era (then select rows), so each gap has its real neighbours.
    """
    absent = [c for c in fitted.columns if c not in matrix.columns]
    if absent:
        raise ConfigError(
            f"{len(absent)} fitted features are not in the matrix (e.g. {absent[0]!r}): "
            "fit and transform on the same scope and level"
        )
    frame = matrix[fitted.columns]
    policy = fitted.options.policy
    if policy in ("keep", "drop"):
        return frame.copy()
    values = frame.to_numpy(dtype=np.float64, copy=True)
    gaps = ~np.isfinite(values)
    values[gaps] = np.nan
    if policy == "neighbours":
        values = _between_neighbours(values, _entity_runs(frame.index))
    still = np.isnan(values)
    values[still] = np.broadcast_to(fitted.medians.to_numpy(), values.shape)[still]
    out = pd.DataFrame(values, index=frame.index, columns=fitted.columns)
    if fitted.masked:
        where = [fitted.columns.index(c) for c in fitted.masked]
        mask = pd.DataFrame(
            gaps[:, where].astype(np.float64),
            index=frame.index,
            columns=[f"{c}{MASK_SUFFIX}" for c in fitted.masked],
        )
        out = pd.concat([out, mask], axis=1)
    return out


def handle_missing(matrix: pd.DataFrame, options: MissingValues) -> pd.DataFrame:
    """Fit ``options`` on ``matrix``'s own eras and apply it: what a stored matrix's reader gets."""
    return apply_missing(matrix, fit_missing(matrix, options))


def _entity_runs(index: pd.Index) -> list[np.ndarray]:
    """Row positions of each entity's eras, in era order (era_id is the start in minutes)."""
    if isinstance(index, pd.MultiIndex) and "entity" in index.names:
        entity = index.get_level_values("entity").astype(str).to_numpy()
        order = index.get_level_values("era_id").to_numpy() if "era_id" in index.names else None
    else:
        entity, order = np.zeros(len(index), dtype=object), None
    runs = []
    for name in pd.unique(entity):
        rows = np.flatnonzero(entity == name)
        if order is not None:
            rows = rows[np.argsort(order[rows], kind="stable")]
        runs.append(rows)
    return runs


def _between_neighbours(values: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """Linear interpolation over era position within each run; ends take the nearest value."""
    for rows in runs:
        part = values[rows]
        position = np.arange(len(rows), dtype=np.float64)
        for j in np.flatnonzero(np.isnan(part).any(axis=0)):
            column = part[:, j]
            have = ~np.isnan(column)
            if have.any():
                column[~have] = np.interp(position[~have], position[have], column[have])
        values[rows] = part
    return values
