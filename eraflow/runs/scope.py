"""Selection and the feature matrix per scope: a named set of entities, all their eras.

A run selects features per level over its scope (by default the entities it touched) and
stores the selection and one feature matrix per (entity, level) under that scope's name; it
never deletes another scope's rows. The selection and the matrices of a (scope, level) are
one commit (``replace_many``): the matrix's columns are named by the selection, so a reader
sees both from one run or both from the other, never one run's names over another's values.
The level's era x feature matrix is built compactly from
the store: feature rows are streamed in arrow batches, names become integer codes, values go
straight into one float64 array, so memory is one level's matrix, not a long frame of strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from eraflow.common.errors import DataError, StoreError
from eraflow.stages.features.arrays import Device
from eraflow.stages.matrix import DEFAULT_MISSING, MissingValues, handle_missing
from eraflow.stages.selection import Aggregation, align_target_to_eras, select
from eraflow.store.base import Key, Range, ResultStore
from eraflow.store.grid import read_entity_grid

Progress = Callable[[int, int, str], None]
MATRIX_KEY = ["entity", "level", "era_id"]


def scope_name(entities: Sequence[str]) -> str:
    """The default scope of a run: its entities, sorted, joined by ``+``."""
    if not entities:
        raise DataError("a selection scope needs at least one entity")
    return "+".join(sorted(set(entities)))


@dataclass
class LevelMatrix:
    """One level's era x feature matrix: values, the eras of its rows, its column names."""

    values: np.ndarray
    eras: pd.DataFrame
    columns: list[str]

    def frame(self) -> pd.DataFrame:
        """The matrix as a DataFrame over the same memory (index entity, level, era_id)."""
        index = pd.MultiIndex.from_frame(
            self.eras[MATRIX_KEY].astype({"entity": str, "level": str, "era_id": "int64"})
        )
        return pd.DataFrame(self.values, index=index, columns=self.columns, copy=False)


def read_level_matrix(
    store: ResultStore, entities: Sequence[str], level: str, *, progress: Progress | None = None
) -> LevelMatrix:
    """The era x feature matrix of ``level`` over ``entities``, built without a long frame.

    Rows: the entities' data eras of the level that have feature values (entity, then time);
    columns: ``<sensor>__<feature>`` in name order. Each batch read is scattered into the
    matrix at once (columns in order of first sight, widened when a batch brings new ones),
    and the columns are put in name order in place, a few rows at a time: no per-value index
    lists. The read holds the matrix and one batch, and twice the matrix only for a moment
    when a later batch widens it or eras without features are dropped.
    """
    era_parts = []
    for entity in entities:
        eras = store.read(
            "eras",
            Key(entity, {"level": level}),
            columns=["entity", "level", "era_id", "start", "end", "kind"],
        )
        era_parts.append(eras[eras["kind"].astype(str) != "gap"].sort_values("era_id"))
    code_of: dict[str, int] = {}
    known_codes: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = {}
    values = np.full((sum(map(len, era_parts)), 0), np.nan)
    offset = 0
    for done, (entity, eras) in enumerate(zip(entities, era_parts, strict=True)):
        ids = eras["era_id"].to_numpy(dtype=np.int64)
        for batch in store.read_batches(
            "features",
            Key(entity, {"level": level}),
            columns=["era_id", "sensor", "feature", "value"],
        ):
            era_ids = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
            where = np.searchsorted(ids, era_ids)
            known = (
                (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == era_ids)
                if len(ids)
                else np.zeros(len(era_ids), dtype=bool)
            )
            codes = _column_codes(batch.column(1), batch.column(2), code_of, known_codes)
            if len(code_of) > values.shape[1]:
                values = _widen(values, len(code_of))
            vals = batch.column(3).to_numpy(zero_copy_only=False)
            values[offset + where[known], codes[known]] = vals[known]
        offset += len(eras)
        if progress is not None:
            progress(done + 1, len(entities), f"read {entity}/{level}")
    names = sorted(code_of)
    values = _columns_in_place(values, np.array([code_of[n] for n in names], dtype=np.int64))
    eras_all = (
        pd.concat(era_parts, ignore_index=True)
        if era_parts
        else pd.DataFrame(columns=["entity", "level", "era_id", "start", "end"])
    )
    has_values = ~np.isnan(values).all(axis=1) if len(names) else np.zeros(len(values), bool)
    if not has_values.all():
        values = values[has_values]
    return LevelMatrix(
        values=values, eras=eras_all[has_values].reset_index(drop=True), columns=names
    )


def _widen(values: np.ndarray, columns: int) -> np.ndarray:
    """``values`` with room for ``columns`` columns (NaN), a quarter more when it grows again."""
    width = columns if values.shape[1] == 0 else max(columns, values.shape[1] * 5 // 4)
    wider = np.full((values.shape[0], width), np.nan)
    wider[:, : values.shape[1]] = values
    return wider


def _columns_in_place(values: np.ndarray, order: np.ndarray, rows: int = 256) -> np.ndarray:
    """``values[:, order]`` (``order`` covering the first columns), a few rows at a time."""
    for r0 in range(0, len(values), rows):
        values[r0 : r0 + rows, : len(order)] = values[r0 : r0 + rows][:, order]
    return values if values.shape[1] == len(order) else values[:, : len(order)].copy()


def _column_codes(
    sensor: pa.Array,
    feature: pa.Array,
    code_of: dict[str, int],
    known: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray],
) -> np.ndarray:
    """The matrix column of each row's ``<sensor>__<feature>``, from the small dictionaries.

    Names are joined once per distinct (sensor, feature) pair, never per row; ``known`` keeps
    each pair of dictionaries' codes (-1: not named yet), since the batches of one file
    mostly repeat the same dictionaries and naming their pairs again cost seconds a year.
    """
    s, f = (
        c if pa.types.is_dictionary(c.type) else pc.dictionary_encode(c) for c in (sensor, feature)
    )
    s_names, f_names = tuple(s.dictionary.to_pylist()), tuple(f.dictionary.to_pylist())
    width = len(f_names)
    pair = s.indices.to_numpy(zero_copy_only=False).astype(np.int64) * width + f.indices.to_numpy(
        zero_copy_only=False
    )
    lookup = known.setdefault((s_names, f_names), np.full(len(s_names) * width, -1, np.int64))
    codes = lookup[pair]
    unnamed = codes < 0
    if unnamed.any():  # pairs first seen: named in sorted order (no sort of every row)
        for p in np.unique(pair[unnamed]):
            name = f"{s_names[p // width]}__{f_names[p % width]}"
            lookup[p] = code_of.setdefault(name, len(code_of))
        codes = lookup[pair]
    return codes


def _target(
    store: ResultStore, matrix: LevelMatrix, sensor: str, how: Aggregation, step: pd.Timedelta
) -> pd.Series:
    parts = []
    for entity, eras in matrix.eras.groupby("entity", sort=False):
        values, _ = read_entity_grid(
            store,
            str(entity),
            step=step,
            sensors=[sensor],
            start=eras["start"].min(),
            end=eras["end"].max(),
        )
        if sensor not in values:
            raise DataError(
                f"target sensor {sensor!r} is not a sensor of {entity}: choose one "
                "every entity of the scope has"
            )
        parts.append(align_target_to_eras(values[sensor], eras, how))
    return pd.concat(parts)


@dataclass(frozen=True)
class SelectionSettings:
    """How a scope's features are selected (see :func:`eraflow.stages.selection.select`)."""

    correlation_threshold: float = 0.95
    fdr_level: float = 0.05
    hypotheses_independent: bool = False
    target_sensor: str | None = None
    target_how: Aggregation = "mean"
    device: Device = "cpu"


def select_scope(
    store: ResultStore,
    scope: str,
    entities: Sequence[str],
    level: str,
    *,
    settings: SelectionSettings,
    step: pd.Timedelta,
    run_id: str,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Select ``level``'s features over the scope; store the selection and the matrices.

    Replaces only this scope's rows of ``level``. Returns counts: eras, features, kept.
    """
    key = Key(scope, {"level": level})
    matrix = read_level_matrix(store, entities, level)
    if not len(matrix.eras) or not matrix.columns:
        store.replace_many([("selection", None, key), ("feature_matrix", None, key)])
        return {"eras": len(matrix.eras), "features": len(matrix.columns), "kept": 0}
    target = None
    if settings.target_sensor is not None:
        target = _target(store, matrix, settings.target_sensor, settings.target_how, step)
    result = select(
        matrix.frame(),
        device=settings.device,
        correlation_threshold=settings.correlation_threshold,
        fdr_level=settings.fdr_level,
        hypotheses_independent=settings.hypotheses_independent,
        target_per_era=target,
        leaking=[c for c in matrix.columns if c.startswith(f"{settings.target_sensor}__")],
        progress=progress,
    )
    kept = result.kept
    position = {name: i for i, name in enumerate(kept)}
    selection = result.selection.assign(
        scope=scope,
        level=level,
        run_id=run_id,
        position=result.selection["feature"].map(position).fillna(-1).astype("int64"),
    )
    counts = {"eras": len(matrix.eras), "features": len(matrix.columns), "kept": len(kept)}
    eras = matrix.eras
    del matrix  # the whole level's matrix: only the kept columns are stored
    frame = result.matrix if list(result.matrix.columns) == kept else result.matrix[kept]
    kept_values = frame.to_numpy(dtype=np.float64)
    frames = []
    for entity in entities:
        rows = np.flatnonzero(eras["entity"].astype(str).to_numpy() == entity)
        part = eras.iloc[rows]
        frames.append(
            pd.DataFrame(
                {
                    "scope": scope,
                    "entity": entity,
                    "level": level,
                    "era_id": part["era_id"].to_numpy(dtype="int64"),
                    "start": part["start"].to_numpy(),
                    "end": part["end"].to_numpy(),
                    "values": list(kept_values[rows]),
                }
            )
        )
    store.replace_many(
        [
            ("selection", selection, key),
            ("feature_matrix", pd.concat(frames, ignore_index=True), key),
        ]
    )
    return counts


def read_feature_matrix(
    store: ResultStore,
    scope: str,
    level: str,
    entity: str | None = None,
    *,
    missing: MissingValues = DEFAULT_MISSING,
) -> pd.DataFrame:
    """The stored matrix of a scope and level, ready for a model, from either store.

    A float64 frame: index ``(entity, level, era_id)``, one column per kept feature
    ``<sensor>__<feature>`` in selection order, missing values handled by ``missing``
    (default: features missing on more than half of the eras dropped, other gaps filled with
    the feature's median; ``MissingValues("keep")`` returns the values as stored). The era
    times are not among the values: :func:`read_era_times` gives them, on the same index.
    """
    _, wide = _stored_matrix(store, scope, level, entity)
    return handle_missing(wide, missing)


def read_era_times(
    store: ResultStore, scope: str, level: str, entity: str | None = None
) -> pd.DataFrame:
    """``start`` and ``end`` (UTC) of the matrix's eras, on :func:`read_feature_matrix`'s index."""
    times, _ = _stored_matrix(store, scope, level, entity)
    return times


def _stored_matrix(
    store: ResultStore, scope: str, level: str, entity: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The era times and the wide matrix as stored (selection and matrix read as one)."""
    where: dict[str, object] = {"level": level}
    if entity is not None:
        where["entity"] = entity
    selection, rows = store.read_many(
        [("selection", Key(scope, {"level": level})), ("feature_matrix", Key(scope, where))]
    )
    kept = selection[selection["position"] >= 0].sort_values("position")
    if rows.empty:
        raise DataError(
            f"no feature matrix stored for scope {scope!r}, level {level}"
            + (f", entity {entity!r}" if entity else "")
            + ": run the pipeline (with selection) for it first"
        )
    widths = {len(v) for v in rows["values"]}
    if widths != {len(kept)} or kept["position"].tolist() != list(range(len(kept))):
        raise StoreError(
            f"the selection and feature matrix of scope {scope!r}, level {level} are out of "
            f"step ({len(kept)} kept features, {sorted(widths)} values per era): re-run "
            f"the run that selects for scope {scope!r} (its entities and range) to rewrite both"
        )
    rows = rows.sort_values(["entity", "era_id"], kind="stable")
    values = np.vstack(rows["values"].to_numpy()) if len(kept) else np.zeros((len(rows), 0))
    index = pd.MultiIndex.from_frame(
        rows[MATRIX_KEY].astype({"entity": str, "level": str, "era_id": "int64"})
    )
    wide = pd.DataFrame(
        values.astype(np.float64, copy=False),
        index=index,
        columns=kept["feature"].astype(str).tolist(),
    )
    return rows[["start", "end"]].set_index(index), wide


def entities_with_data(
    store: ResultStore, start: pd.Timestamp, end: pd.Timestamp, among: Sequence[str] | None = None
) -> list[str]:
    """Entities whose stored grid has days in [start, end) (from the small coverage table)."""
    candidates = list(among) if among is not None else store.owners("coverage")
    found = []
    for entity in candidates:
        days = store.read(
            "coverage", Key(entity, {"day": Range(start.floor("D"), end)}), columns=["day"]
        )
        if len(days):
            found.append(entity)
    return sorted(found)
