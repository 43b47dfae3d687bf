"""A scikit-learn transformer from eras to their stored features, for Pipelines and CV.

In the spirit of tsfresh's ``FeatureAugmenter``: the features are computed by a run and
stored; the transformer maps an era table (rows naming ``entity``, ``level``, ``era_id``) to
the rows of the stored matrix of a scope and level, so the features sit in a
``Pipeline`` with a model and a cross-validation::

    model = make_pipeline(EraFeatures(store, "kj_no3+kj_no4", "C"), KMeans(4))
    model.fit(read_era_times(store, "kj_no3+kj_no4", "C"))

The missing-value policy is *fitted* on the training eras only (which features are kept,
their medians), so a cross-validation's test folds never inform their own imputation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from eraflow.common.errors import DataError
from eraflow.runs.scope import MATRIX_KEY, read_feature_matrix
from eraflow.stages.matrix import (
    DEFAULT_MISSING,
    FittedMissing,
    MissingValues,
    apply_missing,
    fit_missing,
)
from eraflow.store.base import ResultStore
from eraflow.store.parquet import ParquetStore

KEEP = MissingValues("keep")


class EraFeatures(TransformerMixin, BaseEstimator):
    """Eras → their stored feature rows, under a missing-value policy fitted on ``fit``'s eras.

    Parameters
    ----------
    store
        An open store, or a Parquet store folder.
    scope, level
        Which stored matrix (``eraflow show`` names the scopes).
    missing
        The missing-value policy (:class:`eraflow.stages.matrix.MissingValues`).
    """

    def __init__(
        self,
        store: ResultStore | str | Path,
        scope: str,
        level: str,
        missing: MissingValues = DEFAULT_MISSING,
    ) -> None:
        self.store = store
        self.scope = scope
        self.level = level
        self.missing = missing

    def fit(self, X: pd.DataFrame, y: Any = None) -> EraFeatures:
        """Fit the missing-value policy on the eras of ``X``."""
        self.fitted_: FittedMissing = fit_missing(self._rows(X, self._stored()), self.missing)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The feature rows of the eras of ``X`` (in ``X``'s order), gaps handled as fitted."""
        if not hasattr(self, "fitted_"):
            raise DataError("EraFeatures: call fit (or fit_transform) before transform")
        stored = self._stored()
        if self.missing.policy == "neighbours":  # gaps take their neighbours among all eras
            return self._rows(X, apply_missing(stored, self.fitted_))
        return apply_missing(self._rows(X, stored), self.fitted_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output columns: kept features, then mask columns."""
        return np.asarray(self.fitted_.feature_names(), dtype=object)

    def _stored(self) -> pd.DataFrame:
        """The scope's level matrix as stored, read once per transformer."""
        cached: pd.DataFrame | None = getattr(self, "_matrix", None)
        if cached is None:
            if isinstance(self.store, str | Path):
                with ParquetStore(self.store) as opened:
                    cached = read_feature_matrix(opened, self.scope, self.level, missing=KEEP)
            else:
                cached = read_feature_matrix(self.store, self.scope, self.level, missing=KEEP)
            self._matrix = cached
        return cached

    def _rows(self, X: pd.DataFrame, matrix: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``matrix`` for the eras ``X`` names (columns or index levels)."""
        frame = X if {"entity", "era_id"} <= set(X.columns) else X.reset_index()
        if not {"entity", "era_id"} <= set(frame.columns):
            raise DataError(
                "EraFeatures takes an era table: rows with entity and era_id (and level), "
                "e.g. read_era_times(store, scope, level)"
            )
        level = frame["level"].astype(str) if "level" in frame else self.level
        wanted = pd.MultiIndex.from_arrays(
            [
                frame["entity"].astype(str).to_numpy(),
                np.broadcast_to(np.asarray(level, dtype=object), len(frame)),
                frame["era_id"].astype("int64").to_numpy(),
            ],
            names=MATRIX_KEY,
        )
        absent = wanted.difference(matrix.index)
        if len(absent):
            raise DataError(
                f"{len(absent)} eras are not in the stored matrix of scope {self.scope!r}, "
                f"level {self.level} (e.g. {absent[0]}): select over a scope that holds them"
            )
        return matrix.loc[wanted]
